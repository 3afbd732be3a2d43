"""Side-by-side per-class test accuracy of several runs, as Markdown and CSV (like report 000's Table V).

    python -m litvision.compare lightning_logs/lstm_mnist_*/version_0 --output reports/imbalance

Each run is a run directory holding ``test_results.json`` (written after ``fit`` and by ``test``), or
that file itself. Columns are named after the runs' directories unless ``--names`` is given.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any


def load(run: Path) -> dict[str, Any]:
    path = run if run.suffix == ".json" else run / "test_results.json"
    if not path.is_file():
        raise SystemExit(
            f"compare: error: {path} not found: pass run directories that hold test_results.json"
        )
    return json.loads(path.read_text())


def default_name(run: Path) -> str:
    run = run.parent if run.suffix == ".json" else run
    return run.parent.name if run.name.startswith("version_") else run.name


def table(results: list[dict[str, Any]], names: list[str]) -> list[list[str]]:
    """Rows of (what, accuracy of each run in %): one per class, then overall, macro and shot groups."""
    classes = list(results[0]["per_class"])
    for name, r in zip(names, results):
        if list(r["per_class"]) != classes:
            raise SystemExit(f"compare: error: run {name!r} has other classes than {names[0]!r}")
    rows = [["class", *names]]
    for c in classes:
        rows.append([c, *(f"{100 * r['per_class'][c]['acc']:.2f}" for r in results)])
    rows.append(["overall", *(f"{100 * r['acc']:.2f}" for r in results)])
    rows.append(["macro", *(f"{100 * r['acc_macro']:.2f}" for r in results)])
    for group in ("many_shot", "medium_shot", "few_shot"):
        if any(group in r.get("shot_groups", {}) for r in results):
            values = [r.get("shot_groups", {}).get(group, {}).get("acc") for r in results]
            rows.append([group.replace("_", "-"), *("" if v is None else f"{100 * v:.2f}" for v in values)])
    return rows


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m litvision.compare", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (or their test_results.json)")
    parser.add_argument("--names", nargs="+", help="column names, one per run")
    parser.add_argument("--output", type=Path, help="write OUTPUT.md and OUTPUT.csv")
    args = parser.parse_args(argv)
    if args.names and len(args.names) != len(args.runs):
        parser.error(f"--names has {len(args.names)} names for {len(args.runs)} runs")
    rows = table([load(r) for r in args.runs], args.names or [default_name(r) for r in args.runs])
    text = markdown(rows)
    sys.stdout.write(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.with_suffix(".md").write_text(text)
        with args.output.with_suffix(".csv").open("w", newline="") as f:
            csv.writer(f).writerows(rows)


if __name__ == "__main__":
    main()
