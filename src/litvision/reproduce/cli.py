"""``litvision reproduce``: rerun the experiments of the five reports and write the report.

    litvision reproduce run all --scale quick --data_source offline   # 2-core CPU, about 15 minutes
    litvision reproduce run 002 --dry_run       # each run's command, the time estimate; nothing started
    litvision reproduce report --scale quick    # rewrite the report from the runs on disk
    litvision reproduce sweep configs/sweeps/multikernel_cifar_lr.yaml -- --trainer.max_epochs=5
    litvision reproduce plain RUN_DIR           # retrain a finished run with the plain PyTorch loop

It works from any directory: the plans name configs relative to the repository, and the default paths
are the repository's; a path given on the command line is relative to the current directory.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from jsonargparse import ActionYesNo, Namespace
from rich.console import Console

from litvision import plain
from litvision.data.sources import SOURCES, DataSource
from litvision.errors import LitvisionError, one_line_errors
from litvision.launch.pool import format_duration
from litvision.launch.slurm import LAUNCHERS, Launcher, SlurmSettings
from litvision.parsing import Parser
from litvision.reproduce.plan import (
    Plan,
    Scale,
    available_plans,
    is_numbered,
    load_plan,
    load_scale,
    load_sweep,
    select_plans,
    sweep_runs,
)
from litvision.reproduce.report import METRICS, Report, RunDir
from litvision.reproduce.runner import Reproduction

PROG = "litvision reproduce"
ROOT = Path(__file__).resolve().parents[3]  # the checkout this litvision runs from, if it is one
LONG_HOURS = 12  # a reproduction estimated to take longer asks for --yes
PATHS = {  # each path option: its default, in the repository, and what it holds
    "plans": ("configs/experiments", "the report plans"),
    "scales_dir": (None, "the scale files (default: PLANS/scales)"),
    "runs_dir": ("reports/runs", "runs go to RUNS_DIR/<scale>/"),
    "reports_dir": ("reports", "REPORT.md goes here at full scale, into REPORTS_DIR/<scale>/ otherwise"),
    "data_root": ("data", "where the offline copies are extracted"),
    "shared_data": ("../shared/data", "the offline copies (--data_source offline)"),
}


def command(description: str, common: bool = True) -> Parser:
    """A verb's parser; ``common``: with the options every reproduction takes."""
    parser = Parser(config=True, description=description)
    if common:
        parser.add_argument(
            "--scale", default="full", help="full (the reports' recipes) or a scale file: quick, cpu"
        )
        parser.add_argument(
            "--data_source", type=Literal[SOURCES], default="download",
            help="download: the real datasets; offline: the copies in --shared_data; synthetic: random "
            "images of each dataset's shape (tests only)",
        )  # fmt: skip
        for name, (default, help) in PATHS.items():
            help += f" (default: the repository's {default})" if default else ""
            parser.add_argument(f"--{name}", type=Path | None, help=help)
    return parser


def add_parallel(parser: Parser, cluster: bool = True) -> None:
    parser.add_argument(
        "--jobs", type=int | None, help="runs at once (default: one per visible GPU; 1 on a CPU)"
    )
    parser.add_argument(
        "--gpus_per_run", type=int, default=1, help="GPUs per run; more than 1 trains with DDP"
    )
    parser.add_argument(
        "--jobs_per_gpu", type=int, default=1, help="runs at once on each GPU, each its own process"
    )
    if cluster:
        parser.add_argument(
            "--launcher", type=Literal[LAUNCHERS], default="local",
            help="local: this machine; slurm: one SLURM array task per run through submitit, requeued "
            "on timeout and preemption; submitit-local: the same on this machine, every task at once (to "
            "try a set-up)",
        )  # fmt: skip
        parser.add_class_arguments(SlurmSettings, "slurm")
        parser.add_argument(
            "--wait", action=ActionYesNo, default=False, help="slurm: wait for the tasks, then go on"
        )
    parser.add_argument(
        "--dry_run", action=ActionYesNo, default=False, help="print the commands, start nothing"
    )


def build_parser() -> Parser:
    parser = Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    verbs = parser.add_subcommands(dest="verb", metavar="VERB")
    run = command("Train what is not finished, the plain-loop references, the analyses; write the report.")
    run.add_argument(
        "reports", nargs="*", default=["all"], help="report ids (000 ... 004, cifar10_lt) or all"
    )
    run.add_argument("--seeds", type=int | None, help="seeds per run (default: the scale's, else 1)")
    add_parallel(run)
    run.add_argument(
        "--only", nargs="+", help="train only these runs (every seed), e.g. 002/elman '002/lstm*'"
    )
    run.add_argument(
        "--analyses", action=ActionYesNo, default=True, help="make the figures (--no_analyses: not)"
    )
    run.add_argument(
        "--yes", action=ActionYesNo, default=False, help=f"start even if over {LONG_HOURS} hours"
    )
    verbs.add_subcommand("run", run, help="train what is not finished, analyse, write the report")
    queue = command("Train the scale's next unfinished runs that fit in a budget, and their analyses; pack "
                    "what a report needs of every finished run into OUTPUT/runs.tar.gz.")  # fmt: skip
    queue.add_argument("reports", nargs="+", help="report ids (000 ... 004, cifar10_lt) or all")
    queue.add_argument(
        "--budget", type=float, required=True, help="seconds this command may run, from its start"
    )
    queue.add_argument("--output", type=Path, required=True, help="where runs.tar.gz goes")
    queue.add_argument("--seeds", type=int | None, help="seeds per run (default: the scale's, else 1)")
    add_parallel(queue, cluster=False)
    verbs.add_subcommand("queue", queue, help="train what fits in a budget; pack the finished runs")
    report = command("Write the report from the runs on disk.")
    report.add_argument("--seeds", type=int | None, help="seeds per run (default: the scale's, else 1)")
    verbs.add_subcommand("report", report, help="write the report from the runs on disk")
    sweep = command("Run a sweep file's points; arguments after -- go to every point's litvision fit.")
    sweep.add_argument("file", type=Path, help="a sweep file (configs/sweeps/*.yaml)")
    sweep.add_argument(
        "--save_dir", type=Path, default=Path("lightning_logs"), help="runs go to SAVE_DIR/<name>/"
    )
    add_parallel(sweep)
    verbs.add_subcommand("sweep", sweep, help="run a sweep file's points as ordinary runs")
    reference = command(plain.__doc__.split("\n\n")[0], common=False)
    reference.add_argument("run_dir", type=Path, help="a litvision run directory (holding config.yaml)")
    reference.add_argument(
        "--output", type=Path | None, help="where results.json goes (default: RUN_DIR/plain_loop)"
    )
    reference.add_argument("--device", type=str | None, help="cpu or cuda (default: cuda when available)")
    verbs.add_subcommand("plain", reference, help="retrain a finished run with the plain PyTorch loop")
    return parser


@contextmanager
def in_repository(args: Namespace) -> Iterator[None]:
    """Work in the repository (this directory if it holds configs/, else the checkout litvision runs
    from), the paths given made absolute first, the others the repository's."""
    root = Path.cwd() if (Path.cwd() / "configs").is_dir() or not (ROOT / "configs").is_dir() else ROOT
    for name, (default, _) in PATHS.items():
        given = args.get(name)
        args[name] = Path(given).resolve() if given is not None else root / default if default else None
    args.scales_dir = args.scales_dir or args.plans / "scales"
    for name in ("file", "save_dir", "output"):  # a sweep's, a queue's
        args[name] = Path(args[name]).resolve() if args.get(name) is not None else None
    previous = Path.cwd()
    os.chdir(root)
    try:
        yield
    finally:
        os.chdir(previous)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []  # a sweep's arguments for every point
    parser = build_parser()
    config = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    args = parser.instantiate(config)[config.verb]
    console = Console(soft_wrap=True)  # long paths stay on one line, as in a log file
    # SIGTERM (kill, a scheduler; the only stop of a run started with `nohup ... &`, which ignores Ctrl-C's
    # SIGINT) stops as Ctrl-C does: the runs are stopped, marked interrupted, the report written.
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        with one_line_errors(PROG):
            if config.verb == "plain":
                return plain.run(args.run_dir, args.output, args.device)
            with in_repository(args):
                failures = VERBS[config.verb](args, console, f"{PROG} {shlex.join(argv)}", extra)
        if failures:
            print(f"{PROG}: {len(failures)} failed:\n" + "\n".join(failures), file=sys.stderr)
            raise SystemExit(1)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; run the same command again to resume", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def reproduction(
    args: Namespace, console: Console, plans: list[Plan], root: Path | None, **kwargs
) -> Reproduction:
    """The runs of ``plans`` at the command line's scale, into ``root/<report>/<run>`` (default: the runs
    directory of the scale)."""
    scale = load_scale(args.scale, args.scales_dir)
    source = DataSource(args.data_source, scale, args.data_root, args.shared_data, make=not args.dry_run)
    local = args.get("launcher", "local") == "local"
    launcher = None if local else Launcher(args.launcher, args.slurm, args.wait, args.gpus_per_run)
    return Reproduction(
        plans, scale, source, root or args.runs_dir / scale.name, args.jobs, args.gpus_per_run, console,
        launcher=launcher, jobs_per_gpu=args.jobs_per_gpu, **kwargs,
    )  # fmt: skip


def load_plans(names: list[str], args: Namespace) -> list[Plan]:
    shown = lambda p: Path(os.path.relpath(p)) if p.is_relative_to(Path.cwd()) else p  # noqa: E731
    return [load_plan(shown(p), set(METRICS)) for p in select_plans(names, args.plans)]


def make_report(
    args: Namespace, scale: Scale, source: DataSource, command: str, named: list[str] = ()
) -> Report:
    """The report of the scale's plans (default: the numbered reports), those named, those with runs."""
    runs_dir = args.runs_dir / scale.name
    covered = (lambda p: p in scale.reports) if scale.reports is not None else is_numbered
    ids = [p for p in available_plans(args.plans) if covered(p) or p in named or (runs_dir / p).is_dir()]
    out_dir = args.reports_dir if scale.name == "full" else args.reports_dir / scale.name
    return Report(load_plans(ids or ["all"], args), scale, source, runs_dir, out_dir, command, args.seeds)


def write_report(args: Namespace, console: Console, command: str, named: list[str] = ()) -> list[str]:
    scale = load_scale(args.scale, args.scales_dir)
    source = DataSource(args.data_source, scale, args.data_root, args.shared_data, make=False)
    path = make_report(args, scale, source, command, named).write()
    console.print(f"report written to [bold]{path}[/] (and {path.with_name('results.csv')})")
    return []


def run(args: Namespace, console: Console, command: str, extra: list[str]) -> list[str]:
    runner = reproduction(
        args, console, load_plans(args.reports, args), None, seeds=args.seeds, only=args.only
    )
    seconds = runner.estimate() if runner.launcher is None else 0.0  # a cluster's: unknown
    if seconds:
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
        busy = f"; the machine is busy, load {load:.1f} on {cores} cores, so it may be far too long"
        console.print(
            f"estimated time on this machine: about {format_duration(seconds)} (a rough figure"
            f"{busy if load > 0.75 * cores else ''})"
        )
    if args.dry_run:
        print("\n".join(runner.dry_run()))
        out = make_report(args, runner.scale, runner.source, command, args.reports).out_dir / "REPORT.md"
        console.print(f"the report would be written to [bold]{out}[/]")
        if runner.source.name == "download":
            console.print(
                "[bold yellow]warning[/]: --data_source download downloads the datasets and ImageNet "
                f"weights: without internet the runs fail (--data_source offline reads {args.shared_data})"
            )
        return []
    if seconds > LONG_HOURS * 3600 and not args.yes:
        raise LitvisionError(
            f"this reproduction would take about {format_duration(seconds)} here, over {LONG_HOURS} hours; "
            "add --yes to start it anyway, or choose a smaller --scale"
        )
    try:
        runner.run(analyses=args.analyses)
    finally:
        write_report(args, console, command, args.reports)
    return runner.failures


def sweep(args: Namespace, console: Console, command: str, extra: list[str]) -> list[str]:
    loaded = load_sweep(args.file)
    plan = Plan(loaded.name, runs=sweep_runs(loaded, loaded.name), id=loaded.name, path=args.file)
    runner = reproduction(args, console, [plan], args.save_dir, extra_args=extra)
    if args.dry_run:
        print("\n".join(runner.dry_run()))
        return []
    runner.run(analyses=False)
    for label, point in plan.runs.items():  # the points side by side
        result = RunDir(point, runner.run_dir(point))
        acc, wall = METRICS["test_acc"].value(result), result.wall_time_s if result.finished else None
        shown = f"{acc:.2f}% test accuracy in {wall:.0f} s" if acc is not None and wall else result.status
        console.print(f"{loaded.name} [bold]{label}[/]: {shown} ({result.path})")
    return runner.failures


class BudgetEnded(KeyboardInterrupt):
    """The queue's budget has ended: its running jobs are stopped as Ctrl-C stops them."""


def budget_ended(signum: int, frame: object) -> None:
    raise BudgetEnded


def process_age() -> float:
    """Seconds since this process started (Linux; 0 elsewhere): the budget counts Python's start too."""
    try:  # its start time, in clock ticks after boot: the 22nd field, the 20th after the command's name
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return float(Path("/proc/uptime").read_text().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def queue(args: Namespace, console: Console, command: str, extra: list[str]) -> list[str]:
    start = time.monotonic() - process_age()
    if args.budget <= 0:
        raise LitvisionError(f"--budget {args.budget:g} is invalid: it must be more than 0 seconds")
    runner = reproduction(args, console, load_plans(args.reports, args), None, seeds=args.seeds)
    queued = runner.queue(args.budget - (time.monotonic() - start))
    runs = [run for run, _, fits in queued if fits]
    seconds = sum(s for _, s, fits in queued if fits) / len(runner.slots)
    console.print(
        f"{len(runs)} of {len(queued)} unfinished runs fit in {args.budget:g} s, about "
        f"{format_duration(seconds)} on {len(runner.slots)} slot(s) (a rough figure)"
    )
    if args.dry_run:
        for run, s, fits in queued:
            print(f"# {run.id} (about {format_duration(s)}{'' if fits else ': not in this budget'})")
        return []
    previous = signal.signal(signal.SIGALRM, budget_ended)
    signal.setitimer(signal.ITIMER_REAL, max(args.budget - (time.monotonic() - start), 0.01))
    path = args.output / "runs.tar.gz"
    try:  # a run's analyses read its checkpoints, which do not leave this machine: they run right after it
        for i in range(0, len(runs), len(runner.slots)):
            runner.run(runs=runs[i : i + len(runner.slots)])
            runner.archive(path)  # what a SIGKILL of this command leaves
        runner.run(runs=[])
    except BudgetEnded:
        console.print("[bold yellow]the budget has ended[/]: the runs it stopped are left out of the archive")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        console.print(f"{runner.archive(path)} finished run(s) packed into [bold]{path}[/], no checkpoints")
    return runner.failures


VERBS: dict[str, Callable[..., list[str]]] = {
    "run": run, "report": write_report, "sweep": sweep, "queue": queue
}  # fmt: skip
