"""A job: one ``litvision`` command (a reproduction's run, its plain-loop reference, an analysis) as plain
data, and how it is executed: here in a pool of slots (GPUs, or shares of the CPU), or in a SLURM array
task (slurm.py), the same way; and the progress line of a pool.

A job writes its output beside its status file, ``marker`` (``reproduce.json`` in a run's directory),
written when it ends: it finished when the marker says so and its ``done`` file exists. Its log is the
marker's ``.log``. A run whose directory holds ``checkpoints/last.ckpt`` resumes from it in place.
"""

from __future__ import annotations

import os
import queue
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from litvision.utils import now, read_json, write_json

MARKER = "reproduce.json"
INTERRUPTED = "interrupted"  # a job stopped by the runner (Ctrl-C, SIGTERM, a requeue): not a failure


@dataclass(frozen=True)
class Job:
    """What to run (``litvision ARGS``), where (its marker's folder), with which seed and budget (the
    arguments; ``seconds``: its estimate); picklable, with no callbacks."""

    kind: str  # "run", "plain loop" or "analysis"
    id: str  # report/run (its seed included) or report/analysis
    args: tuple[str, ...]
    marker: Path
    done: Path
    seconds: float = 0.0
    checkpoint: Path | None = None  # a run's last.ckpt: resumed from when it exists at the start
    record: dict[str, Any] = field(default_factory=dict)  # what the marker also keeps (config, tool, ...)

    @property
    def log(self) -> Path:
        return self.marker.with_suffix(".log")

    @property
    def command(self) -> str:
        """The command as a user types it."""
        return shlex.join(["litvision", *self.args])

    @property
    def key(self) -> str:
        """Its name in the progress line."""
        return self.id if self.kind == "run" else f"{self.id} ({self.kind})"


def finished(marker: Path, done: Path) -> bool:
    return (read_json(marker) or {}).get("status") == "finished" and done.is_file()


def last_error(log: Path) -> str:
    """The line of a failed command's output that says why: its ``error:`` line, else its last line."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no output"
    for line in reversed(lines):
        if "error:" in line or line.startswith(("RuntimeError", "ValueError", "TypeError", "KeyError")):
            return line[:300]
    return lines[-1][:300] if lines else "no output"


def execute(job: Job, gpus: list[str] | None, stop: threading.Event, threads: int | None = None) -> dict:
    """Run ``job`` on ``gpus`` (None: the CPU, with ``threads`` threads) until it ends or ``stop`` is set
    (then one SIGTERM, SIGKILL 30 s later); write and return its marker."""
    previous = read_json(job.marker) or {}
    args, resumed = list(job.args), job.checkpoint is not None and job.checkpoint.is_file()
    if resumed:  # an interrupted run: continue it
        args.append(f"--ckpt_path={job.checkpoint}")
    elif job.checkpoint is not None:  # a failed or interrupted start with nothing to keep
        shutil.rmtree(job.marker.parent, ignore_errors=True)
    job.log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    elif threads:  # runs side by side on a CPU share its cores instead of each starting a thread per core
        env.setdefault("OMP_NUM_THREADS", str(threads))
    started, start = now(), time.perf_counter()
    with job.log.open("w") as log:
        command = [sys.executable, "-m", "litvision", *args]
        log.write("$ " + shlex.join(command) + "\n")
        log.flush()
        rc, cpu = wait(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), stop)
    seconds = time.perf_counter() - start
    if rc == 0 and job.done.is_file():
        status, reason = "finished", None
    elif stop.is_set():
        status, reason = INTERRUPTED, INTERRUPTED
    else:
        status = "failed"
        reason = last_error(job.log) if rc else f"it exited without writing {job.done.name} (interrupted?)"
    marker = {
        "status": status, "run": job.id, "kind": job.kind, "command": job.command, **job.record,
        "started_at": started, "finished_at": now(), "wall_time_s": round(seconds, 1),
        "cpu_time_s": None if cpu is None else round(cpu, 1), "attempts": previous.get("attempts", 0) + 1,
        "resumed_from_checkpoint": resumed, **({"reason": reason} if reason else {}),
    }  # fmt: skip
    write_json(job.marker, marker)
    return marker


def wait(process: subprocess.Popen, stop: threading.Event, grace_s: float = 30) -> tuple[int, float | None]:
    """Wait for ``process`` (once ``stop`` is set, asking it to stop with one SIGTERM, killing it ``grace_s``
    later): its exit status and CPU seconds."""
    stopped = None
    while process.returncode is None:  # else reaped by terminate(), which polls first
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, usage.ru_utime + usage.ru_stime
        if stop.wait(0.5):
            if stopped is None:  # once: a second SIGTERM would cut Lightning's own stop short
                stopped = time.monotonic()
                process.terminate()
            elif time.monotonic() - stopped > grace_s:  # a run's checkpoints survive a kill at any instant
                process.kill()
    return process.returncode, None


def summary(job: Job) -> str:
    """What a finished job found, in a few words: the test accuracy of a run or a plain loop."""
    acc = (read_json(job.done) or {}).get("acc") if job.done.suffix == ".json" else None
    return f": test accuracy {100 * acc:.2f}%" if isinstance(acc, (int, float)) else ""


def run_pool(
    jobs: list[Job], slots: list[list[str] | None], console: Console, progress: Progress | None = None
) -> list[str]:
    """Run ``jobs``, one per slot at a time (a slot: a group of GPUs, or None, a share of the CPU); print
    each start and end, and the progress line after a job it counts; return the failures, one line
    each. Ctrl-C stops the running ones."""
    free: queue.Queue[list[str] | None] = queue.Queue()
    for slot in slots:
        free.put(slot)
    stop, failures, lock = threading.Event(), [], threading.Lock()
    counter = iter(range(1, len(jobs) + 1))
    threads = max(1, (os.cpu_count() or 1) // len(slots))

    def work(job: Job) -> None:
        if stop.is_set():
            return
        slot = free.get()
        try:
            at = f"GPU {','.join(slot)}" if slot else "CPU" if len(slots) == 1 else f"CPU ({threads} threads)"
            position = f"[{next(counter)}/{len(jobs)}] {job.kind} [bold]{job.id}[/]"
            console.print(f"{position} started on {at} (log: {job.log})")
            counted = progress is not None and job.key in progress.predicted
            if counted:
                with lock:
                    progress.start(job.key)
            marker = execute(job, slot, stop, threads if len(slots) > 1 else None)
            seconds, reason = marker["wall_time_s"], marker.get("reason")
            if marker["status"] == "finished":
                console.print(f"{position} finished in {seconds:.0f} s{summary(job)}")
            elif reason == INTERRUPTED:
                console.print(
                    f"{position} [bold yellow]interrupted[/] after {seconds:.0f} s: it resumes at the next "
                    "start"
                )
            else:
                console.print(
                    f"{position} [bold red]failed[/] after {seconds:.0f} s: {reason} (log: {job.log})"
                )
            with lock:
                failures.extend([] if reason is None else [f"{job.kind} {job.id}: {reason}"])
                if counted:
                    progress.end(job.key, seconds, None if reason == INTERRUPTED else reason is None)
                    console.print(f"[dim]progress: {progress.line()}[/]")
        finally:
            free.put(slot)

    with ThreadPoolExecutor(max_workers=len(slots)) as pool:
        futures = [pool.submit(work, job) for job in jobs]
        try:
            for future in futures:
                future.result()
        except KeyboardInterrupt:
            stop.set()
            for future in futures:
                future.cancel()
            console.print("[bold red]interrupted[/]: a run resumes from its last.ckpt (if kept) next time")
            raise
    return failures


def format_duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{int(seconds % 60):02d}s"


class Progress:
    """Jobs finished, running and left, the time elapsed and an estimate of the time left."""

    def __init__(self, predicted: dict[str, float], slots: int = 1) -> None:
        self.predicted = predicted  # job id -> estimated seconds, of the jobs this command runs
        self.slots = max(slots, 1)
        self.started = time.perf_counter()
        self.running: set[str] = set()
        self.failed: set[str] = set()
        self.actual: dict[str, float] = {}  # job id -> seconds, of the finished jobs

    def start(self, job: str) -> None:
        self.running.add(job)

    def end(self, job: str, seconds: float, ok: bool | None) -> None:
        """A job ended: ``ok`` True (finished), False (failed) or None (interrupted: left to do)."""
        self.running.discard(job)
        if ok:
            self.actual[job] = seconds
        elif ok is False:
            self.failed.add(job)

    def left_seconds(self) -> float:
        expected = sum(self.predicted.get(r, 0.0) for r in self.actual)
        ratio = sum(self.actual.values()) / expected if expected > 0 else 1.0
        left = [s for r, s in self.predicted.items() if r not in self.actual and r not in self.failed]
        return ratio * sum(left) / self.slots

    def line(self) -> str:
        left = len(self.predicted) - len(self.actual) - len(self.failed) - len(self.running)
        failed = f", {len(self.failed)} failed" if self.failed else ""
        elapsed = format_duration(time.perf_counter() - self.started)
        return (
            f"{len(self.actual)} finished, {len(self.running)} running, {left} left{failed}; "
            f"{elapsed} elapsed, about {format_duration(self.left_seconds())} left"
        )
