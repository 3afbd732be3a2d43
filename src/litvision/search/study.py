"""A study and the workers that run its trials.

The study is Optuna's record (a SQLite file in the study folder, or a database server); each trial is an
ordinary ``litvision fit`` run in the study folder, ``trial_NNN/``, trained in the worker's own process,
its metric reported to Optuna every epoch so that the pruner can stop it.

Several workers share one study: local processes, or SLURM array tasks. A lock file in the study folder
makes two steps atomic across them: counting the trials against ``--trials`` before asking for a new
one, and taking over a trial whose worker died. A worker records itself (host, process, array task) on
each trial it runs, with a heartbeat; a trial still marked running whose worker is gone (its process
ended on this host, its array task restarted, or no heartbeat for ``STALE_S``) is taken over by the
next worker that looks, under the same number, and resumed from its ``last.ckpt``. So a study killed at
any point resumes with the same command, and no trial is counted twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from lightning.pytorch import Callback, LightningModule, Trainer
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console

from litvision.callbacks import quiet_console
from litvision.errors import LitvisionError, NonFiniteError
from litvision.parsing import cli_value, options
from litvision.search.space import SearchSpace, load_space
from litvision.utils import read_json, write_json

STUDY_ATTR = "litvision"  # the study's metric, direction and space, checked when it resumes
WORKER_ATTR = "litvision:worker"  # a trial's worker: host, pid, array task, heartbeat
HEARTBEAT_S = 30.0
STALE_S = 600.0  # a trial of another machine without a heartbeat for this long: its worker is gone
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
DIRECTIONS = {"max": "maximize", "min": "minimize"}
# Inside a SLURM task the signals belong to submitit; Lightning would install its own requeue handler.
PLAIN_ENVIRONMENT = "--trainer.plugins+=lightning.fabric.plugins.environments.LightningEnvironment"


@dataclass
class Search:
    """What a worker needs to run a study's trials: plain data, for a process or an array task."""

    name: str
    folder: Path  # the study folder: base.yaml, study.db, trial_NNN/, results
    storage: str  # a database URL
    space: Path
    trials: int  # finished (complete or pruned) trials to reach, over all workers
    metric: str = "val/acc"
    direction: str = "max"
    sampler: str = "tpe"
    sampler_args: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    grid_points: int = 4
    pruner: str = "median"
    pruner_args: dict[str, Any] = field(default_factory=dict)
    workers: int = 1
    gpus: list[str] = field(default_factory=list)  # local workers take one each, in turn
    in_slurm: bool = False

    @property
    def base(self) -> Path:
        """The fit config every trial starts from."""
        return self.folder / "base.yaml"

    def run_dir(self, number: int) -> Path:
        return self.folder / f"trial_{number:03d}"


def make_sampler(search: Search, space: SearchSpace) -> BaseSampler:
    """The sampler, seeded per trial (see :class:`TrialSeeded`)."""
    args = dict(search.sampler_args)
    if search.sampler == "tpe":
        args.setdefault("constant_liar", search.workers > 1)  # running trials count as tried
        make: Callable[[int], BaseSampler] = lambda seed: optuna.samplers.TPESampler(seed=seed, **args)  # noqa: E731
    elif search.sampler == "random":
        make = lambda seed: optuna.samplers.RandomSampler(seed=seed, **args)  # noqa: E731
    else:
        grid = space.grid(search.grid_points)
        # The grid's order comes from the seed: the same in every trial (trial n takes point n).
        make = lambda _: optuna.samplers.GridSampler(grid, seed=search.seed, **args)  # noqa: E731
    try:
        make(search.seed)
    except TypeError as err:
        raise LitvisionError(
            f"sampler_args {search.sampler_args} do not fit the {search.sampler} sampler: {err}"
        ) from None
    return TrialSeeded(make, search.seed)


def make_pruner(search: Search) -> optuna.pruners.BasePruner:
    kinds = {
        "median": optuna.pruners.MedianPruner,
        "halving": optuna.pruners.SuccessiveHalvingPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "none": optuna.pruners.NopPruner,
    }
    try:
        return kinds[search.pruner](**search.pruner_args)
    except (TypeError, ValueError) as err:
        raise LitvisionError(
            f"pruner_args {search.pruner_args} do not fit the {search.pruner} pruner: {err}"
        ) from None


class TrialSeeded(BaseSampler):
    """A sampler made afresh for each trial, seeded with the study's seed and the trial's number.

    An Optuna sampler seeded once draws the same sequence in every process: two workers would try the
    same values, and a resumed study would try again the values of its first trials. Seeded per trial,
    a random trial's values depend on its number only, whichever worker runs it; a TPE trial's on its
    number and the trials finished before it. (A grid trial takes the grid's point of its number.)"""

    def __init__(self, make: Callable[[int], BaseSampler], seed: int) -> None:
        self._make = make
        self._seed = seed
        self._sampler = make(seed)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._sampler = self._make(self._seed * 1_000_003 + trial.number)
        self._sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return self._sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict:
        return self._sampler.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, name: str, distribution: Any
    ) -> Any:
        return self._sampler.sample_independent(study, trial, name, distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        try:
            self._sampler.after_trial(study, trial, state, values)
        except RuntimeError as err:  # GridSampler stops study.optimize when its grid is done; we count
            if "Study.stop" not in str(err):
                raise


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's storage at ``url``; a one-line error if it cannot be opened."""
    from sqlalchemy.engine import make_url

    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 (not a URL at all: say so below)
        shown = url
    # SQLite: workers of one machine wait for each other's writes rather than fail after 5 s.
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.storages.RDBStorage(url, engine_kwargs=engine)
    except Exception as err:  # noqa: BLE001 (sqlalchemy's errors, a missing driver, a bad URL)
        reason = str(getattr(err, "orig", None) or err).splitlines()[0]
        raise LitvisionError(
            f"storage '{shown}' cannot be opened ({type(err).__name__}: {reason}); give a database URL "
            "this machine reaches (sqlite:///FILE, postgresql://USER@HOST/DB, mysql://USER@HOST/DB, with "
            "the driver installed), or leave --storage out for a SQLite file in the study folder"
        ) from None


def study_attrs(search: Search, space: SearchSpace) -> dict[str, Any]:
    return {"metric": search.metric, "direction": search.direction, "space": space.as_dict()}


def open_study(
    search: Search, storage: optuna.storages.BaseStorage, space: SearchSpace, enqueue: Sequence[dict] = ()
) -> tuple[optuna.Study, bool]:
    """The study, created if new (the values in ``enqueue`` then tried first); True if it was created. A
    study that exists must search the same metric, direction and space."""
    names = optuna.study.get_all_study_names(storage)
    wanted = study_attrs(search, space)
    if search.name in names:
        study = optuna.load_study(study_name=search.name, storage=storage)
        stored = study.user_attrs.get(STUDY_ATTR)
        if stored is None:
            raise LitvisionError(
                f"study '{search.name}' of '{search.storage}' was not made by litvision search: "
                "give another --study name"
            )
        for key, value in wanted.items():
            if stored.get(key) != value:
                raise LitvisionError(
                    f"study '{search.name}' searches with {key} {stored.get(key)!r}, not {value!r}: "
                    "resume it with the same settings, or give another --study name to start a new one"
                )
        return study, False
    study = optuna.create_study(
        storage=storage, study_name=search.name, direction=DIRECTIONS[search.direction], load_if_exists=True
    )
    study.set_user_attr(STUDY_ATTR, wanted)
    for values in enqueue:
        study.enqueue_trial(values, skip_if_exists=True)
    return study, True


# ---------------------------------------------------------------------------------------------------
# Workers


def run_worker(search: Search, index: int = 0) -> None:
    """Run trials until the study has ``search.trials`` finished or running ones."""
    if search.workers > 1:
        if search.gpus:  # before torch first touches CUDA
            os.environ["CUDA_VISIBLE_DEVICES"] = search.gpus[index % len(search.gpus)]
        else:
            import torch

            torch.set_num_threads(max(1, (os.cpu_count() or 1) // search.workers))
    quiet_trials()
    space = load_space(search.space)
    storage = open_storage(search.storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.load_study(
            study_name=search.name,
            storage=storage,
            sampler=make_sampler(search, space),
            pruner=make_pruner(search),
        )
    me = {"host": socket.gethostname(), "pid": os.getpid(), "task": _array_task(), "worker": index}
    label = f"worker {index}: " if search.workers > 1 else ""
    while (trial := next_trial(study, storage, search, me)) is not None:
        run_trial(search, space, study, storage, trial, me, label)


def next_trial(
    study: optuna.Study, storage: optuna.storages.BaseStorage, search: Search, me: dict[str, Any]
) -> optuna.Trial | None:
    """A trial whose worker is gone (taken over), else a new one while the study has fewer than
    ``search.trials`` finished or running; None when it has them."""
    from filelock import FileLock

    study_id = storage.get_study_id_from_name(study.study_name)
    with FileLock(search.folder / ".lock"):
        trials = study.get_trials(deepcopy=False)
        for frozen in trials:
            if frozen.state == TrialState.RUNNING and _worker_gone(frozen.system_attrs.get(WORKER_ATTR), me):
                trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
                _beat(storage, trial_id, me)
                run_dir = search.run_dir(frozen.number)
                if not (run_dir / "checkpoints/last.ckpt").is_file():  # killed before its first one:
                    shutil.rmtree(run_dir, ignore_errors=True)  # its config and events start afresh
                return optuna.Trial(study, trial_id)  # the same trial, its values as stored
        if sum(t.state in (*FINISHED, TrialState.RUNNING) for t in trials) >= search.trials:
            return None
        trial = study.ask()
        _beat(storage, storage.get_trial_id_from_study_id_trial_number(study_id, trial.number), me)
        return trial


def run_trial(
    search: Search,
    space: SearchSpace,
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    trial: optuna.Trial,
    me: dict[str, Any],
    label: str = "",
) -> None:
    """Train the trial as ``litvision fit`` in its run directory (from its last.ckpt if it has one) and
    tell the study how it ended."""
    from litvision.cli import LitvisionCLI

    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), trial.number
    )
    values = space.suggest(trial)
    run_dir = search.run_dir(trial.number)
    callback = TrialCallback(study, storage, trial_id, search.metric, {"trial": trial.number, **values})
    started = time.time()
    console = Console(soft_wrap=True)
    shown = "  ".join(f"{key.rsplit('.', 1)[-1]}={_short(v)}" for key, v in values.items())
    resumed = (run_dir / "checkpoints/last.ckpt").is_file()
    console.print(f"{label}trial {trial.number}{' (resumed)' if resumed else ''}: {shown}", markup=False)
    if study.pruner.prune(study, storage.get_trial(trial_id)):  # taken over after its last report
        callback.pruned_at = max(storage.get_trial(trial_id).intermediate_values, default=0)
    else:
        try:
            with _heartbeat(storage, trial_id, me):
                LitvisionCLI(
                    args=["fit", *trial_arguments(search, values, trial.number)],
                    trainer_defaults={"callbacks": [callback]},
                )
        except (NonFiniteError, *_out_of_memory()) as err:  # these values diverge: the search goes on
            _fail(study, trial, err, run_dir, console, label)
            return
        except Exception as err:
            _fail(study, trial, err, run_dir, console, label)
            raise
    frozen = storage.get_trial(trial_id)
    if callback.pruned_at is not None:
        study.tell(trial, state=TrialState.PRUNED)
    elif not frozen.intermediate_values:
        error = MetricNotLogged(search.metric, callback.logged)
        _fail(study, trial, error, run_dir, console, label)
        raise error
    else:
        reported = frozen.intermediate_values.values()
        study.tell(trial, max(reported) if search.direction == "max" else min(reported))
    frozen = storage.get_trial(trial_id)
    record = {
        "study": search.name,
        "trial": trial.number,
        "state": frozen.state.name.lower(),
        "metric": search.metric,
        "value": frozen.value,
        "params": values,
        "epochs": len(frozen.intermediate_values),
        "pruned_at_epoch": callback.pruned_at,
        "best_checkpoint": callback.best_checkpoint,
    }
    write_json(run_dir / "trial.json", record)
    if callback.pruned_at is not None:
        info = read_json(run_dir / "run_info.json")
        if info and info.get("sessions"):  # the run itself says it was stopped by the pruner
            info["sessions"][-1]["status"] = f"pruned after epoch {callback.pruned_at}"
            write_json(run_dir / "run_info.json", info)
    console.print(
        f"{label}trial {trial.number}: {search.metric} {frozen.value:.4f}, {record['state']} after "
        f"{record['epochs']} epoch(s), {time.time() - started:.0f} s",
        markup=False,
    )


def trial_arguments(search: Search, values: dict[str, Any], number: int) -> list[str]:
    """``fit``'s arguments for a trial: the base config, the trial's values, and where it runs."""
    run_dir = search.run_dir(number)
    args = [
        f"--config={search.base}",
        *options(values),
        *placement_arguments(search, number),
        f"--checkpoint.monitor={search.metric}",
        f"--checkpoint.mode={search.direction}",
    ]
    if (run_dir / "checkpoints/last.ckpt").is_file():
        args.append(f"--ckpt_path={run_dir / 'checkpoints/last.ckpt'}")
    if search.in_slurm:
        args.append(PLAIN_ENVIRONMENT)
    return args


def placement_arguments(search: Search, number: int) -> list[str]:
    """The keys a trial sets for the search's bookkeeping, not for what it trains: put back as in the
    base config in the best trial's config (:func:`litvision.search.results.best_config`)."""
    return [
        "--trainer.logger=litvision.loggers.TensorBoardLogger",
        f"--trainer.logger.init_args.save_dir={search.folder.parent}",
        f"--trainer.logger.init_args.name={search.folder.name}",
        f"--trainer.logger.init_args.version={search.run_dir(number).name}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--test_after_fit=false",
    ]


PLACEMENT_KEYS = (
    "trainer.logger",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "test_after_fit",
    "ckpt_path",
)


class MetricNotLogged(LitvisionError):
    def __init__(self, metric: str, logged: Sequence[str]) -> None:
        keys = ", ".join(sorted(k for k in logged if "/acc_class/" not in k)) or "nothing"
        super().__init__(
            f"metric '{metric}' is never logged by the model; it logs {keys} (per-class accuracies "
            "left out): give one of them as --metric"
        )


class TrialCallback(Callback):
    """Reports the metric to the study after every validation and stops the run when the pruner says
    so; adds the trial's number and values to the run's HPARAMS. A metric the run does not log at
    validation is an error at the end of the first epoch."""

    def __init__(
        self,
        study: optuna.Study,
        storage: optuna.storages.BaseStorage,
        trial_id: int,
        metric: str,
        hparams: dict[str, Any],
    ) -> None:
        self.study = study
        self.storage = storage
        self.trial_id = trial_id
        self.metric = metric
        self.hparams = hparams
        self.pruned_at: int | None = None
        self.best_checkpoint: str | None = None
        self.logged: list[str] = []

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for logger in trainer.loggers:
            if hasattr(logger, "extra_hparams"):
                logger.extra_hparams = self.hparams

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:  # its metrics never reach callback_metrics
            return
        self.logged = list(trainer.callback_metrics)
        if self.metric not in trainer.callback_metrics:
            raise MetricNotLogged(self.metric, self.logged)
        epoch = trainer.current_epoch
        value = float(trainer.callback_metrics[self.metric])
        self.storage.set_trial_intermediate_value(self.trial_id, epoch, value)
        last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs  # pruning saves nothing
        if not last and self.study.pruner.prune(self.study, self.storage.get_trial(self.trial_id)):
            self.pruned_at = epoch
            trainer.should_stop = True

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        callback = trainer.checkpoint_callback
        self.best_checkpoint = getattr(callback, "best_model_path", None) or None


def quiet_trials() -> None:
    """Lightning's lines at every fit (devices, seed, 'max_epochs reached') would repeat for each trial:
    the worker prints one line per trial instead."""
    quiet_console()
    # A trial taken over resumes in its own directory: of course it holds checkpoints.
    warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.seed",
        "lightning.pytorch",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _fail(
    study: optuna.Study, trial: optuna.Trial, err: BaseException, run_dir: Path, console: Console, label: str
) -> None:
    message = (str(err).splitlines() or [type(err).__name__])[0]
    trial.set_user_attr("error", message)
    study.tell(trial, state=TrialState.FAIL)
    console.print(f"{label}trial {trial.number}: failed: {message}", markup=False)


def _out_of_memory() -> tuple[type[BaseException], ...]:
    import torch

    return (torch.OutOfMemoryError,)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else cli_value(value)


# ---------------------------------------------------------------------------------------------------
# Which worker runs a trial, and whether it is still there


def _array_task() -> str | None:
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    return f"{job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}" if job else None


def _beat(storage: optuna.storages.BaseStorage, trial_id: int, me: dict[str, Any]) -> None:
    storage.set_trial_system_attr(trial_id, WORKER_ATTR, {**me, "heartbeat": time.time()})


@contextmanager
def _heartbeat(storage: optuna.storages.BaseStorage, trial_id: int, me: dict[str, Any]) -> Iterator[None]:
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):  # a busy database: the next beat will do
                _beat(storage, trial_id, me)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _worker_gone(worker: dict[str, Any] | None, me: dict[str, Any]) -> bool:
    if worker is None:  # its worker died between asking for it and signing it (both under the lock)
        return True
    if worker.get("task") is not None and worker["task"] == me["task"]:  # this array task, requeued
        return True
    if worker["host"] == me["host"]:
        return not _alive(worker["pid"])
    return time.time() - worker["heartbeat"] > STALE_S


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:  # a killed process its parent has not reaped yet is gone too
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
