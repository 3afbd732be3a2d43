"""The ``litvision`` command (also ``lightning`` and ``python -m litvision``): training through
Lightning's CLI (``fit``, ``validate``, ``test``, ``predict``), and beside it ``analyze``,
``reproduce`` and ``search``. Kept apart from the training CLI, which the analysis tools import to
rebuild runs."""

from __future__ import annotations

import sys

from litvision.parsing import Parser

COMMANDS = {  # each summary fits one line of an 80-column terminal
    "fit": "train a network, then test its best checkpoint",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split",
    "predict": "classify images with a trained run",
    "analyze": "figures and tables of finished runs",
    "reproduce": "rerun the reports' experiments, write the report",
    "search": "tune any config key with Optuna, pruning and resuming",
}


def overview() -> Parser:
    """The top-level help: every command, one line each."""
    parser = Parser(
        prog="litvision",
        description="Image classification with PyTorch Lightning. 'litvision COMMAND --help' lists a "
        "command's options; every command takes --config FILE and --print_config.",
    )  # fmt: skip
    subcommands = parser.add_subcommands(dest="command", metavar="COMMAND")
    for name, summary in COMMANDS.items():
        subcommands.add_subcommand(name, Parser(), help=summary)
    return parser


def main(args: list[str] | None = None) -> None:
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] in ([], ["-h"], ["--help"]):
        overview().print_help()
        raise SystemExit(0 if argv else 2)
    if not argv[0].startswith("-") and argv[0] not in COMMANDS:  # Lightning's CLI would name only its own
        from litvision.parsing import suggestion

        print(f"litvision: error: '{argv[0]}' is not one of {', '.join(COMMANDS)}"
              f"{suggestion(argv[0], COMMANDS)}", file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    if argv[:1] == ["analyze"]:  # analysis tools: never imported by training
        from litvision.analysis.cli import main as analyze

        analyze(argv[1:])
    elif argv[:1] == ["search"]:
        from litvision.search.cli import main as search

        search(argv[1:])
    elif argv[:1] == ["reproduce"]:
        from litvision.reproduce.cli import main as reproduce

        reproduce(argv[1:])
    else:
        from litvision.cli import main as train

        train(args)
