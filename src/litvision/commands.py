"""The ``litvision`` command (also ``lightning`` and ``python -m litvision``): training through
Lightning's CLI (``fit``, ``validate``, ``test``, ``predict``), and beside it ``analyze``,
``reproduce`` and ``search``. Kept apart from the training CLI, which the analysis tools import to
rebuild runs."""

from __future__ import annotations

import sys


def main(args: list[str] | None = None) -> None:
    argv = sys.argv[1:] if args is None else list(args)
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
