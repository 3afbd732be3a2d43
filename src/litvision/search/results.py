"""What a study leaves besides its runs: the best trial's config (``best.yaml``, which ``litvision fit
--config`` retrains), the table of trials (console and ``trials.csv``), Optuna's figures (``figures/*.png``
and the study folder's TensorBoard run), and the test of the best trial."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState
from rich.console import Console
from rich.table import Table

from litvision.search.study import FINISHED, PLACEMENT_KEYS, Search
from litvision.utils import csv_text, find_checkpoint, lookup, read_json, write_text

FIGURES = {
    "history": "plot_optimization_history",
    "importances": "plot_param_importances",
    "parallel_coordinate": "plot_parallel_coordinate",
    "curves": "plot_intermediate_values",  # every trial's metric per epoch, the pruned ones cut short
}


def trial_rows(search: Search, study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial: number, state, metric, values, epochs, training time (the run's wall time over
    its sessions), run directory."""
    keys = sorted({key for t in study.trials for key in t.params})
    rows = []
    for trial in study.trials:
        run_dir = search.run_dir(trial.number)
        info = read_json(run_dir / "run_info.json") or {}
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name.lower(),
                search.metric: trial.value,
                **{key: trial.params.get(key) for key in keys},
                "epochs": len(trial.intermediate_values),
                "time_s": info.get("wall_time_s"),
                "run": str(run_dir) if run_dir.is_dir() else "",
            }
        )
    return rows


def table(search: Search, rows: list[dict[str, Any]], best: int | None) -> Table:
    finished = sum(row["state"] in ("complete", "pruned") for row in rows)
    result = Table(title=f"study '{search.name}': {finished} of {search.trials} trials finished")
    params = [
        k
        for k in (rows[0] if rows else {})
        if k not in ("trial", "state", search.metric, "epochs", "time_s", "run")
    ]
    tails = [p.rsplit(".", 1)[-1] for p in params]
    headers = [t if tails.count(t) == 1 else p for p, t in zip(params, tails)]
    for name in ("trial", "state", search.metric, *headers, "epochs", "time"):
        result.add_column(name, justify="left" if name in ("state", *headers) else "right")
    for row in rows:
        value = row[search.metric]
        cells = [
            str(row["trial"]),
            row["state"],
            "" if value is None else f"{value:.4f}",
            *(
                "" if row[p] is None else f"{row[p]:.4g}" if isinstance(row[p], float) else str(row[p])
                for p in params
            ),
            str(row["epochs"]),
            "" if row["time_s"] is None else f"{row['time_s']:.0f} s",
        ]
        style = "bold green" if row["trial"] == best else "dim" if row["state"] != "complete" else None
        result.add_row(*cells, style=style)
    return result


def best_config(search: Search, number: int) -> dict[str, Any]:
    """The config of trial ``number`` as a config of its own: what the trial trained, with the keys the
    search set for its bookkeeping (run directory, progress bar, ...) as in the base config."""
    config = yaml.safe_load((search.run_dir(number) / "config.yaml").read_text())
    base = yaml.safe_load(search.base.read_text())
    for key in PLACEMENT_KEYS:
        _set(config, key, lookup(base, key)[1])
    logger = lookup(config, "trainer.logger")[1]
    if isinstance(logger, dict) and logger.get("init_args", {}).get("name") is None:
        logger.setdefault("init_args", {})["name"] = f"{search.name}_best"
    return config


def write_results(search: Search, study: optuna.Study, console: Console, test: str = "best") -> None:
    """The table, CSV, best config, figures; the best trial tested (``test``: best, all or none)."""
    rows = trial_rows(search, study)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    best = study.best_trial.number if complete else None
    write_text(
        search.folder / "trials.csv",
        csv_text([list(rows[0]), *(list(r.values()) for r in rows)]) if rows else "",
    )
    console.print(table(search, rows, best))
    if best is None:
        console.print("No trial completed: no best config, figures or test.")
        return
    header = (
        f"# The best trial of study '{search.name}' (trial {best}: {search.metric} "
        f"{study.best_value:.4f}): litvision fit --config {search.folder / 'best.yaml'}\n"
    )
    write_text(
        search.folder / "best.yaml", header + yaml.safe_dump(best_config(search, best), sort_keys=False)
    )
    figures = write_figures(search, study)
    tested = (
        [best]
        if test == "best"
        else [t.number for t in study.trials if t.state in FINISHED]
        if test == "all"
        else []
    )
    for number in tested:
        test_trial(search, number)
    console.print(
        f"best: trial {best}, {search.metric} {study.best_value:.4f} -> {search.folder / 'best.yaml'}; "
        f"table {search.folder / 'trials.csv'}; figures ({', '.join(figures) or 'none'}) "
        f"in {search.folder / 'figures'}"
    )


def write_figures(search: Search, study: optuna.Study) -> list[str]:
    """Optuna's figures (matplotlib) as PNGs and as images of the study folder's TensorBoard run. A
    figure the study cannot draw yet (importances need two completed trials) is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as figures
    from torch.utils.tensorboard import SummaryWriter

    folder = search.folder / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    drawn = []
    step = sum(t.state in FINISHED for t in study.trials)
    with SummaryWriter(log_dir=str(search.folder)) as writer, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, function in FIGURES.items():
            kwargs = {} if name == "curves" else {"target_name": search.metric}
            try:
                ax = getattr(figures, function)(study, **kwargs)
            except (ValueError, RuntimeError):
                continue
            figure = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            figure.savefig(folder / f"{name}.png", dpi=100, bbox_inches="tight")
            writer.add_figure(f"search/{name}", figure, global_step=step, close=False)
            plt.close(figure)
            drawn.append(name)
    return drawn


def test_trial(search: Search, number: int) -> None:
    """``litvision test`` of a trial's best checkpoint, into its run directory (test_results.json and the
    test metrics in its TensorBoard run); once."""
    from litvision.cli import LitvisionCLI

    run_dir = search.run_dir(number)
    checkpoint = (read_json(run_dir / "trial.json") or {}).get("best_checkpoint")
    if checkpoint is None and (run_dir / "checkpoints").is_dir():  # killed before its trial.json
        checkpoint = str(find_checkpoint(run_dir, "best"))
    if (run_dir / "test_results.json").is_file() or not checkpoint or not Path(checkpoint).is_file():
        return
    LitvisionCLI(
        args=["test", f"--config={run_dir / 'config.yaml'}", f"--ckpt_path={checkpoint}", "--verbose=false"],
        save_config_callback=None,
    )


def _set(config: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        config = config.setdefault(part, {})
    config[last] = value
