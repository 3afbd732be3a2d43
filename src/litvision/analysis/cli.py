"""``litvision analyze <tool>``: the analysis tools on the command line."""

from __future__ import annotations

import argparse
import sys

from litvision.analysis import compare, confusion, curves, feature_maps, heads, landscape, tsne
from litvision.errors import one_line_errors

TOOLS = (tsne, feature_maps, confusion, heads, curves, compare, landscape)
# What each tool declares (name, figures, done file); a module with two commands lists both as TOOLS.
BY_NAME = {tool.name: tool for module in TOOLS for tool in getattr(module, "TOOLS", (module.TOOL,))}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="litvision analyze",
        description="Figures and tables of finished runs, written into RUN_DIR/analysis/ and the run's "
        "TensorBoard (see docs/analysis.md). 'litvision analyze TOOL --help' lists a tool's options.",
    )
    subparsers = parser.add_subparsers(title="tools", metavar="TOOL", required=True)
    for tool in TOOLS:
        tool.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run one tool; bad input ends the program with one line on stderr and exit status 1."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    with one_line_errors("litvision analyze"):
        args.run(args)
