"""Jobs as SLURM array tasks through submitit (``slurm``), or the same submission run here by submitit's
LocalExecutor (``submitit-local``, to try a set-up and its requeue); ``local`` is the pool (pool.py).
``litvision search`` submits its workers through the same executor and settings.

A task executes its job as the pool does (``pool.execute``), in a thread. On submitit's signal before the
time limit or a preemption, :meth:`JobTask.checkpoint` stops the run and requeues the task, which
resumes from ``last.ckpt``; the run gets Lightning's plain environment, so only submitit handles signals.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from litvision.errors import LitvisionError
from litvision.launch.pool import Job, execute, finished
from litvision.utils import now, read_json, visible_gpus, write_json

LAUNCHERS = ("local", "slurm", "submitit-local")
SUBMITIT_DIR = ".submitit"  # in the runs directory: submitit's pickles and each task's log
SUBMISSIONS = "submissions.json"  # job id -> array task, so that a second submission skips queued jobs
PLAIN_ENVIRONMENT = "--trainer.plugins+=lightning.fabric.plugins.environments.LightningEnvironment"
ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "CONFIGURING", "COMPLETING", "SUSPENDED"}


@dataclass
class SlurmSettings:
    """What each array task asks SLURM for (docs/cluster.md).

    Args:
        partition: SLURM partition.
        time: the time limit of one attempt, as sbatch --time: minutes or [days-]hours:minutes:seconds,
            a string (quoted in YAML, which reads 4:00:00 unquoted as a number).
        gpus_per_run: GPUs of each task (default: --gpus_per_run; 0 for a CPU partition).
        cpus_per_run: CPUs of each task.
        mem_gb: memory of each task.
        array_parallelism: array tasks at once.
        account: SLURM account.
        max_timeouts: requeues after reaching the time limit (preemptions requeue without limit).
        signal_delay_s: how long before the time limit the signal comes.
        sbatch: any other sbatch option, e.g. --slurm.sbatch.qos=high.
        setup: shell lines run before each task: module load, ...
    """

    partition: str | None = None
    time: str = "24:00:00"
    gpus_per_run: int | None = None
    cpus_per_run: int | None = None
    mem_gb: float | None = None
    array_parallelism: int = 256
    account: str | None = None
    max_timeouts: int = 3
    signal_delay_s: int = 120
    sbatch: dict[str, Any] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)

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

    def check(self) -> None:
        self.timeout_s()
        for name in ("array_parallelism", "max_timeouts", "signal_delay_s", "gpus_per_run", "cpus_per_run"):
            if (getattr(self, name) or 0) < 0:
                raise LitvisionError(
                    f"SLURM setting {name}={getattr(self, name)!r} is invalid: use a count >= 0"
                )


@dataclass
class Launcher:
    """Submits jobs as array tasks through submitit."""

    kind: str
    settings: SlurmSettings
    wait: bool = False  # wait for the tasks (submitit-local always does)
    gpus_per_run: int = 1
    tasks: dict[str, Any] = field(default_factory=dict)  # job id -> submitit's job

    def __post_init__(self) -> None:
        self.settings.check()
        self.wait = self.wait or self.kind == "submitit-local"

    def executor(self, folder: Path) -> Any:
        try:
            import submitit
        except ImportError:
            raise LitvisionError(
                f"--launcher {self.kind} needs submitit: pip install 'litvision[slurm]'"
            ) from None
        s = self.settings
        gpus = s.gpus_per_run if s.gpus_per_run is not None else self.gpus_per_run
        given = {"signal_delay_s": s.signal_delay_s, "stderr_to_stdout": True}
        if self.kind == "submitit-local":
            executor = submitit.LocalExecutor(folder, max_num_timeout=s.max_timeouts)
            given.update(timeout_min=s.timeout_s() / 60, gpus_per_node=gpus, tasks_per_node=1, setup=s.setup)
            executor.update_parameters(**given)
            return executor
        try:
            executor = submitit.SlurmExecutor(folder, max_num_timeout=s.max_timeouts)
        except RuntimeError as err:  # no srun here
            raise LitvisionError(
                f"--launcher slurm: {err} Submit from a machine of the cluster, or try submitit-local"
            ) from None
        given.update(job_name="litvision", time=-(-s.timeout_s() // 60), nodes=1, ntasks_per_node=1)
        given.update(gpus_per_node=gpus or None, cpus_per_task=s.cpus_per_run, mem=s.mem_gb)
        given.update(partition=s.partition, account=s.account, array_parallelism=s.array_parallelism)
        executor.update_parameters(**given, additional_parameters=s.sbatch or None, setup=s.setup or None)
        return executor

    def submit(self, jobs: list[Job], folder: Path, console: Console) -> list[str]:
        """One array task per job, but for jobs whose earlier task is still pending or running; with
        ``wait``, the failures once the tasks have ended."""
        records = read_json(folder / SUBMISSIONS) or {}
        executor = self.executor(folder)
        queued = [job for job in jobs if self.active(executor, records.get(job.id))]
        for job in queued:
            console.print(f"{job.kind} [bold]{job.id}[/] is queued already (job {records[job.id]['job_id']})")
        todo = [job for job in jobs if job not in queued]
        if not todo:
            return []
        with executor.batch():
            tasks = [executor.submit(JobTask(job)) for job in todo]
        for job, task in zip(todo, tasks):
            records[job.id] = {"job_id": task.job_id, "kind": job.kind, "log": str(job.log), "at": now()}
            console.print(f"{job.kind} [bold]{job.id}[/] submitted as job {task.job_id} (log: {job.log})")
        write_json(folder / SUBMISSIONS, records)
        self.tasks.update((job.id, task) for job, task in zip(todo, tasks))
        failures = []
        for job, task in zip(todo, tasks) if self.wait else []:
            task.wait()
            if task.exception() is not None:
                marker = read_json(job.marker) or {}
                failures.append(f"{job.kind} {job.id}: {marker.get('reason') or f'see {task.paths.stdout}'}")
        return failures

    def active(self, executor: Any, record: dict[str, Any] | None) -> bool:
        """Whether a job submitted earlier is still pending or running (SLURM's accounting says)."""
        if record is None or self.kind != "slurm":
            return False
        from submitit import SlurmJob

        return SlurmJob(executor.folder, str(record["job_id"])).state in ACTIVE_STATES


@dataclass
class JobTask:
    """One array task: executes its job in a thread, so that the main thread is free for submitit's
    signal; a run gets Lightning's plain environment (submitit owns the signals)."""

    job: Job

    def __call__(self) -> str:
        if finished(self.job.marker, self.job.done):
            return "finished already"
        job = (
            replace(self.job, args=(*self.job.args, PLAIN_ENVIRONMENT))
            if self.job.kind == "run"
            else self.job
        )
        self.stop, self.marker = threading.Event(), {}
        self.thread = threading.Thread(
            target=lambda: self.marker.update(execute(job, visible_gpus() or None, self.stop))
        )
        self.thread.start()
        while self.thread.is_alive():
            self.thread.join(0.5)
        if self.marker.get("status") != "finished":
            raise RuntimeError(f"{self.job.kind} {self.job.id}: {self.marker.get('reason')}")
        return "finished"

    def checkpoint(self) -> Any:
        """Called by submitit on its signal: stop the run (it resumes from its last checkpoint) and
        requeue this task."""
        from submitit.helpers import DelayedSubmission

        if hasattr(self, "thread"):
            self.stop.set()
            self.thread.join()
        return DelayedSubmission(JobTask(self.job))

    def __getstate__(self) -> dict[str, Any]:
        return {"job": self.job}  # not the thread: submitit pickles the task to requeue it
