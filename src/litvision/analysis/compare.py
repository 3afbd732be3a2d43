"""Many runs in one table, as Markdown and CSV: per-class test accuracy side by side (like report 000's
Table V), then one row per run with its epochs, steps, wall time, parameters and accuracies.

    litvision analyze compare lightning_logs/lstm_mnist_*/version_0 --output reports/imbalance

Each run is a run directory holding ``test_results.json`` (written after ``fit`` and by ``test``), or
that file itself; ``run_info.json``, the TensorBoard event files and the checkpoints fill in the rest
when they are there. Columns are named after the runs' directories unless ``--names`` is given.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace
from lightning.pytorch.cli import instantiate_class

from litvision.analysis.common import Tool
from litvision.errors import LitvisionError
from litvision.parsing import Parser
from litvision.utils import csv_text, find_checkpoint, markdown_table, read_scalars, run_names, write_text

SUMMARY_COLUMNS = {
    "run": "run",
    "epochs": "epochs",
    "steps": "steps",
    "wall_time_s": "wall time",
    "parameters": "parameters",
    "val_acc_final": "val acc (final)",
    "val_acc_best": "val acc (best)",
    "test_acc": "test acc",
    "test_acc_macro": "test acc (macro)",
}


def load(run: Path) -> dict[str, Any]:
    path = run if run.suffix == ".json" else run / "test_results.json"
    if not path.is_file():
        raise LitvisionError(f"{path} not found: pass run directories that hold test_results.json")
    return json.loads(path.read_text())


def table(results: list[dict[str, Any]], names: list[str]) -> list[list[str]]:
    """Rows of (what, accuracy of each run in %): one per class, then overall, macro and shot groups."""
    classes = list(results[0]["per_class"])
    for name, r in zip(names, results):
        if list(r["per_class"]) != classes:
            raise LitvisionError(f"run {name!r} has other classes than {names[0]!r}")
    rows = [["class", *names]]
    for c in classes:
        rows.append([c, *(f"{100 * r['per_class'][c]['acc']:.2f}" for r in results)])
    rows.append(["overall", *(f"{100 * r['acc']:.2f}" for r in results)])
    rows.append(["macro", *(f"{100 * r['acc_macro']:.2f}" for r in results)])
    for group in ("many_shot", "medium_shot", "few_shot"):
        if any(group in r.get("shot_groups", {}) for r in results):
            values = [r.get("shot_groups", {}).get(group, {}).get("acc") for r in results]
            rows.append([group.replace("_", "-"), *("" if v is None else f"{100 * v:.2f}" for v in values)])
    return rows


@dataclass
class RunSummary:
    """What one row of the run table says about a run; None where the run does not record it."""

    run: str
    epochs: int | None = None
    steps: int | None = None
    wall_time_s: float | None = None
    parameters: int | None = None
    val_acc_final: float | None = None
    val_acc_best: float | None = None
    test_acc: float | None = None
    test_acc_macro: float | None = None


def summarize(run: Path, name: str) -> RunSummary:
    """A run's row, from ``run_info.json``, ``test_results.json``, its event files and checkpoint."""
    run_dir = run.parent if run.suffix == ".json" else run
    results = load(run)
    info_file = run_dir / "run_info.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    summary = RunSummary(name, test_acc=results.get("acc"), test_acc_macro=results.get("acc_macro"))
    scalars, span = _read_events(run_dir)
    if "val/acc" in scalars:
        summary.val_acc_final = scalars["val/acc"][-1]
        summary.val_acc_best = max(scalars["val/acc"])
    summary.epochs = info.get("epochs", len(scalars.get("train/loss", [])) or None)
    summary.steps = info.get("global_step", results.get("global_step"))
    summary.wall_time_s = info.get("wall_time_s", span)
    summary.parameters = info.get("num_parameters") or _count_parameters(run_dir)
    return summary


def _read_events(run_dir: Path) -> tuple[dict[str, list[float]], float | None]:
    """Validation and training scalars of a run's event files, and the seconds they span."""
    events = read_scalars(run_dir)
    scalars = {t: [e.value for e in events[t]] for t in ("val/acc", "train/loss") if t in events}
    times = [e.wall_time for points in events.values() for e in points]
    return scalars, (max(times) - min(times) if times else None)


def _count_parameters(run_dir: Path) -> int | None:
    """The network's parameter count, rebuilt without memory (meta device) from a checkpoint's
    hyperparameters, for runs that predate ``run_info.json``."""
    try:
        checkpoint = torch.load(
            find_checkpoint(run_dir, "last"), map_location="cpu", weights_only=True, mmap=True
        )
        hparams = checkpoint["hyper_parameters"]
        backbone = dict(hparams["backbone"])
        init_args = dict(backbone.get("init_args") or {})
        if "pretrained" in init_args:  # the shapes are all that is needed: no weights download
            init_args["pretrained"] = False
        backbone["init_args"] = init_args
        with torch.device("meta"):
            net = instantiate_class((hparams["num_classes"], tuple(hparams["input_shape"])), backbone)
        return sum(p.numel() for p in net.parameters())
    except Exception:  # not rebuildable from here (a custom class, an old checkpoint): left empty
        return None


def summary_rows(summaries: list[RunSummary], for_markdown: bool) -> list[list[str]]:
    """The run table: exact numbers for CSV (accuracies in %), readable ones for Markdown."""
    rows = [list(SUMMARY_COLUMNS.values()) if for_markdown else list(SUMMARY_COLUMNS)]
    for s in summaries:
        row = [s.run, _text(s.epochs), _text(s.steps)]
        if for_markdown:
            row += [_duration(s.wall_time_s), _count(s.parameters)]
        else:
            row += ["" if s.wall_time_s is None else f"{s.wall_time_s:.1f}", _text(s.parameters)]
        row += [_percent(v) for v in (s.val_acc_final, s.val_acc_best, s.test_acc, s.test_acc_macro)]
        rows.append(row)
    return rows


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def _count(n: int | None) -> str:
    if n is None:
        return ""
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h {m:02d}m" if hours else f"{m}m {s:02d}s" if m else f"{seconds:.1f} s"


TOOL = Tool("compare")  # tables only


def add_parser(subcommands: Any) -> None:
    parser = Parser(config=True, description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (or their test_results.json)")
    parser.add_argument("--names", nargs="+", help="column names, one per run")
    parser.add_argument(
        "--output", type=Path | None, help="write OUTPUT.md, OUTPUT.csv (per class) and OUTPUT_runs.csv"
    )
    subcommands.add_subcommand(
        TOOL.name,
        parser,
        help="one table of many runs: per-class and overall accuracy, epochs, time, parameters",
    )


def run_compare(args: Namespace) -> list[Path]:
    if args.names and len(args.names) != len(args.runs):
        raise LitvisionError(f"--names has {len(args.names)} names for {len(args.runs)} runs")
    names = args.names or run_names(args.runs)
    results = [load(r) for r in args.runs]
    # Runs on different datasets still share a run table; only runs with the same classes a class table.
    shared = all(list(r["per_class"]) == list(results[0]["per_class"]) for r in results)
    rows = table(results, names) if shared else None
    if not shared:
        print("note: the runs have different classes, so there is no per-class table", file=sys.stderr)
    summaries = [summarize(r, n) for r, n in zip(args.runs, names)]
    text = (markdown_table(rows) + "\n" if rows else "") + markdown_table(
        summary_rows(summaries, for_markdown=True)
    )
    sys.stdout.write(text)
    if not args.output:
        return []
    markdown_file, per_class_file = args.output.with_suffix(".md"), args.output.with_suffix(".csv")
    runs_file = per_class_file.with_name(per_class_file.stem + "_runs.csv")
    write_text(markdown_file, text)
    if rows:
        write_text(per_class_file, csv_text(rows))
    write_text(runs_file, csv_text(summary_rows(summaries, for_markdown=False)))
    return [markdown_file, *([per_class_file] if rows else []), runs_file]
