"""Runs a reproduction: every run of the chosen reports as an ordinary ``litvision fit`` subprocess, the
plain-loop references, then the analyses (``litvision analyze``), several at once when there are GPUs.

Each run has its own directory, ``RUNS/<scale>/<report>/<run>/`` (a Lightning run directory: its
``config.yaml``, checkpoints, ``test_results.json``, TensorBoard events), plus ``reproduce.log`` (the
run's output) and ``reproduce.json``, written last: a run is finished when that file says so and
``test_results.json`` exists. Finished runs are skipped, so an interrupted reproduction resumes; an
unfinished run with ``checkpoints/last.ckpt`` resumes from it, in place.
"""

from __future__ import annotations

import fcntl
import os
import queue
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from litvision.analysis.cli import BY_NAME
from litvision.cli import DEFAULT_SEED
from litvision.errors import LitvisionError
from litvision.reproduce.data_sources import DATASETS, DataSource
from litvision.reproduce.estimate import (
    EVAL_SHARE,
    START_S,
    Progress,
    dotted_args,
    setting,
    step_seconds,
    training_images,
)
from litvision.reproduce.plan import Analysis, ReportPlan, RunSpec, Scale, lookup, read_yaml
from litvision.utils import read_json, write_json

MARKER = "reproduce.json"
LOG = "reproduce.log"
PLAIN_DIR = "plain_loop"
ANALYSES_FILE = "analyses.json"
ESTIMATES = "estimates.json"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def is_finished(run_dir: Path) -> bool:
    marker = read_json(run_dir / MARKER)
    return bool(marker and marker.get("status") == "finished" and (run_dir / "test_results.json").is_file())


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


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    node = config
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def wait(process: subprocess.Popen, stop: threading.Event) -> tuple[int, float | None]:
    """Wait for ``process`` (terminating it if ``stop`` is set): its exit status and CPU seconds."""
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, usage.ru_utime + usage.ru_stime
        if stop.wait(0.5):
            process.terminate()


def seed_args(config: dict[str, Any], seed: int) -> list[str]:
    """Seed ``seed`` of a run: the config's training seed (initialisation, order, augmentation) and its
    data split seed (validation split, imbalanced subset) both moved by ``seed``; 0 is the config itself."""
    if not seed:
        return []
    found, base = lookup(config, "seed_everything")
    found_split, split = lookup(config, "data.init_args.split_seed")
    base = base if found and isinstance(base, int) and not isinstance(base, bool) else DEFAULT_SEED
    return [f"--seed_everything={base + seed}", f"--data.split_seed={(split if found_split else 0) + seed}"]


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


@dataclass
class Job:
    """One subprocess: a run, a plain-loop reference or an analysis."""

    kind: str
    id: str
    command: list[str]
    log: Path
    # Given the seconds taken and the CPU seconds: a one-line summary of the result.
    on_success: Callable[[float, float | None], str | None]
    on_failure: Callable[[float, float | None, str], None] = lambda seconds, cpu, reason: None


class Reproduction:
    """The runs, references and analyses of some report plans at one scale, on one data source."""

    def __init__(
        self,
        plans: list[ReportPlan],
        scale: Scale,
        source: DataSource,
        root: Path,
        jobs: int | None = None,
        gpus_per_run: int = 1,
        python: str = sys.executable,
        console: Console | None = None,
        extra_args: list[str] | None = None,
        seeds: int | None = None,
    ) -> None:
        if seeds is not None and seeds < 1:
            raise LitvisionError(f"--seeds {seeds} is invalid: it must be 1 or more")
        self.seeds = seeds
        self.plans = plans
        self.scale = scale
        self.source = source
        self.root = root  # runs go to ROOT/<report>/<run>/
        self.extra_args = list(extra_args or [])
        self.python = python
        self.console = console or Console()
        if gpus_per_run < 1:
            raise LitvisionError(f"--gpus-per-run {gpus_per_run} is invalid: it must be 1 or more")
        if jobs is not None and jobs < 1:
            raise LitvisionError(f"--jobs {jobs} is invalid: it must be 1 or more")
        # A slot is what one run gets: a group of GPUs, or (None) a share of the CPU.
        gpus = visible_gpus()
        self.slots: list[list[str] | None]
        if gpus:
            groups = [
                gpus[i : i + gpus_per_run] for i in range(0, len(gpus) - gpus_per_run + 1, gpus_per_run)
            ]
            if not groups:
                raise LitvisionError(f"--gpus-per-run {gpus_per_run}: only {len(gpus)} GPU(s) are visible")
            self.slots = list(groups[: jobs or len(groups)])
        else:
            self.slots = [None] * (jobs or 1)
        self.gpus_per_run = gpus_per_run
        self.failures: list[str] = []
        self.progress: Progress | None = None
        self._lock = threading.Lock()

    # --- where things are -------------------------------------------------------------------------
    def run_dir(self, spec: RunSpec) -> Path:
        return self.root / spec.report / spec.name

    def analysis_dir(self, plan: ReportPlan, analysis: Analysis) -> Path:
        """Where an analysis writes: its run's ``analysis/`` for a single-run tool, else a folder of the
        report."""
        if analysis.tool != "loss-landscape" and len(analysis.runs) == 1:
            return self.run_dir(plan.runs[analysis.runs[0]]) / "analysis"
        return self.root / plan.id / "analysis" / analysis.key

    # --- commands ---------------------------------------------------------------------------------
    def resolved_config(self, spec: RunSpec) -> dict[str, Any]:
        """The run's config file with its overrides applied (enough to choose its data arguments)."""
        config = read_yaml(spec.config, "config")
        for key, value in spec.overrides:
            set_dotted(config, key, value)
        return config

    def fit_args(self, spec: RunSpec) -> list[str]:
        """``litvision fit`` arguments of a run: config, overrides, data, scale, run directory."""
        config = self.resolved_config(spec)
        data_args, _ = self.source.run_args(config)
        return [
            "fit",
            f"--config={spec.config}",
            *spec.override_args(),
            *data_args,
            *self.scale.run_args(spec),
            *seed_args(config, spec.seed),
            *self.extra_args,
            f"--trainer.logger.init_args.save_dir={self.root}",
            f"--trainer.logger.init_args.name={spec.report}",
            f"--trainer.logger.init_args.version={spec.name}",
            "--trainer.enable_progress_bar=false",
        ]

    def device_args(self) -> list[str]:
        if self.gpus_per_run > 1 and self.slots and self.slots[0] is not None:
            return [f"--trainer.devices={self.gpus_per_run}", "--trainer.strategy=ddp"]
        return []

    def rerun_command(self, spec: RunSpec) -> str:
        """The command that trains this run alone, as a user would type it."""
        return shlex.join(["litvision", *self.fit_args(spec), *self.device_args()])

    # --- jobs -------------------------------------------------------------------------------------
    def run_job(self, spec: RunSpec) -> Job | None:
        """The job that trains ``spec``, or None when it has finished already."""
        run_dir = self.run_dir(spec)
        if is_finished(run_dir):
            return None
        args = [*self.fit_args(spec), *self.device_args()]
        last = run_dir / "checkpoints" / "last.ckpt"
        previous = read_json(run_dir / MARKER) or {}
        if last.is_file():  # an interrupted run: continue it in its own directory
            args.append(f"--ckpt_path={last}")
        elif run_dir.exists():  # a failed or interrupted start with nothing to keep
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        started = now()
        attempts = int(previous.get("attempts", 0)) + 1
        resumed = last.is_file()

        def record(status: str, seconds: float, cpu: float | None, reason: str | None = None) -> None:
            write_json(
                run_dir / MARKER,
                {
                    "status": status,
                    "run": spec.id,
                    "config": str(spec.config),
                    "overrides": {k: v for k, v in spec.overrides},
                    "command": self.rerun_command(spec),
                    "scale": self.scale.name,
                    "data_source": self.source.name,
                    "started_at": started,
                    "finished_at": now(),
                    "wall_time_s": round(seconds, 1),
                    "cpu_time_s": None if cpu is None else round(cpu, 1),
                    "attempts": attempts,
                    "resumed_from_checkpoint": resumed,
                    **({"reason": reason} if reason else {}),
                },
            )

        def success(seconds: float, cpu: float | None) -> str | None:
            if not (run_dir / "test_results.json").is_file():
                raise LitvisionError("it exited without writing test_results.json (interrupted?)")
            record("finished", seconds, cpu)
            results = read_json(run_dir / "test_results.json") or {}
            return f"test accuracy {100 * results.get('acc', float('nan')):.2f}%"

        return Job(
            "run",
            spec.id,
            [self.python, "-m", "litvision", *args],
            run_dir / LOG,
            success,
            lambda seconds, cpu, reason: record("failed", seconds, cpu, reason),
        )

    def plain_job(self, spec: RunSpec) -> Job | None:
        run_dir = self.run_dir(spec)
        out = run_dir / PLAIN_DIR
        if not self.scale.has_plain_reference(spec) or not is_finished(run_dir):
            return None
        if (out / "results.json").is_file():
            return None
        out.mkdir(parents=True, exist_ok=True)

        def success(seconds: float, cpu: float | None) -> str | None:
            results = read_json(out / "results.json")
            if results is None:
                raise LitvisionError("it exited without writing results.json")
            return f"test accuracy {100 * results['acc']:.2f}%"

        command = [self.python, "-m", "litvision", "reproduce", "plain", str(run_dir), "--output", str(out)]
        return Job("plain loop", spec.id, command, out / LOG, success)

    def analysis_job(self, plan: ReportPlan, analysis: Analysis, statuses: dict[str, Any]) -> Job | None:
        run_dirs = [self.run_dir(plan.runs[name]) for name in analysis.runs]
        if not all(is_finished(d) for d in run_dirs):
            return None
        out = self.analysis_dir(plan, analysis)
        tool = BY_NAME[analysis.tool]
        done = out / str(tool.done)
        newest_run = max(((d / MARKER).stat().st_mtime for d in run_dirs), default=0.0)
        previous = statuses.get(analysis.key, {})
        if done.is_file() and done.stat().st_mtime >= newest_run and previous.get("status") == "done":
            return None
        command = [self.python, "-m", "litvision", "analyze", analysis.tool]
        if analysis.tool == "loss-landscape":
            command += ["--config", str(self.loss_landscape_config(plan, analysis, out))]
        else:
            command += [str(d) for d in run_dirs]
        if analysis.tool == "curves" and len(run_dirs) > 1:
            command += ["--names", *analysis.runs]
        if analysis.tool == "loss-landscape" or len(run_dirs) > 1:
            command += ["--output", str(out)]
        command += [*analysis.args, *self.scale.analyses.get(analysis.tool, [])]
        log = self.root / plan.id / "analysis" / f"{analysis.key}.log"

        def record(status: str, reason: str | None = None) -> None:
            figures = sorted(str(p) for pattern in tool.figures for p in out.glob(pattern))
            entry = {"status": status, "tool": analysis.tool, "runs": analysis.runs, "output": str(out)}
            entry.update(command=shlex.join(["litvision", *command[3:]]), figures=figures, at=now())
            if reason:
                entry["reason"] = reason
            with self._lock:
                statuses[analysis.key] = entry
                write_json(self.root / plan.id / ANALYSES_FILE, statuses)

        def success(seconds: float, cpu: float | None) -> str | None:
            record("done")
            return None

        return Job(
            "analysis",
            f"{plan.id}/{analysis.key}",
            command,
            log,
            success,
            lambda seconds, cpu, reason: record("failed", reason),
        )

    def loss_landscape_config(self, plan: ReportPlan, analysis: Analysis, out: Path) -> Path:
        """The loss landscape's config with this source's data (written beside its output)."""
        assert analysis.config is not None
        config = read_yaml(analysis.config, "config")
        if isinstance(config.get("data"), dict) and "class_path" in config["data"]:
            config["data"] = self.source.swap_data_section(config)
        path = self.root / plan.id / "analysis" / f"{analysis.key}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {analysis.config} with the data of this reproduction\n" + yaml.safe_dump(config))
        return path

    # --- execution --------------------------------------------------------------------------------
    def execute(self, jobs: list[Job]) -> None:
        """Run jobs, as many at once as there are slots (GPUs, or --jobs on a CPU)."""
        if not jobs:
            return
        slots: queue.Queue[list[str] | None] = queue.Queue()
        for slot in self.slots:
            slots.put(slot)
        stop = threading.Event()
        counter = iter(range(1, len(jobs) + 1))

        def work(job: Job) -> None:
            if stop.is_set():
                return
            slot = slots.get()
            try:
                self._run_one(job, slot, f"[{next(counter)}/{len(jobs)}]", stop)
            finally:
                slots.put(slot)

        with ThreadPoolExecutor(max_workers=len(self.slots)) as pool:
            futures = [pool.submit(work, job) for job in jobs]
            try:
                for future in futures:
                    future.result()
            except KeyboardInterrupt:
                stop.set()
                for future in futures:
                    future.cancel()
                self.console.print("[bold red]interrupted[/]: unfinished runs resume at the next start")
                raise

    def _run_one(self, job: Job, slot: list[str] | None, position: str, stop: threading.Event) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if slot is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(slot)
            where = f"GPU {','.join(slot)}"
        else:
            # Runs side by side on a CPU share its cores instead of each starting a thread per core.
            threads = str(max(1, (os.cpu_count() or 1) // len(self.slots)))
            env.setdefault("OMP_NUM_THREADS", threads)
            where = "CPU" if len(self.slots) == 1 else f"CPU ({env['OMP_NUM_THREADS']} threads)"
        self.console.print(f"{position} {job.kind} [bold]{job.id}[/] started on {where} (log: {job.log})")
        progress = self.progress if job.kind == "run" else None
        if progress:
            with self._lock:
                progress.start(job.id)
        job.log.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with job.log.open("w") as log:
            log.write("$ " + shlex.join(job.command) + "\n")
            log.flush()
            process = subprocess.Popen(job.command, stdout=log, stderr=subprocess.STDOUT, env=env)
            rc, cpu = wait(process, stop)
        seconds = time.perf_counter() - start
        reason = None
        if rc == 0:
            try:
                summary = job.on_success(seconds, cpu)
            except LitvisionError as err:
                reason = str(err)
            else:
                extra = f": {summary}" if summary else ""
                self.console.print(
                    f"{position} {job.kind} [bold]{job.id}[/] finished in {seconds:.0f} s{extra}"
                )
                self._report_progress(progress, job, seconds, True)
                return
        reason = reason or ("interrupted" if stop.is_set() else last_error(job.log))
        job.on_failure(seconds, cpu, reason)
        with self._lock:
            self.failures.append(f"{job.kind} {job.id}: {reason}")
        self.console.print(
            f"{position} {job.kind} [bold]{job.id}[/] [bold red]failed[/] after {seconds:.0f} s: {reason} "
            f"(log: {job.log})"
        )
        self._report_progress(progress, job, seconds, False)

    def _report_progress(self, progress: Progress | None, job: Job, seconds: float, ok: bool) -> None:
        if progress is None:
            return
        with self._lock:
            progress.end(job.id, seconds, ok)
            self.console.print(f"[dim]progress: {progress.line()}[/]")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``ROOT/.lock`` while running: a second reproduction into the same runs stops at once."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "pid unknown"
                raise LitvisionError(
                    f"another reproduction is running in '{self.root}' ({holder}); wait for it to end, "
                    "or give another --runs-dir"
                ) from None
            handle.truncate(0)
            handle.write(f"pid {os.getpid()}, started {now()}\n")
            handle.flush()
            try:
                yield
            finally:
                (self.root / ".lock").unlink(missing_ok=True)  # while still holding it
                fcntl.flock(handle, fcntl.LOCK_UN)

    def run(self, analyses: bool = True) -> None:
        """Train every unfinished run, then the plain-loop references, then the analyses."""
        with self.lock():
            self._run(analyses)

    def predicted_seconds(self, spec: RunSpec) -> float | None:
        """A rough estimate of the run's wall time on this machine (see reproduce/estimate.py)."""
        config = self.resolved_config(spec)
        _, dataset = self.source.run_args(config)
        args = dotted_args(self.fit_args(spec)[2:])
        shape = DATASETS[lookup(config, "data.class_path")[1]][1] if dataset else None
        backbone = setting(config, args, "model.backbone")
        if shape is None or not isinstance(backbone, dict) or "class_path" not in backbone:
            return None
        epochs = int(setting(config, args, "trainer.max_epochs", 1000))
        batch = int(setting(config, args, "data.batch_size", 128))
        images = training_images(dataset, config, args, self.source._sizes(dataset))
        limit = setting(config, args, "trainer.limit_train_batches", 1.0)
        images = min(images, limit * batch) if isinstance(limit, int) else int(images * float(limit))
        per_image = step_seconds(backbone, shape, min(batch, 16), self.root / ESTIMATES)
        return START_S + epochs * images * per_image * (1 + EVAL_SHARE)

    def estimate(self) -> float:
        """Estimated seconds to train the runs not finished yet, with this reproduction's slots."""
        specs = [s for s in self.specs() if not self.scale.gpu_reason(s) and not is_finished(self.run_dir(s))]
        return sum(self.predicted_seconds(s) or START_S for s in specs) / len(self.slots)

    def specs(self) -> list[RunSpec]:
        """Every run of the plans with all its seeds, those this scale leaves to a GPU included."""
        return [
            spec.with_seed(k)
            for plan in self.plans
            for spec in plan.unique_runs()
            for k in range(self.scale.seed_count(spec, self.seeds))
        ]

    def _run(self, analyses: bool) -> None:
        specs = [spec for spec in self.specs() if not self.scale.gpu_reason(spec)]
        pending = [(spec, job) for spec in specs if (job := self.run_job(spec)) is not None]
        done = len(specs) - len(pending)
        self.console.print(
            f"[bold]{len(specs)} runs[/] at scale {self.scale.name} on {self.source.name} data: "
            f"{done} finished already, {len(pending)} to run, {len(self.slots)} at a time"
            + (f"; {len(self.specs()) - len(specs)} left to a GPU" if len(self.specs()) > len(specs) else "")
        )
        predicted = {job.id: self.predicted_seconds(spec) or START_S for spec, job in pending}
        self.progress = Progress(predicted, len(self.slots))
        self.execute([job for _, job in pending])
        self.progress = None
        self.execute([job for spec in specs if (job := self.plain_job(spec)) is not None])
        if not analyses:
            return
        jobs = []
        for plan in self.plans:
            statuses = read_json(self.root / plan.id / ANALYSES_FILE) or {}
            jobs += [job for a in plan.analyses if (job := self.analysis_job(plan, a, statuses)) is not None]
        self.execute(jobs)

    def dry_run(self) -> list[str]:
        """The commands that would train each run, one per run, finished ones marked."""
        lines = []
        for spec in self.specs():
            gpu = self.scale.gpu_reason(spec)
            state = (
                "finished" if is_finished(self.run_dir(spec)) else f"needs a GPU: {gpu}" if gpu else "to run"
            )
            lines.append(f"# {spec.id} ({state})\n{self.rerun_command(spec)}")
        return lines
