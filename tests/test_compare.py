"""python -m litvision.compare: several runs' per-class test accuracy side by side."""

from __future__ import annotations

import csv
import json

import pytest

from litvision.callbacks import TestReport
from litvision.compare import main


def write_run(folder, confmat, shot_groups=None):
    results = TestReport.results(confmat, ["cat", "dog"])
    if shot_groups:
        results["shot_groups"] = shot_groups
    folder.mkdir(parents=True)
    (folder / "test_results.json").write_text(json.dumps(results))


def test_compare_writes_markdown_and_csv(tmp_path, capsys):
    write_run(
        tmp_path / "unbalanced" / "version_0", [[8, 2], [5, 5]], {"few_shot": {"acc": 0.5, "classes": 1}}
    )
    write_run(tmp_path / "augmented" / "version_3", [[9, 1], [2, 8]])
    main([str(tmp_path / "unbalanced/version_0"), str(tmp_path / "augmented/version_3"),
          "--output", str(tmp_path / "out/table")])  # fmt: skip
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == "| class | unbalanced | augmented |"
    assert "| dog | 50.00 | 80.00 |" in printed and "| few-shot | 50.00 |  |" in printed
    rows = list(csv.reader((tmp_path / "out/table.csv").open()))
    assert rows[1] == ["cat", "80.00", "90.00"] and rows[3] == ["overall", "65.00", "85.00"]
    assert (tmp_path / "out/table.md").read_text() == printed


def test_compare_names_a_missing_run(tmp_path):
    with pytest.raises(SystemExit, match="test_results.json not found"):
        main([str(tmp_path)])
