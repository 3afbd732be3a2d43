"""``litvision analyze <tool>``: the analysis tools on the command line."""

from __future__ import annotations

import sys

from litvision.analysis import compare, confusion, curves, feature_maps, heads, landscape, tsne
from litvision.errors import one_line_errors
from litvision.parsing import Parser

TOOLS = (tsne, feature_maps, confusion, heads, curves, compare, landscape)
# What each tool declares (name, figures, done file); a module with two commands lists both as TOOLS.
BY_NAME = {tool.name: tool for module in TOOLS for tool in getattr(module, "TOOLS", (module.TOOL,))}
RUN = {
    "tsne": tsne.main, "feature-maps": feature_maps.main, "confusion": confusion.main, "svm-head": heads.main,
    "rebalance": heads.rebalance, "curves": curves.main, "compare": compare.run_compare,
    "loss-landscape": landscape.main,
}  # fmt: skip


def build_parser() -> Parser:
    parser = Parser(
        prog="litvision analyze",
        description="Figures and tables of finished runs, written into RUN_DIR/analysis/ and the run's "
        "TensorBoard (see docs/analysis.md). 'litvision analyze TOOL --help' lists a tool's options.",
    )  # fmt: skip
    subcommands = parser.add_subcommands(dest="tool", metavar="TOOL")
    for tool in TOOLS:
        tool.add_parser(subcommands)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run one tool; bad input ends the program with one line on stderr (status 2 for the options, 1 for
    what the tool finds wrong)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    with one_line_errors("litvision analyze"):
        RUN[args.tool](args[args.tool])
