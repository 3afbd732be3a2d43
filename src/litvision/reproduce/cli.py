"""litvision reproduce: rerun the experiments of the five reports and write the report.

    litvision reproduce run all                 # every report, full recipes (a GPU box)
    litvision reproduce run 003 004 --jobs 2    # some reports; --jobs: runs at once on a CPU
    litvision reproduce run all --scale quick --data-source offline   # 2-core CPU, < 30 min
    litvision reproduce run all --dry-run       # the command of every run, nothing started
    litvision reproduce run 002 --scale cpu --data-source offline --only 002/elman   # one row
    litvision reproduce run cifar10_lt --scale longtail_cpu --data-source offline   # the long-tail study
    litvision reproduce report --scale quick    # rewrite the report from the runs on disk
    litvision reproduce sweep configs/sweeps/multikernel_cifar_lr.yaml -- --trainer.max_epochs=5
    litvision reproduce plain RUN_DIR           # retrain a finished run with the plain PyTorch loop

Paths are relative to the current directory (the repository root). See docs/reproduce.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from litvision.errors import LitvisionError
from litvision.reproduce import launch, plain
from litvision.reproduce.data_sources import SOURCES, DataSource
from litvision.reproduce.estimate import format_duration
from litvision.reproduce.plan import (
    ReportPlan,
    available_plans,
    is_numbered,
    load_plan,
    load_scale,
    load_sweep,
    select_plans,
)
from litvision.reproduce.report import METRICS, Report, RunResult
from litvision.reproduce.runner import Reproduction

PROG = "litvision reproduce"
LONG_HOURS = 12  # a reproduction estimated to take longer asks for --yes


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scale", default="full", help="full (the reports' recipes) or a file of --scales-dir: quick, smoke"
    )
    parser.add_argument(
        "--data-source", choices=SOURCES, default="download",
        help="download: the real datasets (into --data-root); offline: the copies in --shared-data; "
        "synthetic: random images of each dataset's shape (tests only)",
    )  # fmt: skip
    parser.add_argument("--plans", type=Path, default=Path("configs/experiments"), help="report plans")
    parser.add_argument("--scales-dir", type=Path, help="scale files (default: PLANS/scales)")
    parser.add_argument(
        "--runs-dir", type=Path, default=Path("reports/runs"), help="runs go to RUNS/<scale>/"
    )
    parser.add_argument(
        "--reports-dir", type=Path, default=Path("reports"),
        help="REPORT.md goes here at full scale, into REPORTS/<scale>/ otherwise",
    )  # fmt: skip
    parser.add_argument("--data-root", type=Path, default=Path("data"), help="downloads and prepared subsets")
    parser.add_argument("--shared-data", type=Path, default=Path("../shared/data"), help="offline copies")


def _seeds(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seeds", type=int,
        help="seeds per run (default: the scale's, else 1); the report shows mean ± standard deviation",
    )  # fmt: skip


def _parallel(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--jobs", type=int,
        help="runs at once (default: one per visible GPU, or per group of --gpus-per-run; 1 on a CPU)",
    )  # fmt: skip
    parser.add_argument(
        "--gpus-per-run", type=int, default=1, help="GPUs per run; more than 1 trains each run with DDP"
    )
    launch.add_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train what is not finished, analyse, write the report")
    run.add_argument(
        "reports", nargs="*", default=["all"],
        help="report ids (000 ... 004, cifar10_lt) or all (the numbered reports 000 ... 004)",
    )  # fmt: skip
    _common(run)
    _seeds(run)
    _parallel(run)
    run.add_argument(
        "--only", nargs="+", metavar="REPORT/RUN",
        help="train only these runs (patterns, e.g. 002/elman '002/lstm*'), every seed of each; the report "
        "still covers the whole reports",
    )  # fmt: skip
    run.add_argument("--no-analyses", action="store_true", help="skip the litvision analyze figures")
    run.add_argument(
        "--yes", action="store_true",
        help=f"start even when the estimate says it takes over {LONG_HOURS} hours on this machine",
    )  # fmt: skip
    run.add_argument("--dry-run", action="store_true", help="print each run's command, start nothing")
    report = commands.add_parser("report", help="write the report from the runs on disk")
    _common(report)
    _seeds(report)
    sweep = commands.add_parser(
        "sweep", help="run a sweep file's points as ordinary runs", usage="%(prog)s FILE [options] [-- ARGS]",
        description="Runs each point of FILE; arguments after -- are added to every point's litvision fit.",
    )  # fmt: skip
    sweep.add_argument("file", type=Path, help="a sweep file (configs/sweeps/*.yaml)")
    sweep.add_argument("--save-dir", type=Path, default=Path("lightning_logs"), help="runs go to DIR/<name>/")
    _common(sweep)
    _parallel(sweep)
    sweep.add_argument("--dry-run", action="store_true", help="print each point's command, start nothing")
    plain.add_parser(commands)
    return parser


def _scale_and_source(args: argparse.Namespace, make: bool = True) -> tuple:
    scale = load_scale(args.scale, args.scales_dir or args.plans / "scales")
    source = DataSource(args.data_source, scale, args.data_root, args.shared_data, make=make)
    return scale, source


def _plans(names: list[str], plans_dir: Path) -> list[ReportPlan]:
    return [load_plan(p, Path("."), set(METRICS)) for p in select_plans(names, plans_dir)]


def write_report(args: argparse.Namespace, scale, source, console: Console, command: str) -> Path:
    out_dir = args.reports_dir if scale.name == "full" else args.reports_dir / scale.name
    runs_dir = args.runs_dir / scale.name
    # The scale's plans (default: the numbered reports), those this command named, those with runs on disk.
    named = set(getattr(args, "reports", []))
    covered = (lambda p: p in scale.reports) if scale.reports is not None else is_numbered
    ids = [p for p in available_plans(args.plans) if covered(p) or p in named or (runs_dir / p).is_dir()]
    report = Report(_plans(ids or ["all"], args.plans), scale, source, runs_dir, out_dir, command, args.seeds)
    path = report.write()
    console.print(f"report written to [bold]{path}[/] (and {path.with_name('results.csv')})")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # After "--": litvision fit arguments for every point of a sweep.
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    args.extra = extra
    console = Console(soft_wrap=True)  # long paths stay on one line, as in a log file
    command = f"{PROG} {shlex.join(argv)}"
    # SIGTERM (kill, a scheduler; the only stop of a run started with `nohup ... &`, which ignores Ctrl-C's
    # SIGINT) stops as Ctrl-C does: the runs are stopped, marked interrupted, the report written.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.command == "plain":
            plain.run(args)
            return
        if args.command == "report":
            scale, source = _scale_and_source(args, make=False)
            write_report(args, scale, source, console, command)
            return
        if args.command == "sweep":
            run_sweep(args, console)
            return
        plans = _plans(args.reports, args.plans)
        scale, source = _scale_and_source(args, make=not args.dry_run)
        reproduction = Reproduction(
            plans, scale, source, args.runs_dir / scale.name, args.jobs, args.gpus_per_run, console=console,
            seeds=args.seeds, launcher=launch.from_args(args), only=args.only,
        )  # fmt: skip
        if args.dry_run:
            print("\n".join(reproduction.dry_run()))
            return
        seconds = reproduction.estimate() if reproduction.launcher is None else 0.0  # a cluster's: unknown
        if seconds:
            load, cores = os.getloadavg()[0], os.cpu_count() or 1
            busy = f"; the machine is busy, load {load:.1f} on {cores} cores, so it may be far too long"
            console.print(
                f"estimated time on this machine: about {format_duration(seconds)} (a rough figure"
                f"{busy if load > 0.75 * cores else ''})"
            )
        if seconds > LONG_HOURS * 3600 and not args.yes:
            raise LitvisionError(
                f"this reproduction would take about {format_duration(seconds)} here, over {LONG_HOURS} "
                "hours; add --yes to start it anyway, or choose a smaller --scale"
            )
        try:
            reproduction.run(analyses=not args.no_analyses)
        finally:
            write_report(args, scale, source, console, command)
    except LitvisionError as err:
        parser.exit(1, f"{PROG}: error: {err}\n")
    except KeyboardInterrupt:
        parser.exit(130, f"{PROG}: interrupted; run the same command again to resume\n")
    finally:
        signal.signal(signal.SIGTERM, previous)
    if reproduction.failures:
        parser.exit(
            1, f"{PROG}: {len(reproduction.failures)} failed:\n" + "\n".join(reproduction.failures) + "\n"
        )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_sweep(args: argparse.Namespace, console: Console) -> None:
    sweep = load_sweep(args.file, Path("."))
    specs = sweep.specs(sweep.name, Path("."))
    plan = ReportPlan(sweep.name, args.file, sweep.name, "", [], specs, [], [])
    scale, source = _scale_and_source(args, make=not args.dry_run)
    reproduction = Reproduction(
        [plan],
        scale,
        source,
        args.save_dir,
        args.jobs,
        args.gpus_per_run,
        console=console,
        extra_args=args.extra,
        launcher=launch.from_args(args),
    )
    if args.dry_run:
        print("\n".join(reproduction.dry_run()))
        return
    reproduction.run(analyses=False)
    table = Table(title=f"sweep {sweep.name}: {sweep.config}")
    for column in ("point", "run directory", "test accuracy", "wall time"):
        table.add_column(column)
    for label, spec in specs.items():
        result = RunResult(spec, reproduction.run_dir(spec))
        acc = METRICS["test_acc"].value(result)
        wall = result.wall_time_s if result.finished else None
        table.add_row(
            label, str(result.directory), f"{acc:.2f}%" if acc is not None else result.status,
            f"{wall:.0f} s" if wall else "",
        )  # fmt: skip
    console.print(table)
    if reproduction.failures:
        raise LitvisionError(
            f"{len(reproduction.failures)} point(s) failed: " + "; ".join(reproduction.failures)
        )
