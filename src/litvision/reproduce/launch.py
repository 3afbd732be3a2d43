"""Where the runner's jobs run: ``local`` (this machine, a pool of GPU slots in ``Reproduction.execute``),
``slurm`` (one task of a SLURM job array per job, submitted through submitit), or ``submitit-local``
(the same submission run on this machine by submitit's LocalExecutor: every task at once, to try a
set-up and its requeue before a cluster sees it).

submitit's LocalExecutor cannot be the ``local`` launcher: it starts every job as soon as it is
submitted, with no limit on how many run at once, and gives each the same GPUs
(``visible_gpus[:gpus_per_node]``). Handing each run the next free GPU is the scheduling it lacks, and
the runner's pool does that.

A task that reaches its time limit or is preempted receives submitit's signal (USR2, ``signal_delay_s``
before the end). submitit then calls :meth:`JobTask.checkpoint`, which stops the run's process, and
requeues the task; the requeued task builds its job again, and the run continues from its
``last.ckpt`` through the exact resume. submitit alone owns the signal: the run's trainer gets
Lightning's plain ``LightningEnvironment``, so Lightning installs no SLURM auto-requeue handler of its
own (and a run of several GPUs starts its DDP processes inside its one task).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from litvision.errors import LitvisionError
from litvision.reproduce.plan import TimeLoader, read_yaml
from litvision.utils import now, read_json, visible_gpus, write_json

if TYPE_CHECKING:
    from litvision.reproduce.runner import Job, Reproduction

LAUNCHERS = ("local", "slurm", "submitit-local")
SUBMITIT_DIR = ".submitit"  # in the runs directory: submitit's pickles and each task's log
SUBMISSIONS = "submissions.json"  # job id -> array task, so that a second submission skips queued jobs
# Lightning must not requeue the job itself when it sees SLURM's variables (see the module's docstring).
PLAIN_ENVIRONMENT = "--trainer.plugins+=lightning.fabric.plugins.environments.LightningEnvironment"
ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "CONFIGURING", "COMPLETING", "SUSPENDED"}


@dataclass
class SlurmSettings:
    """What each array task asks SLURM for; a YAML file of these keys (``--slurm FILE``), each also an
    option of ``reproduce run`` (docs/cluster.md)."""

    partition: str | None = None
    time: str = "24:00:00"  # the time limit of one attempt, as sbatch --time: minutes or [D-]HH:MM:SS
    gpus_per_run: int | None = None  # default: --gpus-per-run; 0 for a CPU partition
    cpus_per_run: int | None = None
    mem_gb: float | None = None
    array_parallelism: int = 256  # at most this many tasks at once
    account: str | None = None
    max_timeouts: int = 3  # requeues after reaching the time limit (preemptions requeue without limit)
    signal_delay_s: int = 120  # the signal comes this long before the time limit
    sbatch: dict[str, Any] = field(default_factory=dict)  # any other sbatch option: {qos: high}
    setup: list[str] = field(default_factory=list)  # shell lines before each task: module load, ...

    @classmethod
    def load(cls, path: Path | None = None, **given: Any) -> SlurmSettings:
        """Settings from a YAML file (if any), then the options given (None: not given)."""
        data = read_yaml(path, "SLURM settings", TimeLoader) if path is not None else {}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LitvisionError(
                f"SLURM settings '{path}': unknown key '{unknown[0]}'; "
                f"the keys are {', '.join(sorted(known))}"
            )
        data.update({key: value for key, value in given.items() if value is not None})
        settings = cls(**data)
        settings.timeout_s()  # checks the format
        for name in ("array_parallelism", "max_timeouts", "signal_delay_s", "gpus_per_run"):
            value = getattr(settings, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise LitvisionError(f"SLURM setting {name}={value!r} is invalid: use a count >= 0")
        return settings

    def timeout_s(self) -> int:
        """``time`` in seconds; sbatch's formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
        match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(self.time).strip())
        if match is None:
            raise LitvisionError(
                f"SLURM time {self.time!r} is invalid: use minutes, or [days-]hours:minutes:seconds "
                "as sbatch --time does"
            )
        days, first, second, third = (int(g or 0) for g in match.groups())
        hours_first = match.group(1) is not None or match.group(4) is not None  # D-H[:M[:S]] or H:M:S
        hours, minutes, seconds = (first, second, third) if hours_first else (0, first, second)
        return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def add_arguments(parser: Any) -> None:
    """The launcher's options of ``reproduce run`` and ``reproduce sweep``."""
    parser.add_argument(
        "--launcher", choices=LAUNCHERS, default="local",
        help="local: this machine, one run per GPU (or --jobs); slurm: one SLURM array task per run "
        "through submitit, requeued on timeout and preemption; submitit-local: the same through submitit "
        "on this machine, every task at once (to try a set-up)",
    )  # fmt: skip
    parser.add_argument("--slurm", type=Path, metavar="FILE", help="SLURM settings (YAML; docs/cluster.md)")
    parser.add_argument("--partition", help="SLURM partition")
    parser.add_argument("--time", help="time limit of one attempt of a run (sbatch --time), e.g. 4:00:00")
    parser.add_argument("--account", help="SLURM account")
    parser.add_argument("--array-parallelism", type=int, help="array tasks at once (default 256)")
    parser.add_argument("--cpus-per-run", type=int, help="CPUs of each array task")
    parser.add_argument(
        "--sbatch", action="append", default=[], metavar="KEY=VALUE",
        help="any other sbatch option, e.g. --sbatch qos=high --sbatch constraint=a100 (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--wait", action="store_true",
        help="with slurm: wait for the tasks, then run what needs them (references, analyses); "
        "default: return once submitted (submitit-local always waits)",
    )  # fmt: skip


def from_args(args: Any) -> Launcher | None:
    """The launcher of ``reproduce run``'s options; None for the local one."""
    if args.launcher == "local":
        return None
    sbatch: dict[str, str] = {}
    for item in args.sbatch:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LitvisionError(f"--sbatch {item!r} is invalid: use KEY=VALUE, e.g. --sbatch qos=high")
        sbatch[key.strip().lstrip("-")] = value
    settings = SlurmSettings.load(
        args.slurm, partition=args.partition, time=args.time, account=args.account,
        array_parallelism=args.array_parallelism, cpus_per_run=args.cpus_per_run,
    )  # fmt: skip
    settings.sbatch = {**settings.sbatch, **sbatch}
    return Launcher(args.launcher, settings, args.wait)


class Launcher:
    """Submits the runner's jobs as array tasks through submitit."""

    def __init__(self, kind: str, settings: SlurmSettings, wait: bool = False) -> None:
        if kind not in LAUNCHERS[1:]:
            raise LitvisionError(f"launcher '{kind}' is unknown: use one of {', '.join(LAUNCHERS)}")
        self.kind = kind
        self.settings = settings
        self.wait = wait or kind == "submitit-local"
        self.jobs: dict[str, Any] = {}  # the runner's job id -> submitit's job

    def executor(self, folder: Path, gpus_per_run: int) -> Any:
        try:
            import submitit
        except ImportError:
            raise LitvisionError(
                f"--launcher {self.kind} needs submitit: pip install 'litvision[slurm]'"
            ) from None
        s = self.settings
        gpus = s.gpus_per_run if s.gpus_per_run is not None else gpus_per_run
        if self.kind == "submitit-local":
            executor = submitit.LocalExecutor(folder, max_num_timeout=s.max_timeouts)
            executor.update_parameters(
                timeout_min=s.timeout_s() / 60, signal_delay_s=s.signal_delay_s, gpus_per_node=gpus,
                tasks_per_node=1, stderr_to_stdout=True, setup=s.setup,
            )  # fmt: skip
            return executor
        try:
            executor = submitit.SlurmExecutor(folder, max_num_timeout=s.max_timeouts)
        except RuntimeError as err:  # no srun here
            raise LitvisionError(
                f"--launcher slurm: {err} Submit from a machine of the cluster, or try "
                "--launcher submitit-local"
            ) from None
        executor.update_parameters(
            job_name="litvision", time=-(-s.timeout_s() // 60), nodes=1, ntasks_per_node=1,
            gpus_per_node=gpus or None, cpus_per_task=s.cpus_per_run, mem=s.mem_gb,
            partition=s.partition, account=s.account, array_parallelism=s.array_parallelism,
            signal_delay_s=s.signal_delay_s, additional_parameters=s.sbatch or None, setup=s.setup or None,
            stderr_to_stdout=True,
        )  # fmt: skip
        return executor

    def submit(self, runner: Reproduction, jobs: list[Job]) -> None:
        """One array task per job; skips jobs whose earlier task is still pending or running."""
        folder = runner.root / SUBMITIT_DIR
        record_path = folder / SUBMISSIONS
        records = read_json(record_path) or {}
        executor = self.executor(folder, runner.gpus_per_run)
        queued = [job for job in jobs if self._active(executor, records.get(job.id))]
        for job in queued:
            runner.console.print(
                f"{job.kind} [bold]{job.id}[/] is queued already (job {records[job.id]['job_id']})"
            )
        todo = [job for job in jobs if job not in queued]
        if not todo:
            return
        with executor.batch():
            submitted = [executor.submit(JobTask(runner, job.remake)) for job in todo]
        for job, task in zip(todo, submitted):
            records[job.id] = {"job_id": task.job_id, "kind": job.kind, "log": str(job.log), "at": now()}
            runner.console.print(
                f"{job.kind} [bold]{job.id}[/] submitted as job {task.job_id} (log: {job.log})"
            )
        write_json(record_path, records)
        self.jobs.update((job.id, task) for job, task in zip(todo, submitted))
        if self.wait:
            for job, task in zip(todo, submitted):
                task.wait()
                error = task.exception()
                if error is None:
                    continue
                # The task raised the runner's one-line failure; submitit wraps it in its traceback.
                said = [
                    line.split("Error: ", 1)[-1] for line in str(error).splitlines() if f" {job.id}: " in line
                ]
                runner.failures.append(said[-1] if said else f"{job.kind} {job.id}: see {task.paths.stdout}")

    def _active(self, executor: Any, record: dict[str, Any] | None) -> bool:
        """Whether a job submitted earlier is still pending or running (SLURM's accounting says)."""
        if record is None or self.kind != "slurm":
            return False
        from submitit import SlurmJob

        return SlurmJob(executor.folder, str(record["job_id"])).state in ACTIVE_STATES


class JobTask:
    """One array task: builds its job where it runs (a requeued run finds the ``last.ckpt`` it left) and
    runs it in the foreground, in a thread, so that the main thread is free for submitit's signal."""

    def __init__(self, runner: Reproduction, remake: Callable[[], Job | None]) -> None:
        self.runner = runner
        self.remake = remake
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def __call__(self) -> str:
        runner = self.runner
        slot = visible_gpus() or None  # what SLURM (or the local executor) gave this task: all for the run
        runner.slots, runner.gpus_per_run, runner.failures = [slot], len(slot or [None]), []
        job = self.remake()
        if job is None:
            return "finished already"
        if job.kind == "run":
            job.command.append(PLAIN_ENVIRONMENT)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=runner.run_one, args=(job, slot, "", self._stop))
        self._thread.start()
        while self._thread.is_alive():
            self._thread.join(0.5)
        if runner.failures:
            raise RuntimeError(runner.failures[-1])
        return "finished"

    def checkpoint(self) -> Any:
        """Called by submitit on its signal: stop the run (it resumes from its last checkpoint) and
        requeue this task."""
        from submitit.helpers import DelayedSubmission

        if self._stop is not None and self._thread is not None:
            self._stop.set()
            self._thread.join()
        return DelayedSubmission(JobTask(self.runner, self.remake))

    def __getstate__(self) -> dict[str, Any]:
        return {"runner": self.runner, "remake": self.remake, "_stop": None, "_thread": None}
