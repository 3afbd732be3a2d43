"""Runs a reproduction: every run of the chosen reports as an ordinary ``litvision fit``, then their
plain-loop references, then the analyses (``litvision analyze``), each a job executed in this
machine's pool of slots or as SLURM array tasks (litvision.launch).

Each run has its own directory, ``RUNS/<scale>/<report>/<run>/``: a Lightning run directory (its
``config.yaml``, checkpoints, ``test_results.json``, TensorBoard events) plus ``reproduce.log`` and
``reproduce.json``. Finished runs are skipped, so an interrupted reproduction resumes; an unfinished run
with ``checkpoints/last.ckpt`` resumes from it, in place.
"""

from __future__ import annotations

import fcntl
import fnmatch
import os
import shlex
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from litvision.analysis.cli import BY_NAME
from litvision.cli import DEFAULT_SEED
from litvision.data.sources import DATASETS, DataSource
from litvision.errors import LitvisionError
from litvision.launch.pool import MARKER, Job, Progress, finished, run_pool
from litvision.launch.slurm import SUBMITIT_DIR, Launcher
from litvision.parsing import options
from litvision.plain import STATE
from litvision.reproduce.estimate import START_S, run_seconds
from litvision.reproduce.plan import Analysis, Plan, Run, Scale
from litvision.utils import load_checkpoint, lookup, now, read_json, read_yaml, visible_gpus

PLAIN_DIR = "plain_loop"


def is_finished(run_dir: Path) -> bool:
    return finished(run_dir / MARKER, run_dir / "test_results.json")


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


def slots(
    gpus: list[str], gpus_per_run: int, jobs: int | None, jobs_per_gpu: int = 1
) -> list[list[str] | None]:
    """What each job running at once gets: a group of ``gpus_per_run`` GPUs (each group ``jobs_per_gpu``
    times, alternating, so that ``jobs`` spread over the GPUs), or (None) a CPU share."""
    groups = [gpus[i : i + gpus_per_run] for i in range(0, len(gpus) - gpus_per_run + 1, gpus_per_run)]
    if gpus and not groups:
        raise LitvisionError(f"--gpus_per_run {gpus_per_run}: only {len(gpus)} GPU(s) are visible")
    groups *= jobs_per_gpu
    return list(groups[: jobs or len(groups)]) if gpus else [None] * (jobs or 1)


class Reproduction:
    """The runs, references and analyses of some report plans at one scale, on one data source."""

    def __init__(
        self, plans: list[Plan], scale: Scale, source: DataSource, root: Path, jobs: int | None = None,
        gpus_per_run: int = 1, console: Console | None = None, extra_args: list[str] | None = None,
        seeds: int | None = None, launcher: Launcher | None = None, only: list[str] | None = None,
        jobs_per_gpu: int = 1,
    ) -> None:  # fmt: skip
        for option, value in (("--seeds", seeds), ("--jobs", jobs), ("--gpus_per_run", gpus_per_run),
                              ("--jobs_per_gpu", jobs_per_gpu)):  # fmt: skip
            if value is not None and value < 1:
                raise LitvisionError(f"{option} {value} is invalid: it must be 1 or more")
        if jobs_per_gpu > 1 and gpus_per_run > 1:
            raise LitvisionError(
                f"--jobs_per_gpu {jobs_per_gpu} needs --gpus_per_run 1: a DDP run takes its GPUs whole"
            )
        self.plans, self.scale, self.source, self.seeds, self.only = plans, scale, source, seeds, only
        ids = {f"{run.report}/{run.name}" for plan in plans for run in plan.unique_runs()}
        for pattern in only or []:
            if not fnmatch.filter(ids, pattern):
                raise LitvisionError(f"--only {pattern!r} matches no run of these reports: {sorted(ids)}")
        self.root = root  # runs go to ROOT/<report>/<run>/
        self.extra_args = list(extra_args or [])
        self.console = console or Console()
        self.launcher = launcher
        self.slots = slots([] if launcher else visible_gpus(), gpus_per_run, jobs, jobs_per_gpu)
        self.ddp = gpus_per_run > 1 and (launcher is not None or self.slots[0] is not None)
        self.gpus_per_run = gpus_per_run
        self.failures: list[str] = []

    def run_dir(self, run: Run) -> Path:
        return self.root / run.report / run.name

    def runs(self) -> list[Run]:
        """Every run of the plans (those of ``only``) with all its seeds, those left to a GPU included."""
        return [
            run.with_seed(k)
            for plan in self.plans
            for run in plan.unique_runs()
            if self.only is None or any(fnmatch.fnmatchcase(run.id, p) for p in self.only)
            for k in range(self.scale.seed_count(run, self.seeds))
        ]

    def arguments(self, run: Run) -> tuple[dict[str, Any], str | None]:
        """A run's ``fit`` arguments (dotted keys; later ones win): its overrides, the data source's, the
        scale's, its seeds; and the name of its dataset."""
        config = read_yaml(run.config, "config")
        data, dataset = self.source.arguments(config)
        args = {**run.overrides, **data, **self.scale.arguments(run)}
        if run.seed:  # training seed (initialisation, order, augmentation) and data split seed, moved
            found, seed = lookup({**config, **run.overrides}, "seed_everything")
            seed = seed if found and isinstance(seed, int) and not isinstance(seed, bool) else DEFAULT_SEED
            split = lookup(config, "data.split_seed")[1] or 0
            args.update({"seed_everything": seed + run.seed, "data.split_seed": split + run.seed})
        return args, dataset

    def fit_args(self, run: Run) -> list[str]:
        """``litvision fit`` arguments of a run: config, arguments, run directory."""
        args = options(self.arguments(run)[0])
        ddp = [f"--trainer.devices={self.gpus_per_run}", "--trainer.strategy=ddp"] if self.ddp else []
        logger = {"save_dir": self.root, "name": run.report, "version": run.name}
        return [
            "fit", f"--config={run.config}", *args, *self.extra_args,
            *(f"--trainer.logger.init_args.{key}={value}" for key, value in logger.items()),
            "--trainer.enable_progress_bar=false", *ddp,
        ]  # fmt: skip

    def predicted_seconds(self, run: Run, plain: bool = False) -> float:
        """A rough estimate of the run's wall time here (estimate.py), for the epochs it has left (of its
        plain-loop reference, ``plain``: the same training, for the epochs its saved state has left)."""
        args, dataset = self.arguments(run)
        if dataset is None:
            return START_S
        config = read_yaml(run.config, "config")
        shape = DATASETS[lookup(config, "data.class_path")[1]][1]
        return run_seconds(config, args, dataset, shape, epochs_trained(self.run_dir(run), plain)) or START_S

    def fit_job(self, run: Run) -> Job | None:
        """The job that trains ``run``, or None when it has finished already."""
        run_dir = self.run_dir(run)
        if is_finished(run_dir):
            return None
        record = {"config": run.config, "overrides": run.overrides, "scale": self.scale.name,
                  "data_source": self.source.name}  # fmt: skip
        return Job(
            "run", run.id, tuple(self.fit_args(run)), run_dir / MARKER, run_dir / "test_results.json",
            self.predicted_seconds(run), run_dir / "checkpoints" / "last.ckpt", record,
        )  # fmt: skip

    def plain_job(self, run: Run) -> Job | None:
        """The plain-loop reference of a finished run, if the scale asks for one and it has not run."""
        run_dir = self.run_dir(run)
        out = run_dir / PLAIN_DIR
        if (
            not (self.scale.has_plain_reference(run) and is_finished(run_dir))
            or (out / "results.json").is_file()
        ):
            return None
        args = ("reproduce", "plain", str(run_dir), f"--output={out}")
        return Job(
            "plain loop", run.id, args, out / MARKER, out / "results.json", self.predicted_seconds(run, True)
        )

    def analysis_jobs(self, plan: Plan, analysis: Analysis) -> list[Job]:
        """The jobs of an analysis not done since its runs last changed: a single-run tool that scores
        (SVM head, re-balancing) on every seed of its run (the report averages its numbers over them);
        a figure of the first seed, into a folder of the report for several runs."""
        tool = BY_NAME[analysis.tool]
        seeds = (
            self.scale.seed_count(plan.runs[analysis.runs[0]], self.seeds)
            if analysis.single and tool.scores
            else 1
        )
        names = self.scale.analysed(analysis, plan.runs)
        left_to_gpu = not analysis.runs and self.scale.gpu_reason(f"{plan.id}/{analysis.key}")
        if (analysis.runs and not names) or left_to_gpu:
            return []
        jobs = []
        for seed in range(seeds):
            run_dirs = [self.run_dir(plan.runs[name].with_seed(seed)) for name in names]
            out = (
                run_dirs[0] / "analysis"
                if analysis.single
                else self.root / plan.id / "analysis" / analysis.key
            )
            key = f"{analysis.key}-seed{seed}" if seed else analysis.key
            marker, done = self.root / plan.id / "analysis" / f"{key}.json", out / str(tool.done)
            newest = max(((d / MARKER).stat().st_mtime for d in run_dirs if is_finished(d)), default=0.0)
            current = finished(marker, done) and done.stat().st_mtime >= newest
            if current or not all(map(is_finished, run_dirs)):
                continue
            args = ["analyze", analysis.tool, *map(str, run_dirs)]
            if analysis.config is not None:  # the loss landscape: its config, with this source's data
                args += ["--config", str(self.with_data(analysis.config, marker.with_suffix(".yaml")))]
            args += ["--names", *names] if analysis.tool == "curves" and len(names) > 1 else []
            args += [] if analysis.single else ["--output", str(out)]
            args += [*analysis.args, *self.scale.analyses.get(analysis.tool, [])]
            record = {"tool": analysis.tool, "runs": names, "output": str(out)}
            jobs.append(Job("analysis", f"{plan.id}/{key}", tuple(args), marker, done, record=record))
        return jobs

    def with_data(self, path: str, copy: Path) -> Path:
        """A config of a tool (the loss landscape's) with this source's data, written to ``copy``: a
        whole file, since jsonargparse cannot replace a ``{class_path, init_args}`` mapping of a config
        file from the command line."""
        config = read_yaml(path, "config")
        if lookup(config, "data.class_path")[1] in DATASETS:
            config["data"] = self.source.data_section(config)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(
            f"# {path} with the data of this reproduction\n" + yaml.safe_dump(config, sort_keys=False)
        )
        return copy

    def execute(self, jobs: list[Job], progress: Progress | None = None) -> None:
        """Run jobs in this machine's slots; with a launcher, submit the runs and references as array
        tasks (the analyses run here, once their runs are done)."""
        if self.launcher is not None:
            submitted = [job for job in jobs if job.kind != "analysis"]
            if submitted:
                self.failures += self.launcher.submit(submitted, self.root / SUBMITIT_DIR, self.console)
            jobs = [job for job in jobs if job.kind == "analysis"]
        self.failures += run_pool(jobs, self.slots, self.console, progress) if jobs else []

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
                    "give another --runs_dir"
                ) from None
            handle.truncate(0)
            handle.write(f"pid {os.getpid()}, started {now()}\n")
            handle.flush()
            try:
                yield
            finally:
                (self.root / ".lock").unlink(missing_ok=True)  # while still holding it

    def plain_left(self, runs: list[Run]) -> list[Run]:
        """The runs whose plain-loop reference the scale asks for and has not written its results."""
        wanted = filter(self.scale.has_plain_reference, runs)
        return [r for r in wanted if not (self.run_dir(r) / PLAIN_DIR / "results.json").is_file()]

    def estimate(self) -> float:
        """Estimated seconds to train the unfinished runs and plain-loop references with these slots."""
        runs = [run for run in self.runs() if not self.scale.gpu_reason(run)]
        seconds = sum(self.predicted_seconds(r) for r in runs if not is_finished(self.run_dir(r)))
        seconds += sum(self.predicted_seconds(r, plain=True) for r in self.plain_left(runs))
        return seconds / len(self.slots)

    def queue(self, budget: float) -> list[tuple[Run, float, bool]]:
        """The unfinished runs in the scale's queue order, each with its estimate (its analyses allowed
        ``START_S`` each) and whether it fits: packed on the slots, in order, it ends within ``budget``."""
        patterns = self.scale.queue
        runs = [r for r in self.runs() if not self.scale.gpu_reason(r) and not is_finished(self.run_dir(r))]
        runs.sort(  # by the first pattern its report/run matches, every seed alike
            key=lambda r: next(
                (i for i, p in enumerate(patterns) if fnmatch.fnmatchcase(f"{r.report}/{r.base}", p)),
                len(patterns),
            )
        )
        ends, picked = [0.0] * len(self.slots), []
        for run in runs:
            plan = next(p for p in self.plans if p.id == run.report)
            seconds = self.predicted_seconds(run) + START_S * sum(run.base in a.runs for a in plan.analyses)
            slot = ends.index(min(ends))
            fits = ends[slot] + seconds <= budget
            ends[slot] += seconds if fits else 0.0
            picked.append((run, seconds, fits))
        return picked

    def archive(self, path: Path) -> int:
        """Pack what a report needs of every finished run and analysis into ``path`` (a .tar.gz, its paths
        from the runs directory's root: ``<scale>/<report>/...``), no checkpoint; return the runs packed."""
        runs = [d for d in sorted(self.root.glob("*/*")) if d.name != "analysis" and is_finished(d)]
        files = list(runs)
        for marker in sorted(self.root.glob("*/analysis/*.json")):  # with its log, config and folder
            if (read_json(marker) or {}).get("status") == "finished":
                files += [p for s in (".json", ".log", ".yaml", "") if (p := marker.with_suffix(s)).exists()]

        def skip(info: tarfile.TarInfo) -> tarfile.TarInfo | None:  # the checkpoints, the plain loop's state
            return None if info.name.endswith((".ckpt", f"/{STATE}", "/checkpoints")) else info

        path.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path.with_suffix(".part"), "w:gz") as tar:
            for file in files:
                tar.add(file, str(file.relative_to(self.root.parent)), filter=skip)
        path.with_suffix(".part").replace(path)
        return len(runs)

    def run(self, analyses: bool = True, runs: list[Run] | None = None) -> None:
        """Train every unfinished run, then the plain-loop references, then the analyses; given ``runs``,
        only those, and only their analyses (none: the analyses of no run, the loss landscape's)."""
        fresh = None if runs is None else {str(self.run_dir(run)) for run in runs}
        with self.lock():
            here = [run for run in self.runs() if not self.scale.gpu_reason(run)]
            runs, to_gpu = here if runs is None else runs, len(self.runs()) - len(here)
            pending = [job for run in runs if (job := self.fit_job(run)) is not None]
            self.console.print(
                f"[bold]{len(runs)} runs[/] at scale {self.scale.name} on {self.source.name} data: "
                f"{len(runs) - len(pending)} finished already, {len(pending)} to run, "
                f"{len(self.slots)} at a time" + (f"; {to_gpu} left to a GPU" if to_gpu else "")
            )
            plain = {f"{r.id} (plain loop)": self.predicted_seconds(r, True) for r in self.plain_left(runs)}
            progress = Progress({**{job.key: job.seconds for job in pending}, **plain}, len(self.slots))
            self.execute(pending, progress)
            plain_jobs = [job for run in runs if (job := self.plain_job(run)) is not None]
            for key in set(plain) - {job.key for job in plain_jobs}:
                del progress.predicted[key]  # its run failed: no reference to train
            self.execute(plain_jobs, progress)
            jobs = [
                (a, j) for p in self.plans if analyses for a in p.analyses for j in self.analysis_jobs(p, a)
            ]
            self.execute(
                [j for a, j in jobs if fresh is None or (bool(fresh & set(j.args)) if a.runs else not fresh)]
            )

    def dry_run(self) -> list[str]:
        """The command that would train each run, finished ones marked."""
        lines = []
        for run in self.runs():
            gpu = self.scale.gpu_reason(run)
            state = (
                "finished" if is_finished(self.run_dir(run)) else f"needs a GPU: {gpu}" if gpu else "to run"
            )
            lines.append(f"# {run.id} ({state})\n{shlex.join(['litvision', *self.fit_args(run)])}")
        return lines
