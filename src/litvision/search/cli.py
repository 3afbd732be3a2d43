"""litvision search: a hyperparameter search on Optuna, each trial an ordinary run (docs/search.md).

    litvision search --config configs/digits_lstm.yaml --space configs/search/digits.yaml --trials 12
    litvision search ... --workers 2                    # two local processes on the same study
    litvision search ... --workers 8 --launcher slurm --slurm slurm.yaml   # eight SLURM array tasks
    litvision search ... --workers 0                    # no new trial: the results of the study as it is

The command takes every option of ``litvision fit`` (the config every trial starts from) and the
search's own; run again, the same command resumes the study.
"""

from __future__ import annotations

import contextlib
import difflib
import shutil
import signal
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.utilities.exceptions import SIGTERMException
from rich.console import Console

from litvision.cli import LitvisionCLI, default_name
from litvision.errors import LitvisionError, one_line_errors
from litvision.launch.slurm import Launcher, SlurmSettings
from litvision.parsing import options
from litvision.search.space import SearchSpace, load_space
from litvision.search.study import (
    DIRECTIONS,
    FINISHED,
    Search,
    make_pruner,
    make_sampler,
    open_storage,
    open_study,
    quiet_trials,
    run_worker,
)
from litvision.utils import visible_gpus, write_text

PROG = "litvision search"
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "halving", "hyperband", "none")
LAUNCHERS = ("local", "slurm", "submitit-local")
TESTS = ("best", "all", "none")
DESCRIPTION = (
    "litvision search: a hyperparameter search (Optuna) over any key of a litvision fit config; every "
    "trial is an ordinary run in the study folder, pruned when hopeless; the same command resumes a "
    "study. Takes every option of 'litvision fit' and the search's own (below); docs/search.md."
)


# The search's options: name, type, default, help. (The rest of the command line is fit's.)
OPTIONS: tuple[tuple[str, Any, Any, str], ...] = (
    ("space", str, None, "YAML file mapping config keys to ranges or choices (docs/search.md)"),
    ("trials", int, 20, "finished trials (complete or pruned) the study is to have, over all workers"),
    ("metric", str, "val/acc", "the objective: a metric the model logs at validation (never a test metric)"),
    ("direction", str, "max", "max or min: whether a larger metric is better"),
    ("sampler", str, "tpe", "tpe, random or grid (grid_points values of each range, every choice)"),
    ("sampler_args", dict[str, Any], {}, "more arguments of Optuna's sampler, e.g. {n_startup_trials: 5}"),
    ("sampler_seed", int, 0, "seed of the sampler; a random or grid trial's values follow from it"),
    ("grid_points", int, 4, "values per range with --sampler grid (log-spaced for a log range)"),
    ("pruner", str, "median", "median, halving (successive halving), hyperband or none"),
    ("pruner_args", dict[str, Any], {}, "arguments of Optuna's pruner, e.g. {n_startup_trials: 5}"),
    ("enqueue", list[dict[str, Any]], [], "values tried first by a new study: [{KEY: VALUE, ...}, ...]"),
    ("study", str | None, None, "the study's name (default: CONFIG-SPACE, of the last config and the space; "
     "without a config DATA-NETWORK-SPACE, as fit names a run)"),
    ("output", str | None, None, "the study folder (default: lightning_logs/search/STUDY)"),
    ("storage", str | None, None, "a database URL (workers on several machines); default: SQLite file"),
    ("workers", int, 1, "processes running trials at once (one per GPU); 0: only write the results"),
    ("launcher", str, "local", "local, slurm (a SLURM array task per worker, by submitit) or submitit-local"),
    ("test_trials", str, "best", "after the search, test the best checkpoint of the best trial (best), "
     "of every finished trial (all), or none"),
)  # fmt: skip
SEARCH_KEYS = (*(option[0] for option in OPTIONS), "slurm")


class SearchCLI(LitvisionCLI):
    """``fit``'s parser (the config the trials start from) with the search's options; it only parses."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        super().add_arguments_to_parser(parser)
        group = parser.add_argument_group("search")
        for name, kind, default, text in OPTIONS:
            group.add_argument(f"--{name}", type=kind, default=default, required=name == "space", help=text)
        parser.add_class_arguments(SlurmSettings, "slurm")  # as litvision reproduce's --slurm.*

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass

    def after_instantiate_classes(self) -> None:
        pass


def parse(args: list[str]) -> SearchCLI:
    """The parsed command line. (The one place that builds the parser.)"""
    return SearchCLI(args=args, run=False, parser_kwargs={"prog": PROG, "description": DESCRIPTION})


def settings(cli: SearchCLI) -> tuple[Search, SearchSpace, str]:
    """The search's settings, checked, and the base config every trial starts from (YAML)."""
    config = cli.config
    _choice("direction", config.direction, DIRECTIONS)
    _choice("sampler", config.sampler, SAMPLERS)
    _choice("pruner", config.pruner, PRUNERS)
    _choice("launcher", config.launcher, LAUNCHERS)
    _choice("test_trials", config.test_trials, TESTS)
    if config.metric.startswith("test/"):
        raise LitvisionError(
            f"metric '{config.metric}' is a test metric: a search selects on validation only; "
            "give a val/ metric"
        )
    for name, least in (("trials", 1), ("workers", 0), ("grid_points", 2)):
        if config[name] < least:
            raise LitvisionError(f"{name}={config[name]} is invalid: it must be at least {least}")
    space = load_space(Path(config.space))
    base = config.clone()
    for key in SEARCH_KEYS:
        del base[key]
    check_space(cli, space, config)
    name = config.study or f"{default_name(config)}-{space.path.stem}"  # the run's name fit would give
    folder = Path(config.output or Path("lightning_logs/search") / name).resolve()
    search = Search(
        name=name,
        folder=folder,
        storage=config.storage or f"sqlite:///{folder / 'study.db'}",
        space=space.path.resolve(),
        trials=config.trials,
        metric=config.metric,
        direction=config.direction,
        sampler=config.sampler,
        sampler_args=dict(config.sampler_args),
        seed=config.sampler_seed,
        grid_points=config.grid_points,
        pruner=config.pruner,
        pruner_args=dict(config.pruner_args),
        workers=config.workers,
        gpus=visible_gpus(),
    )
    if search.sampler == "grid":
        size = 1
        for values in space.grid(search.grid_points).values():
            size *= len(values)
        search.trials = min(search.trials, size)
    make_sampler(search, space)  # checks sampler_args
    make_pruner(search)
    for values in config.enqueue:
        unknown = sorted(set(values) - {p.name for p, _ in space.every_param()})
        if unknown:
            raise LitvisionError(f"enqueue: '{unknown[0]}' is not a key of the search space '{space.path}'")
    text = cli.parser.dump(base, skip_check=True, skip_none=False)
    return search, space, text


def check_space(cli: SearchCLI, space: SearchSpace, config: Namespace) -> None:
    """Every key and choice of the space parsed as ``fit`` would parse it, on top of the config."""
    parser = cli.parser
    keys = sorted(k for k in config.keys() if k.split(".")[0] not in SEARCH_KEYS)  # noqa: SIM118 (a Namespace)
    for param, _ in space.every_param():
        if param.key.split(".")[0] in SEARCH_KEYS:
            raise LitvisionError(
                f"search space '{space.path}': '{param.key}' is an option of the search, not a config key"
            )
    exit_on_error, parser.exit_on_error = parser.exit_on_error, False
    try:
        for values in space.examples():
            args = options(values)
            try:
                parser.parse_args(args, namespace=config.clone())
            except Exception as err:  # noqa: BLE001 (jsonargparse's ArgumentError and friends)
                raise LitvisionError(_space_error(space, values, str(err), keys)) from None
    finally:
        parser.exit_on_error = exit_on_error


def _space_error(space: SearchSpace, values: dict[str, Any], message: str, keys: list[str]) -> str:
    where = f"search space '{space.path}'"
    for key in values:
        if f"--{key}=" in message and "unrecognized arguments" in message:
            close = difflib.get_close_matches(key, keys, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            return f"{where}: '{key}' is not a key of the config{hint}"
    shown = ", ".join(f"{k}={v}" for k, v in values.items())
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return f"{where}: the config does not take {shown}: {' '.join(lines[:3])}"


def _choice(name: str, value: Any, allowed: Any) -> None:
    if value not in allowed:
        *first, last = list(allowed)
        raise LitvisionError(f"{name} '{value}' is invalid: use {', '.join(first)} or {last}")


def main(args: list[str]) -> None:
    console = Console(soft_wrap=True)
    quiet_trials()
    with one_line_errors(PROG):
        cli = parse(args)
        search, space, base_text = settings(cli)
        config = cli.config
        try:
            run(search, space, base_text, config, console)
        except (KeyboardInterrupt, SIGTERMException) as stop:  # the running trial resumes next time
            console.print(f"{PROG}: stopped; the same command resumes the study")
            code = signal.SIGINT if isinstance(stop, KeyboardInterrupt) else signal.SIGTERM
            raise SystemExit(128 + code) from None


def run(search: Search, space: SearchSpace, base_text: str, config: Namespace, console: Console) -> None:
    from litvision.search.results import write_results

    folder = search.folder
    if not search.workers and not search.base.is_file():
        raise LitvisionError(f"--workers 0 writes the results of a study, but '{folder}' holds none yet")
    if search.base.is_file() and search.base.read_text() != base_text:
        raise LitvisionError(_config_changed(search, base_text))
    given_storage = config.storage is not None
    storage = open_storage(search.storage) if given_storage else None  # before anything is written
    created_folder = _first_missing(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        storage = storage or open_storage(search.storage)
        study, created = open_study(search, storage, space, config.enqueue)
        if not search.base.is_file():
            write_text(search.base, base_text)
        finished = sum(t.state in FINISHED for t in study.trials)
        console.print(
            f"study '{search.name}' in {folder}: {finished} of {search.trials} trials finished"
            + (f"; {search.workers} worker(s)" if search.workers else "")
        )
        if search.workers:
            run_workers(search, config)
    except LitvisionError:  # a bad config or space: a new study that trained nothing leaves nothing
        if created_folder is not None and _nothing_finished(search, storage):
            _remove_study(search, storage, created_folder, given_storage)
        raise
    if config.launcher == "slurm" and search.workers:
        return
    import optuna

    study = optuna.load_study(study_name=search.name, storage=storage)
    write_results(search, study, console, config.test_trials)


def run_workers(search: Search, config: Namespace) -> None:
    """Run the workers: here (one), as local processes, or as array tasks through submitit."""
    if config.launcher != "local":
        submit_workers(search, config)
        return
    if search.workers == 1:
        run_worker(search)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads inherited mid-flight
    # A spawned worker would spawn its trials' loader processes too; reset to the platform's default, it
    # starts them as `fit` does: the data need not pickle, and they start as fast.
    reset = {"initializer": multiprocessing.set_start_method, "initargs": (None, True)}
    with ProcessPoolExecutor(search.workers, mp_context=context, **reset) as pool:
        futures = [pool.submit(run_worker, search, i) for i in range(search.workers)]
        errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error


class WorkerTask:
    """One SLURM array task: a worker on the shared study. Requeued on preemption or timeout, it takes
    its running trial back at once (its array task id is on the trial) and resumes it from last.ckpt."""

    def __init__(self, search: Search, index: int) -> None:
        self.search = search
        self.index = index

    def __call__(self) -> None:
        self.search.in_slurm = True
        run_worker(self.search, self.index)

    def checkpoint(self) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(WorkerTask(self.search, self.index))


def submit_workers(search: Search, config: Namespace) -> None:
    settings = SlurmSettings(**config.slurm.as_dict())
    launcher = Launcher(config.launcher, settings, gpus_per_run=1 if search.gpus else 0)
    executor = launcher.executor(search.folder / ".submitit")
    with executor.batch():
        jobs = [executor.submit(WorkerTask(search, i)) for i in range(search.workers)]
    console = Console(soft_wrap=True)
    console.print(
        f"submitted {len(jobs)} worker(s): {', '.join(str(j.job_id) for j in jobs)} "
        f"(logs in {search.folder / '.submitit'})"
    )
    if config.launcher == "submitit-local":
        for job in jobs:
            job.result()
    else:
        console.print(
            f"once they are done, the same command with --workers 0 writes the results into {search.folder}"
        )


def _config_changed(search: Search, base_text: str) -> str:
    import yaml

    def flat(data: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(data, dict):
            return {k: v for key, value in data.items() for k, v in flat(value, f"{prefix}{key}.").items()}
        return {prefix.rstrip("."): data}

    old, new = flat(yaml.safe_load(search.base.read_text())), flat(yaml.safe_load(base_text))
    key = next(k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k))
    return (
        f"study '{search.name}' in '{search.folder}' trains with {key}={old.get(key)!r}, "
        f"not {new.get(key)!r}: "
        "resume it with the same config, or give another --study name to start a new one"
    )


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder of ``folder``'s path that does not exist yet (None if it exists)."""
    missing = None
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing = path
    return missing


def _nothing_finished(search: Search, storage: Any) -> bool:
    import optuna

    if storage is None:
        return True
    try:
        study = optuna.load_study(study_name=search.name, storage=storage)
    except KeyError:
        return True
    return not any(t.state in FINISHED for t in study.trials)


def _remove_study(search: Search, storage: Any, created: Path, given_storage: bool) -> None:
    """A study this command created and that finished no trial: leave nothing of it behind."""
    import optuna

    if given_storage and storage is not None:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=search.name, storage=storage)
    if storage is not None and hasattr(storage, "remove_session"):
        storage.remove_session()
        storage.engine.dispose()
    shutil.rmtree(created, ignore_errors=True)
