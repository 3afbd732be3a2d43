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
import fnmatch
import functools
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
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from litvision.analysis.cli import BY_NAME
from litvision.cli import DEFAULT_SEED
from litvision.errors import LitvisionError
from litvision.reproduce.data_sources import DATASETS, DataSource
from litvision.reproduce.estimate import START_S, Progress, run_seconds
from litvision.reproduce.launch import Launcher
from litvision.reproduce.plain import STATE
from litvision.reproduce.plan import Analysis, ReportPlan, RunSpec, Scale, lookup, read_yaml
from litvision.utils import load_checkpoint, now, read_json, visible_gpus, write_json

MARKER = "reproduce.json"
LOG = "reproduce.log"
PLAIN_DIR = "plain_loop"
PLAIN = "plain loop"  # the kind of a plain-loop reference's job
ANALYSES_FILE = "analyses.json"
INTERRUPTED = "interrupted"  # the reason of a job stopped by the runner (Ctrl-C, a requeue): not a failure


def is_finished(run_dir: Path) -> bool:
    marker = read_json(run_dir / MARKER)
    return bool(marker and marker.get("status") == "finished" and (run_dir / "test_results.json").is_file())


def epochs_trained(run_dir: Path, plain: bool = False) -> int:
    """The epochs an unfinished run has trained to its ``last.ckpt``, or (``plain``) its plain-loop
    reference to its saved state (0: none, or it cannot be read)."""
    path = run_dir / PLAIN_DIR / STATE if plain else run_dir / "checkpoints" / "last.ckpt"
    try:
        saved = load_checkpoint(path) if path.is_file() else {}
    except LitvisionError:
        return 0
    key = "done.epochs" if plain else "loops.fit_loop.epoch_progress.total.processed"
    return int(lookup(saved, key)[1] or 0)


def progress_key(kind: str, run_id: str) -> str:
    """A job's name in the progress line: a run's id, or its plain-loop reference's."""
    return run_id if kind == "run" else f"{run_id} ({kind})"


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


def wait(process: subprocess.Popen, stop: threading.Event, grace_s: float = 30) -> tuple[int, float | None]:
    """Wait for ``process`` (once ``stop`` is set, asking it to stop with one SIGTERM, killing it ``grace_s``
    later): its exit status and CPU seconds."""
    stopped = None
    while process.returncode is None:  # else reaped by terminate(), which polls first
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)  # Unix, as fcntl's lock below
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


@dataclass
class Job:
    """One subprocess: a run, a plain-loop reference or an analysis."""

    kind: str
    id: str
    command: list[str]
    log: Path
    # Given the seconds taken and the CPU seconds: a one-line summary of the result (or LitvisionError).
    on_success: Callable[[float, float | None], str | None]
    on_failure: Callable[[float, float | None, str], None] = lambda seconds, cpu, reason: None
    # The same job built afresh where and when it runs (an array task; a requeued run then resumes).
    remake: Callable[[], Job | None] | None = None


class Reproduction:
    """The runs, references and analyses of some report plans at one scale, on one data source."""

    def __init__(
        self, plans: list[ReportPlan], scale: Scale, source: DataSource, root: Path, jobs: int | None = None,
        gpus_per_run: int = 1, python: str = sys.executable, console: Console | None = None,
        extra_args: list[str] | None = None, seeds: int | None = None, launcher: Launcher | None = None,
        only: list[str] | None = None,
    ) -> None:  # fmt: skip
        for option, value in (("--seeds", seeds), ("--jobs", jobs), ("--gpus-per-run", gpus_per_run)):
            if value is not None and value < 1:
                raise LitvisionError(f"{option} {value} is invalid: it must be 1 or more")
        self.plans, self.scale, self.source, self.seeds = plans, scale, source, seeds
        self.only = only  # report/run patterns: the runs to train (None: all)
        rows = {spec.row_id for plan in plans for spec in plan.unique_runs()}
        for pattern in only or []:
            if not fnmatch.filter(rows, pattern):
                raise LitvisionError(f"--only {pattern!r} matches no run of these reports: {sorted(rows)}")
        self.root = root  # runs go to ROOT/<report>/<run>/
        self.extra_args = list(extra_args or [])
        self.python = python
        self.console = console or Console()
        self.launcher = launcher  # None: this machine's slots
        # A slot is what one run gets: a group of GPUs, or (None) a share of the CPU.
        gpus = visible_gpus() if launcher is None else []  # an array task gets its GPUs from SLURM
        groups = [gpus[i : i + gpus_per_run] for i in range(0, len(gpus) - gpus_per_run + 1, gpus_per_run)]
        if gpus and not groups:
            raise LitvisionError(f"--gpus-per-run {gpus_per_run}: only {len(gpus)} GPU(s) are visible")
        self.slots: list[list[str] | None] = (
            list(groups[: jobs or len(groups)]) if gpus else [None] * (jobs or 1)
        )
        self.gpus_per_run = gpus_per_run
        self.failures: list[str] = []
        self.progress: Progress | None = None
        self._lock = threading.Lock()

    def run_dir(self, spec: RunSpec) -> Path:
        return self.root / spec.report / spec.name

    def specs(self) -> list[RunSpec]:
        """Every run of the plans (those of ``only``) with all its seeds, those left to a GPU included."""
        return [
            spec.with_seed(k)
            for plan in self.plans
            for spec in plan.unique_runs()
            if self.only is None or any(fnmatch.fnmatchcase(spec.row_id, p) for p in self.only)
            for k in range(self.scale.seed_count(spec, self.seeds))
        ]

    # --- commands ---------------------------------------------------------------------------------
    def resolved_config(self, spec: RunSpec) -> dict[str, Any]:
        """The run's config file with its overrides applied (enough to choose its data arguments)."""
        config = read_yaml(spec.config, "config")
        for key, value in spec.overrides:
            *parents, last = key.split(".")
            node = config
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        return config

    def fit_args(self, spec: RunSpec) -> list[str]:
        """``litvision fit`` arguments of a run: config, overrides, data, scale, seed, run directory."""
        config = self.resolved_config(spec)
        seed_args = []
        if spec.seed:  # training seed (initialisation, order, augmentation) and data split seed, moved
            found, base = lookup(config, "seed_everything")
            base = base if found and isinstance(base, int) and not isinstance(base, bool) else DEFAULT_SEED
            split = lookup(config, "data.init_args.split_seed")[1] or 0
            seed_args = [f"--seed_everything={base + spec.seed}", f"--data.split_seed={split + spec.seed}"]
        return [
            "fit", f"--config={spec.config}", *spec.override_args(), *self.source.run_args(config)[0],
            *self.scale.run_args(spec), *seed_args, *self.extra_args,
            f"--trainer.logger.init_args.save_dir={self.root}",
            f"--trainer.logger.init_args.name={spec.report}",
            f"--trainer.logger.init_args.version={spec.name}",
            "--trainer.enable_progress_bar=false",
            *([f"--trainer.devices={self.gpus_per_run}", "--trainer.strategy=ddp"] if self.ddp else []),
        ]  # fmt: skip

    @property
    def ddp(self) -> bool:
        return self.gpus_per_run > 1 and bool(self.slots) and self.slots[0] is not None

    def rerun_command(self, spec: RunSpec) -> str:
        """The command that trains this run alone, as a user would type it."""
        return shlex.join(["litvision", *self.fit_args(spec)])

    # --- jobs -------------------------------------------------------------------------------------
    def run_job(self, spec: RunSpec) -> Job | None:
        """The job that trains ``spec``, or None when it has finished already."""
        run_dir = self.run_dir(spec)
        if is_finished(run_dir):
            return None
        args = self.fit_args(spec)
        attempts = int((read_json(run_dir / MARKER) or {}).get("attempts", 0)) + 1
        last = run_dir / "checkpoints" / "last.ckpt"
        resumed = last.is_file()
        if resumed:  # an interrupted run: continue it in its own directory
            args.append(f"--ckpt_path={last}")
        elif run_dir.exists():  # a failed or interrupted start with nothing to keep
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        started = now()

        def record(status: str, seconds: float, cpu: float | None, reason: str | None = None) -> None:
            write_json(run_dir / MARKER, {
                "status": status, "run": spec.id, "config": str(spec.config),
                "overrides": dict(spec.overrides), "command": self.rerun_command(spec),
                "scale": self.scale.name, "data_source": self.source.name,
                "started_at": started, "finished_at": now(), "wall_time_s": round(seconds, 1),
                "cpu_time_s": None if cpu is None else round(cpu, 1), "attempts": attempts,
                "resumed_from_checkpoint": resumed, **({"reason": reason} if reason else {}),
            })  # fmt: skip

        def success(seconds: float, cpu: float | None) -> str:
            if not (run_dir / "test_results.json").is_file():
                raise LitvisionError("it exited without writing test_results.json (interrupted?)")
            record("finished", seconds, cpu)
            return f"test accuracy {100 * read_json(run_dir / 'test_results.json')['acc']:.2f}%"

        return Job(
            "run", spec.id, [self.python, "-m", "litvision", *args], run_dir / LOG, success,
            lambda seconds, cpu, reason: record(
                INTERRUPTED if reason == INTERRUPTED else "failed", seconds, cpu, reason
            ),
            remake=functools.partial(self.run_job, spec),
        )  # fmt: skip

    def plain_job(self, spec: RunSpec) -> Job | None:
        run_dir = self.run_dir(spec)
        out = run_dir / PLAIN_DIR
        if not self.scale.has_plain_reference(spec) or not is_finished(run_dir):
            return None
        if (out / "results.json").is_file():
            return None

        def success(seconds: float, cpu: float | None) -> str:
            results = read_json(out / "results.json")
            if results is None:
                raise LitvisionError("it exited without writing results.json")
            return f"test accuracy {100 * results['acc']:.2f}%"

        command = [self.python, "-m", "litvision", "reproduce", "plain", str(run_dir), "--output", str(out)]
        return Job(
            PLAIN, spec.id, command, out / LOG, success, remake=functools.partial(self.plain_job, spec)
        )

    def analysis_jobs(self, plan: ReportPlan, analysis: Analysis, statuses: dict[str, Any]) -> list[Job]:
        """The jobs of an analysis not done yet: a single-run tool that scores (SVM head, re-balancing)
        runs on every seed of its run, into each seed's ``analysis/`` (the report averages its numbers
        over the seeds); a figure is made of the first seed, into a folder of the report for several runs."""
        scores = analysis.single and BY_NAME[analysis.tool].scores
        seeds = self.scale.seed_count(plan.runs[analysis.runs[0]], self.seeds) if scores else 1
        jobs = (self.analysis_job(plan, analysis, statuses, k) for k in range(seeds))
        return [job for job in jobs if job is not None]

    def analysis_job(
        self, plan: ReportPlan, analysis: Analysis, statuses: dict[str, Any], seed: int = 0
    ) -> Job | None:
        names = self.scale.analysed(analysis, plan.runs)
        run_dirs = [self.run_dir(plan.runs[name].with_seed(seed)) for name in names]
        if not all(is_finished(d) for d in run_dirs) or (analysis.runs and not names):
            return None
        if self.scale.analysis_gpu_reason(plan.id, analysis):
            return None
        single = analysis.single
        out = run_dirs[0] / "analysis" if single else self.root / plan.id / "analysis" / analysis.key
        key = f"{analysis.key}-seed{seed}" if seed else analysis.key
        tool = BY_NAME[analysis.tool]
        done = out / str(tool.done)
        newest_run = max(((d / MARKER).stat().st_mtime for d in run_dirs), default=0.0)
        if (
            done.is_file()
            and done.stat().st_mtime >= newest_run
            and statuses.get(key, {}).get("status") == "done"
        ):
            return None
        command = [self.python, "-m", "litvision", "analyze", analysis.tool]
        if analysis.tool == "loss-landscape":
            command += ["--config", str(self.loss_landscape_config(plan, analysis))]
        else:
            command += [str(d) for d in run_dirs]
        if analysis.tool == "curves" and len(run_dirs) > 1:
            command += ["--names", *names]
        if not single:
            command += ["--output", str(out)]
        command += [*analysis.args, *self.scale.analyses.get(analysis.tool, [])]

        def record(status: str, reason: str | None = None) -> None:
            figures = sorted(str(p) for pattern in tool.figures for p in out.glob(pattern))
            entry = {"status": status, "tool": analysis.tool, "runs": names, "output": str(out),
                     "command": shlex.join(["litvision", *command[3:]]), "figures": figures,
                     "at": now()}  # fmt: skip
            with self._lock:
                statuses[key] = {**entry, **({"reason": reason} if reason else {})}
                write_json(self.root / plan.id / ANALYSES_FILE, statuses)

        log = self.root / plan.id / "analysis" / f"{key}.log"
        return Job(
            "analysis", f"{plan.id}/{key}", command, log, lambda seconds, cpu: record("done"),
            lambda seconds, cpu, reason: record("failed", reason),
        )  # fmt: skip

    def loss_landscape_config(self, plan: ReportPlan, analysis: Analysis) -> Path:
        """The loss landscape's config with this source's data (written beside its output)."""
        assert analysis.config is not None
        config = read_yaml(Path(analysis.config), "config")
        if isinstance(config.get("data"), dict) and "class_path" in config["data"]:
            config["data"] = self.source.swap_data_section(config)
        path = self.root / plan.id / "analysis" / f"{analysis.key}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {analysis.config} with the data of this reproduction\n" + yaml.safe_dump(config))
        return path

    # --- execution --------------------------------------------------------------------------------
    def execute(self, jobs: list[Job]) -> None:
        """Run jobs, as many at once as there are slots (GPUs, or --jobs on a CPU); with a launcher, submit
        the runs and references as array tasks (the analyses run here, once their runs are done)."""
        if self.launcher is not None:
            self.launcher.submit(self, [job for job in jobs if job.remake is not None])
            jobs = [job for job in jobs if job.remake is None]
        slots: queue.Queue[list[str] | None] = queue.Queue()
        for slot in self.slots:
            slots.put(slot)
        stop = threading.Event()
        counter = iter(range(1, len(jobs) + 1))

        def work(job: Job) -> None:
            if not stop.is_set():
                slot = slots.get()
                try:
                    self.run_one(job, slot, f"[{next(counter)}/{len(jobs)}]", stop)
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

    def run_one(self, job: Job, slot: list[str] | None, position: str, stop: threading.Event) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if slot is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(slot)
            where = f"GPU {','.join(slot)}"
        else:  # runs side by side on a CPU share its cores instead of each starting a thread per core
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // len(self.slots))))
            where = "CPU" if len(self.slots) == 1 else f"CPU ({env['OMP_NUM_THREADS']} threads)"
        self.console.print(f"{position} {job.kind} [bold]{job.id}[/] started on {where} (log: {job.log})")
        progress = self.progress if job.kind in ("run", PLAIN) else None
        key = progress_key(job.kind, job.id)
        if progress:
            with self._lock:
                progress.start(key)
        job.log.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with job.log.open("w") as log:
            log.write("$ " + shlex.join(job.command) + "\n")
            log.flush()
            process = subprocess.Popen(job.command, stdout=log, stderr=subprocess.STDOUT, env=env)
            rc, cpu = wait(process, stop)
        seconds = time.perf_counter() - start
        reason = None
        try:
            summary = job.on_success(seconds, cpu) if rc == 0 else None
        except LitvisionError as err:
            reason = str(err)
        if rc == 0 and reason is None:
            said = f": {summary}" if summary else ""
            self.console.print(f"{position} {job.kind} [bold]{job.id}[/] finished in {seconds:.0f} s{said}")
        else:
            reason = reason or (INTERRUPTED if stop.is_set() else last_error(job.log))
            job.on_failure(seconds, cpu, reason)
            with self._lock:
                self.failures.append(f"{job.kind} {job.id}: {reason}")
            said = f"{reason} (log: {job.log})" if reason != INTERRUPTED else "it resumes at the next start"
            ended = "[bold yellow]interrupted[/]" if reason == INTERRUPTED else "[bold red]failed[/]"
            self.console.print(
                f"{position} {job.kind} [bold]{job.id}[/] {ended} after {seconds:.0f} s: {said}"
            )
        if progress:
            with self._lock:
                progress.end(key, seconds, None if reason == INTERRUPTED else reason is None)
                self.console.print(f"[dim]progress: {progress.line()}[/]")

    def __getstate__(self) -> dict[str, Any]:
        # Pickled into each array task (submitit): the console and the lock are made afresh there.
        state = {k: v for k, v in self.__dict__.items() if k not in ("console", "_lock")}
        return {**state, "launcher": None, "progress": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, console=Console(soft_wrap=True), _lock=threading.Lock())

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
                    f"another reproduction is running in '{self.root}' ({holder}); wait for it to end, or "
                    "give another --runs-dir"
                ) from None
            handle.truncate(0)
            handle.write(f"pid {os.getpid()}, started {now()}\n")
            handle.flush()
            try:
                yield
            finally:
                (self.root / ".lock").unlink(missing_ok=True)  # while still holding it

    def predicted_seconds(self, spec: RunSpec, plain: bool = False) -> float:
        """A rough estimate of the run's wall time on this machine (see reproduce/estimate.py), for the
        epochs it has left when it resumes from a checkpoint; ``plain``: of its plain-loop reference
        (the same training), for the epochs its saved state has left."""
        config = self.resolved_config(spec)
        dataset = self.source.run_args(config)[1]
        if dataset is None:
            return START_S
        shape = DATASETS[lookup(config, "data.class_path")[1]][1]
        args, done = self.fit_args(spec)[2:], epochs_trained(self.run_dir(spec), plain)
        return run_seconds(config, args, dataset, shape, self.source._sizes(dataset), done) or START_S

    def plain_left(self, specs: list[RunSpec]) -> list[RunSpec]:
        """The runs of ``specs`` whose plain-loop reference has not written its results yet."""
        left = [s for s in specs if not (self.run_dir(s) / PLAIN_DIR / "results.json").is_file()]
        return [s for s in left if self.scale.has_plain_reference(s)]

    def estimate(self) -> float:
        """Estimated seconds to train the runs not finished yet and their plain-loop references, with this
        reproduction's slots."""
        specs = [s for s in self.specs() if not self.scale.gpu_reason(s)]
        runs = sum(self.predicted_seconds(s) for s in specs if not is_finished(self.run_dir(s)))
        plain = sum(self.predicted_seconds(s, plain=True) for s in self.plain_left(specs))
        return (runs + plain) / len(self.slots)

    def run(self, analyses: bool = True) -> None:
        """Train every unfinished run, then the plain-loop references, then the analyses."""
        with self.lock():
            specs = [spec for spec in self.specs() if not self.scale.gpu_reason(spec)]
            pending = [(spec, job) for spec in specs if (job := self.run_job(spec)) is not None]
            to_gpu = len(self.specs()) - len(specs)
            self.console.print(
                f"[bold]{len(specs)} runs[/] at scale {self.scale.name} on {self.source.name} data: "
                f"{len(specs) - len(pending)} finished already, {len(pending)} to run, "
                f"{len(self.slots)} at a time" + (f"; {to_gpu} left to a GPU" if to_gpu else "")
            )
            predicted = {job.id: self.predicted_seconds(spec) for spec, job in pending}
            plain = {
                progress_key(PLAIN, s.id): self.predicted_seconds(s, True) for s in self.plain_left(specs)
            }
            self.progress = Progress({**predicted, **plain}, len(self.slots))
            self.execute([job for _, job in pending])
            plain_jobs = [job for spec in specs if (job := self.plain_job(spec)) is not None]
            for key in set(plain) - {progress_key(job.kind, job.id) for job in plain_jobs}:
                del self.progress.predicted[key]  # its run failed: no reference to train
            self.execute(plain_jobs)
            self.progress = None
            jobs = []
            for plan in self.plans if analyses else []:
                statuses = read_json(self.root / plan.id / ANALYSES_FILE) or {}
                jobs += [job for a in plan.analyses for job in self.analysis_jobs(plan, a, statuses)]
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
