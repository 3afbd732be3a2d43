"""litvision analyze compare: several runs' per-class test accuracy side by side."""

from __future__ import annotations

import csv
import json

import pytest

from litvision.analysis.cli import main as analyze
from litvision.callbacks import TestReport


def main(argv: list[str]) -> None:
    analyze(["compare", *argv])


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


def test_compare_names_a_missing_run(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
    assert "test_results.json not found" in capsys.readouterr().err


def test_compare_adds_a_run_table_and_leaves_unrecorded_values_empty(tmp_path, capsys):
    write_run(tmp_path / "a" / "version_0", [[8, 2], [5, 5]])
    write_run(tmp_path / "a" / "version_1", [[9, 1], [2, 8]])
    main([str(tmp_path / "a/version_0"), str(tmp_path / "a/version_1"), "--output", str(tmp_path / "t")])
    runs = list(csv.DictReader((tmp_path / "t_runs.csv").open()))
    assert [r["run"] for r in runs] == ["a/version_0", "a/version_1"]  # one config: told apart by version
    assert runs[1]["test_acc"] == "85.00" and runs[1]["test_acc_macro"] == "85.00"
    # Only test_results.json: no events, run_info.json or checkpoint to read the rest from.
    assert (
        runs[0]["epochs"] == runs[0]["parameters"] == runs[0]["val_acc_best"] == runs[0]["wall_time_s"] == ""
    )
    assert "| run | epochs | steps | wall time |" in capsys.readouterr().out


def test_compare_of_runs_on_other_classes_has_only_the_run_table(tmp_path, capsys):
    write_run(tmp_path / "cats" / "version_0", [[8, 2], [5, 5]])
    folder = tmp_path / "digits" / "version_0"
    folder.mkdir(parents=True)
    (folder / "test_results.json").write_text(json.dumps(TestReport.results([[3, 1], [0, 4]], ["0", "1"])))
    main([str(tmp_path / "cats/version_0"), str(folder), "--output", str(tmp_path / "t")])
    captured = capsys.readouterr()
    assert "different classes" in captured.err and captured.out.startswith("| run |")
    assert not (tmp_path / "t.csv").exists() and (tmp_path / "t_runs.csv").exists()
