"""``litvision reproduce``: rerun the experiments of the five reports and write the report.

    litvision reproduce run all                 # every report, full recipes (a GPU box)
    litvision reproduce run 003 004 --jobs 2    # some reports; --jobs: runs at once on a CPU
    litvision reproduce run all --scale quick --data_source offline   # 2-core CPU, about 15 minutes
    litvision reproduce run all --dry_run       # each run's command, the time estimate; nothing started
    litvision reproduce run 002 --scale cpu --data_source offline --only 002/elman   # one row
    litvision reproduce report --scale quick    # rewrite the report from the runs on disk
    litvision reproduce sweep configs/sweeps/multikernel_cifar_lr.yaml -- --trainer.max_epochs=5
    litvision reproduce plain RUN_DIR           # retrain a finished run with the plain PyTorch loop

It works from any directory: the plans name configs relative to the repository, and the default paths
are the repository's (docs/reproduce.md).
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from jsonargparse import ActionYesNo, Namespace
from rich.console import Console
from rich.table import Table

from litvision.errors import LitvisionError, one_line_errors
from litvision.parsing import Parser
from litvision.reproduce import plain
from litvision.reproduce.data_sources import DATASETS, SOURCES, DataSource
from litvision.reproduce.estimate import format_duration
from litvision.reproduce.launch import LAUNCHERS, Launcher, SlurmSettings
from litvision.reproduce.plan import (
    Plan,
    available_plans,
    is_numbered,
    load_plan,
    load_scale,
    load_sweep,
    lookup,
    read_yaml,
    select_plans,
    sweep_runs,
)
from litvision.reproduce.report import METRICS, Report, RunDir
from litvision.reproduce.runner import Reproduction

PROG = "litvision reproduce"
ROOT = Path(__file__).resolve().parents[3]  # the checkout this litvision runs from, if it is one
LONG_HOURS = 12  # a reproduction estimated to take longer asks for --yes
# Each path option, its default (relative to the repository) and what it holds.
PATHS = {
    "plans": ("configs/experiments", "the report plans"),
    "scales_dir": (None, "the scale files (default: PLANS/scales)"),
    "runs_dir": ("reports/runs", "runs go to RUNS_DIR/<scale>/"),
    "reports_dir": ("reports", "REPORT.md goes here at full scale, into REPORTS_DIR/<scale>/ otherwise"),
    "data_root": ("data", "where the offline copies are extracted"),
    "shared_data": ("../shared/data", "the offline copies (--data_source offline)"),
}


def add_common(parser: Parser, seeds: bool = True) -> None:
    parser.add_argument(
        "--scale", default="full", help="full (the reports' recipes) or a scale file: quick, cpu, smoke"
    )
    parser.add_argument(
        "--data_source", type=Literal[SOURCES], default="download",
        help="download: the real datasets; offline: the copies in --shared_data; synthetic: random images of "
        "each dataset's shape (tests only)",
    )  # fmt: skip
    for name, (default, help) in PATHS.items():
        parser.add_argument(
            f"--{name}", type=Path | None, help=f"{help} (default: the repository's {default})"
        )
    if seeds:
        parser.add_argument("--seeds", type=int | None, help="seeds per run (default: the scale's, else 1)")


def add_parallel(parser: Parser) -> None:
    parser.add_argument(
        "--jobs", type=int | None, help="runs at once (default: one per visible GPU; 1 on a CPU)"
    )
    parser.add_argument(
        "--gpus_per_run", type=int, default=1, help="GPUs per run; more than 1 trains with DDP"
    )
    parser.add_argument(
        "--launcher", type=Literal[LAUNCHERS], default="local",
        help="local: this machine; slurm: one SLURM array task per run through submitit, requeued on timeout "
        "and preemption; submitit-local: the same on this machine, every task at once (to try a set-up)",
    )  # fmt: skip
    parser.add_class_arguments(SlurmSettings, "slurm")
    parser.add_argument(
        "--wait", action=ActionYesNo, default=False, help="slurm: wait for the tasks, then go on"
    )
    parser.add_argument(
        "--dry_run", action=ActionYesNo, default=False, help="print each run's command, start nothing"
    )


def build_parser() -> Parser:
    parser = Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    commands = parser.add_subcommands(dest="verb", metavar="VERB")
    run = Parser(
        config=True,
        description="Train what is not finished, then the plain-loop references and the analyses; write the report.",
    )
    run.add_argument(
        "reports", nargs="*", default=["all"], help="report ids (000 ... 004, cifar10_lt) or all"
    )
    add_common(run)
    add_parallel(run)
    run.add_argument(
        "--only", nargs="+", help="train only these runs (every seed), e.g. 002/elman '002/lstm*'"
    )
    run.add_argument(
        "--analyses", action=ActionYesNo, default=True, help="make the figures (--no_analyses: not)"
    )
    run.add_argument(
        "--yes",
        action=ActionYesNo,
        default=False,
        help=f"start even when the estimate is over {LONG_HOURS} hours",
    )
    commands.add_subcommand("run", run, help="train what is not finished, analyse, write the report")
    report = Parser(config=True, description="Write the report from the runs on disk.")
    add_common(report)
    commands.add_subcommand("report", report, help="write the report from the runs on disk")
    sweep = Parser(
        config=True,
        description="Run a sweep file's points; arguments after -- go to every point's litvision fit.",
    )
    sweep.add_argument("file", type=Path, help="a sweep file (configs/sweeps/*.yaml)")
    sweep.add_argument(
        "--save_dir", type=Path, default=Path("lightning_logs"), help="runs go to SAVE_DIR/<name>/"
    )
    add_common(sweep, seeds=False)
    add_parallel(sweep)
    commands.add_subcommand("sweep", sweep, help="run a sweep file's points as ordinary runs")
    reference = Parser(config=True, description=plain.__doc__.split("\n\n")[0])
    reference.add_argument("run_dir", type=Path, help="a litvision run directory (holding config.yaml)")
    reference.add_argument(
        "--output", type=Path | None, help="where to write results.json (default: RUN_DIR/plain_loop)"
    )
    reference.add_argument("--device", type=str | None, help="cpu or cuda (default: cuda when available)")
    commands.add_subcommand("plain", reference, help="retrain a finished run with the plain PyTorch loop")
    return parser


def repository() -> Path:
    """Where the plans' config paths start: this directory if it holds configs/, else the checkout."""
    return Path.cwd() if (Path.cwd() / "configs").is_dir() or not (ROOT / "configs").is_dir() else ROOT


def paths(args: Namespace, root: Path) -> None:
    """The path options made absolute: given ones from here, the others in the repository."""
    for name, (default, _) in PATHS.items():
        given = args[name]
        args[name] = Path(given).resolve() if given is not None else root / default if default else None
    args.scales_dir = args.scales_dir or args.plans / "scales"


@contextmanager
def working_directory(path: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(path)
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
                plain.run(args.run_dir, args.output, args.device)
                return
            root = repository()
            paths(args, root)
            if config.verb == "sweep":
                args.file = Path(args.file).resolve()
                args.save_dir = Path(args.save_dir).resolve()
            with working_directory(root):
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


def source(args: Namespace, scale, make: bool = True) -> DataSource:
    return DataSource(args.data_source, scale, args.data_root, args.shared_data, make=make)


def launcher(args: Namespace) -> Launcher | None:
    return (
        None
        if args.launcher == "local"
        else Launcher(args.launcher, args.slurm, args.wait, args.gpus_per_run)
    )


def plans(names: list[str], args: Namespace) -> list[Plan]:
    paths = select_plans(names, args.plans)  # shown from the repository where they are in it
    return [
        load_plan(Path(os.path.relpath(p)) if p.is_relative_to(Path.cwd()) else p, set(METRICS))
        for p in paths
    ]


def write_report(args: Namespace, console: Console, command: str, reports: list[str] = ()) -> Path:
    scale = load_scale(args.scale, args.scales_dir)
    report = report_of(args, scale, reports, source(args, scale, make=False), command)
    path = report.write()
    console.print(f"report written to [bold]{path}[/] (and {path.with_name('results.csv')})")
    return path


def report_of(args: Namespace, scale, reports: list[str], data: DataSource, command: str) -> Report:
    """The report of the scale's plans (default: the numbered reports), those named, those with runs."""
    runs_dir = args.runs_dir / scale.name
    covered = (lambda p: p in scale.reports) if scale.reports is not None else is_numbered
    ids = [p for p in available_plans(args.plans) if covered(p) or p in reports or (runs_dir / p).is_dir()]
    out_dir = args.reports_dir if scale.name == "full" else args.reports_dir / scale.name
    return Report(plans(ids or ["all"], args), scale, data, runs_dir, out_dir, command, args.seeds)


def run(args: Namespace, console: Console, command: str, extra: list[str]) -> list[str]:
    scale = load_scale(args.scale, args.scales_dir)
    data = source(args, scale, make=not args.dry_run)
    reproduction = Reproduction(
        plans(args.reports, args), scale, data, args.runs_dir / scale.name, args.jobs, args.gpus_per_run,
        console, seeds=args.seeds, launcher=launcher(args), only=args.only,
    )  # fmt: skip
    seconds = reproduction.estimate() if reproduction.launcher is None else 0.0  # a cluster's: unknown
    if seconds:
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
        busy = f"; the machine is busy, load {load:.1f} on {cores} cores, so it may be far too long"
        console.print(
            f"estimated time on this machine: about {format_duration(seconds)} (a rough figure"
            f"{busy if load > 0.75 * cores else ''})"
        )
    if args.dry_run:
        print("\n".join(reproduction.dry_run()))
        out = report_of(args, scale, args.reports, data, command).out_dir / "REPORT.md"
        console.print(f"the report would be written to [bold]{out}[/]")
        configs = [read_yaml(run.config, "config") for run in reproduction.runs()]
        if data.name == "download" and any(lookup(c, "data.class_path")[1] in DATASETS for c in configs):
            console.print(
                "[bold yellow]warning[/]: --data_source download downloads the datasets and ImageNet weights: "
                f"without internet the runs fail (--data_source offline reads {args.shared_data})"
            )
        return []
    if seconds > LONG_HOURS * 3600 and not args.yes:
        raise LitvisionError(
            f"this reproduction would take about {format_duration(seconds)} here, over {LONG_HOURS} hours; "
            "add --yes to start it anyway, or choose a smaller --scale"
        )
    try:
        reproduction.run(analyses=args.analyses)
    finally:
        write_report(args, console, command, args.reports)
    return reproduction.failures


def report(args: Namespace, console: Console, command: str, extra: list[str]) -> list[str]:
    write_report(args, console, command)
    return []


def sweep(args: Namespace, console: Console, command: str, extra: list[str]) -> list[str]:
    loaded = load_sweep(args.file)
    plan = Plan(loaded.name, runs=sweep_runs(loaded, loaded.name), id=loaded.name, path=args.file)
    scale = load_scale(args.scale, args.scales_dir)
    reproduction = Reproduction(
        [plan], scale, source(args, scale, make=not args.dry_run), args.save_dir, args.jobs, args.gpus_per_run,
        console, extra_args=extra, launcher=launcher(args),
    )  # fmt: skip
    if args.dry_run:
        print("\n".join(reproduction.dry_run()))
        return []
    reproduction.run(analyses=False)
    table = Table(title=f"sweep {loaded.name}: {loaded.config}")
    for column in ("point", "run directory", "test accuracy", "wall time"):
        table.add_column(column)
    for label, point in plan.runs.items():
        result = RunDir(point, reproduction.run_dir(point))
        acc = METRICS["test_acc"].value(result)
        wall = result.wall_time_s if result.finished else None
        table.add_row(
            label,
            str(result.path),
            f"{acc:.2f}%" if acc is not None else result.status,
            f"{wall:.0f} s" if wall else "",
        )
    console.print(table)
    return reproduction.failures


VERBS = {"run": run, "report": report, "sweep": sweep}
