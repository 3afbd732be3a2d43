"""The reproduction report: every table of the five reports with the published value, ours and the
difference, our figures, the hardware, wall times and commit, and where our protocol differs. A report
written while runs or their plain-loop references are missing says so at its top (a partial report).

Written from the run directories alone (``test_results.json``, ``run_info.json``, TensorBoard events,
``analysis/``), so it can be regenerated at any time: ``litvision reproduce report``.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from litvision.analysis.cli import BY_NAME
from litvision.reproduce.data_sources import DATASETS, DataSource
from litvision.reproduce.plan import Cell, ReportPlan, RunSpec, Scale, Table, read_yaml
from litvision.reproduce.runner import (
    ANALYSES_FILE,
    INTERRUPTED,
    LOG,
    MARKER,
    PLAIN_DIR,
    epochs_trained,
    is_finished,
    last_error,
)
from litvision.utils import csv_text, git_state, markdown_table, now, read_json, read_scalars, write_text

# The JSON files of a run that metrics read.
TEST, SVM, REBALANCE = "test_results.json", "analysis/svm_head.json", "analysis/rebalance.json"
PLAIN = f"{PLAIN_DIR}/results.json"
CSV_COLUMNS = ["report", "table", "row", "metric", "published", "ours", "ours_std", "seeds", "difference",
               "plain_loop", "status", "budget", "run", "run_dir", "scale", "data_source"]  # fmt: skip
# Rounded to 2 decimals in the file, not in the summary.
ROUNDED = {"published", "ours", "ours_std", "difference", "plain_loop"}
FINDINGS = "findings"  # results.csv's table of the findings: published and our gaps, and the verdict


@dataclass
class RunResult:
    """What a run directory holds, read lazily."""

    spec: RunSpec
    directory: Path

    @cached_property
    def marker(self) -> dict[str, Any]:
        return read_json(self.directory / MARKER) or {}

    @cached_property
    def info(self) -> dict[str, Any]:
        return read_json(self.directory / "run_info.json") or {}

    @cached_property
    def finished(self) -> bool:
        return is_finished(self.directory)

    @cached_property
    def test(self) -> dict[str, Any] | None:
        return read_json(self.directory / TEST) if self.finished else None

    @cached_property
    def scalars(self) -> dict[str, list[float]]:
        """The run's TensorBoard scalars by tag, in step order (none before the run has finished)."""
        events = read_scalars(self.directory) if self.finished else {}
        return {tag: [e.value for e in tag_events] for tag, tag_events in events.items()}

    def number(self, file: str, path: str) -> float | None:
        """The number at the dotted ``path`` of the finished run's JSON file ``file``, if there is one."""
        node: Any = read_json(self.directory / file) if self.finished else None
        for key in path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        return node if isinstance(node, (int, float)) else None

    @cached_property
    def status(self) -> str:  # read once: an unfinished run's checkpoint is loaded for its epochs
        if self.finished:
            return "finished"
        if self.marker.get("status") == "failed":
            return f"failed: {self.marker.get('reason', 'see its log')}"
        if self.marker.get("status") == INTERRUPTED:
            return f"{INTERRUPTED}: it resumes from its last checkpoint at the next `litvision reproduce run`"
        if (self.directory / "checkpoints" / "last.ckpt").is_file():  # running, or its runner was stopped
            return (
                f"unfinished: {epochs_trained(self.directory)} epoch(s) trained; it resumes from its last "
                "checkpoint at the next `litvision reproduce run`"
            )
        if (self.directory / LOG).is_file():
            return f"unfinished: {last_error(self.directory / LOG)}"
        return "not run"

    @property
    def wall_time_s(self) -> float | None:
        return self.info.get("wall_time_s") or self.marker.get("wall_time_s")

    @property
    def training_time(self) -> str:
        """The fit's seconds over its sessions, and how many sessions ended with no time recorded (killed
        before their first checkpoint, or run by a litvision that timed a session only at its end)."""
        untimed = sum("wall_time_s" not in s for s in self.info.get("sessions", []))
        seconds = fmt(self.wall_time_s if self.finished else None, accuracy=False)
        return f"{seconds} (+ {untimed} session(s) not timed)" if self.finished and untimed else seconds

    @property
    def device(self) -> str:
        device, n = self.info.get("device") or "", self.info.get("num_devices") or 1
        return f"{n} x {device}" if device and n > 1 else str(device)


def _pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


def _at(file: str, path: str) -> Callable[[RunResult], float | None]:
    """A metric read from a finished run's JSON file: the accuracy at ``path``, in %."""
    return lambda result: _pct(result.number(file, path))


@dataclass(frozen=True)
class Metric:
    header: str
    value: Callable[[RunResult], float | None]
    accuracy: bool = True  # a percentage: differences in points; otherwise no difference is shown


METRICS: dict[str, Metric] = {
    "test_acc": Metric("test accuracy (%)", _at(TEST, "acc")),
    "test_acc_macro": Metric("macro test accuracy (%)", _at(TEST, "acc_macro")),
    "train_acc": Metric("training accuracy (%)", lambda r: _pct(r.scalars.get("train/acc", [None])[-1])),
    "val_acc_best": Metric(
        "best validation accuracy (%)", lambda r: _pct(max(r.scalars.get("val/acc", [None])))
    ),
    "wall_time_s": Metric("time (s)", lambda r: r.wall_time_s if r.finished else None, accuracy=False),
    "svm_head_acc": Metric("test accuracy (%)", _at(SVM, "heads.svm.acc")),
    "crt_head_acc": Metric("test accuracy (%)", _at(SVM, "heads.crt.acc")),
    "test_many_shot": Metric("many-shot test accuracy (%)", _at(TEST, "shot_groups.many_shot.acc")),
    "test_medium_shot": Metric("medium-shot test accuracy (%)", _at(TEST, "shot_groups.medium_shot.acc")),
    "test_few_shot": Metric("few-shot test accuracy (%)", _at(TEST, "shot_groups.few_shot.acc")),
    # Classifier re-balancing methods (``litvision analyze rebalance``).
    "posthoc_acc": Metric("test accuracy (%)", _at(REBALANCE, "methods.posthoc.acc")),
    "tau_norm_acc": Metric("test accuracy (%)", _at(REBALANCE, "methods.tau_norm.acc")),
    "lws_acc": Metric("test accuracy (%)", _at(REBALANCE, "methods.lws.acc")),
    "crt_acc": Metric("test accuracy (%)", _at(REBALANCE, "methods.crt.acc")),
}


def fmt(value: float | None, accuracy: bool = True) -> str:
    return "—" if value is None else f"{value:.{2 if accuracy else 0}f}"


def fmt_diff(ours: float | None, published: float | None) -> str:
    return "" if ours is None or published is None else f"{round(ours - published, 2) + 0.0:+.2f}"  # no -0.00


@dataclass(frozen=True)
class Seeds:
    """A value over the seeds of one run: their mean, sample standard deviation and count."""

    values: tuple[float, ...]
    asked: int = 1  # the seeds the scale trains (more than the values: some have not finished)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def text(self, accuracy: bool = True) -> str:
        mean, n = fmt(self.mean, accuracy), len(self.values)
        count = f"{n} seeds" if n >= self.asked else f"{n} of {self.asked} seeds"
        if self.std is None:
            return mean if n >= self.asked else f"{mean} ({count})"
        return f"{mean} ± {fmt(self.std, accuracy)} ({count})"


def verdict(higher: Seeds, lower: Seeds) -> str:
    """Whether our values put ``higher`` above ``lower``, and whether the gap is beyond the noise: twice
    the larger standard deviation over the seeds (not measured where each side has one seed)."""
    assert higher.mean is not None and lower.mean is not None
    gap = higher.mean - lower.mean
    spread = max((s.std for s in (higher, lower) if s.std is not None), default=None)
    if spread is None:
        return ("confirmed" if gap > 0 else "not confirmed") + " (one seed each: the noise is not measured)"
    said = {(True, True): "confirmed, beyond the noise", (True, False): "same direction, within the noise",
            (False, True): "reversed, beyond the noise",
            (False, False): "not confirmed, within the noise"}[gap > 0, abs(gap) > 2 * spread]  # fmt: skip
    return f"{said} (2 x {spread:.2f}: twice the seeds' standard deviation)"


def findings_count(verdicts: list[str], listed: int, gpu: int = 0) -> str:
    """The summary's count: the findings confirmed of those judged (both sides have a value), and of the
    others how many wait for runs of this scale and how many for runs it leaves to a GPU."""
    if not listed:
        return "—"
    left = [f"{n} {what}" for n, what in ((listed - len(verdicts) - gpu, "waiting for runs"),
                                          (gpu, "needing a GPU")) if n]  # fmt: skip
    said = f" ({'; '.join(left)})" if left else ""
    return f"{sum(v.startswith('confirmed') for v in verdicts)} of {len(verdicts)}{said}"


def git_commit() -> str:
    """The commit of the code that writes the report, and whether it had uncommitted changes."""
    state = git_state()
    if state["git_commit"] is None:
        return "unknown (not a git checkout)"
    return state["git_commit"][:7] + (" with uncommitted changes" if state["git_dirty"] else "")


def host() -> str:
    try:
        model = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        model = None
    cpu = model.group(1).strip() if model else platform.processor() or platform.machine()
    return f"{platform.node()}: {os.cpu_count()} CPU cores ({cpu}), {platform.system()} {platform.release()}"


@dataclass
class Report:
    """The report of some plans at one scale; ``rows`` collects the CSV as the Markdown is written."""

    plans: list[ReportPlan]
    scale: Scale
    source: DataSource
    runs_root: Path  # RUNS/<scale>
    out_dir: Path
    command: str = ""
    seeds: int | None = None  # seeds per run (None: the scale's)
    rows: list[dict[str, Any]] = field(default_factory=list)  # results.csv, by CSV_COLUMNS
    figures: list[tuple[Path, Path]] = field(default_factory=list)  # (source, destination)
    _results: dict[Path, RunResult] = field(default_factory=dict)

    def result(self, spec: RunSpec) -> RunResult:
        directory = self.runs_root / spec.report / spec.name
        return self._results.setdefault(directory, RunResult(spec, directory))

    def seeded(self, spec: RunSpec) -> list[RunResult]:
        """The results of every seed of a run."""
        return [self.result(spec.with_seed(k)) for k in range(self.scale.seed_count(spec, self.seeds))]

    def trained_here(self, plans: list[ReportPlan]) -> list[RunResult]:
        """Every seed of every run of ``plans`` that this scale trains here (not left to a GPU)."""
        specs = [spec for plan in plans for spec in plan.unique_runs() if not self.scale.gpu_reason(spec)]
        return [result for spec in specs for result in self.seeded(spec)]

    def value(self, metric: str, spec: RunSpec) -> Seeds:
        """A metric over the finished seeds of a run."""
        values = (METRICS[metric].value(r) for r in self.seeded(spec))
        return Seeds(tuple(v for v in values if v is not None), self.scale.seed_count(spec, self.seeds))

    def status(self, spec: RunSpec) -> str:
        """What stands in a cell without a value: why the run has none."""
        return "needs a GPU" if self.scale.gpu_reason(spec) else self.result(spec).status.split(":", 1)[0]

    def missing(self, spec: RunSpec) -> str:
        """What stands in a cell without a value: why the run has none (a finished run: the analysis that
        computes it has not run yet)."""
        why = self.status(spec)
        return "no value yet" if why == "finished" else why

    @property
    def ours(self) -> str:
        if self.scale.scaled_down:
            return f"ours ({self.scale.name}, scaled down)"
        return "ours" if self.scale.name == "full" else f"ours ({self.scale.name})"

    def write(self) -> Path:
        """Write REPORT.md, results.csv and figures/ into ``out_dir``; returns REPORT.md's path."""
        body = [self.section(plan) for plan in self.plans]  # first: it collects the rows and figures
        text = "\n".join([*self.header(), *self.summary(), *body])
        shutil.rmtree(self.out_dir / "figures", ignore_errors=True)
        for source, destination in self.figures:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
        rows = [
            [round(v, 2) if k in ROUNDED and v is not None else v for k, v in row.items()]
            for row in self.rows
        ]
        write_text(self.out_dir / "results.csv", csv_text([CSV_COLUMNS, *rows]))
        write_text(self.out_dir / "REPORT.md", text)
        return self.out_dir / "REPORT.md"

    # --- the parts ---------------------------------------------------------------------------------
    def header(self) -> list[str]:
        results = self.trained_here(self.plans)
        finished = [r for r in results if r.finished]
        failed = sum(r.status.startswith("failed") for r in results)
        to_gpu = sum(bool(self.scale.gpu_reason(s)) for p in self.plans for s in p.unique_runs())
        devices = sorted({r.device for r in finished if r.device})
        commits = sorted({str(r.info["git_commit"])[:7] for r in finished if r.info.get("git_commit")})
        wall = sum(r.wall_time_s or 0 for r in finished) / 60
        command_wall = sum(r.marker.get("wall_time_s") or 0 for r in finished) / 60
        cpu = sum(r.marker.get("cpu_time_s") or 0 for r in finished) / 60
        what = "the five reports" if len(self.plans) > 1 else self.plans[0].title
        lines = [f"# Reproduction of {what} ({self.scale.name} scale)", ""]
        # The plain-loop references the scale asks for, which the runner trains after the runs.
        plain = [r for r in finished if self.scale.has_plain_reference(r.spec)]
        plain_done = sum(r.number(PLAIN, "acc") is not None for r in plain)
        if len(finished) < len(results) or plain_done < len(plain):
            left = f", {plain_done} of {len(plain)} plain-loop references" if plain else ""
            lines += [f"> **Partial report**: {len(finished)} of {len(results)} runs finished{left}; the "
                      "empty cells fill in when `litvision reproduce run` is run again with the same "
                      "arguments (finished runs are kept).", ""]  # fmt: skip
        if self.scale.scaled_down:
            lines += [f'> **Scaled down: these are not reproductions.** Every "{self.ours}" value comes from '
                      f"a run shrunk to check the pipeline: {self.scale.description}. Compare them with each "
                      "other and with the plain-loop references, not with the published numbers; `make "
                      "reproduce-all` on a GPU runs the reports' own recipes.", ""]  # fmt: skip
        elif self.mixed_budgets:
            lines += [f"> **Scale {self.scale.name}**: {self.scale.description} Each row says its budget: "
                      '"published recipe" rows ran at the report\'s own recipe on the real data; "reduced" '
                      'rows at the budget stated; "needs a GPU" rows were not run here (their commands are '
                      "listed).", ""]  # fmt: skip
        datasets = sorted({dataset for dataset, _ in DATASETS.values()})
        return lines + [
            f"- Generated {now()}" + (f" by `{self.command}`" if self.command else ""),
            f"- Code: litvision commit {git_commit()}"
            + (f"; runs made at commit(s) {', '.join(commits)}" if commits else ""),
            f"- Hardware: runs on {', '.join(devices) or 'no device recorded'}; host {host()}",
            f"- Data ({self.source.name}): " + "; ".join(f"{d}: {self.source.describe(d)}" for d in datasets),
            f"- Runs: {len(finished)} of {len(results)} finished, {failed} failed"
            + (f", {to_gpu} left to a GPU" if to_gpu else "")
            + f"; in total {wall:.1f} minutes of training (the fits), {command_wall:.1f} minutes of commands"
            + (f", {cpu:.1f} minutes of CPU time" if cpu else ""),
            f"- Run directories: `{self.runs_root}/<report>/<run>/` (each an ordinary Lightning run: "
            "`config.yaml`, `checkpoints/`, `test_results.json`, `run_info.json`, TensorBoard events)",
            "",
            "Protocol, everywhere: the checkpoint tested is the one with the best accuracy on a validation "
            "split carved from the training set (seeded, stratified); the test set is never used to select "
            "a model or an epoch. Several reports selected on the test set; each section says where.",
            "",
        ]

    @property
    def mixed_budgets(self) -> bool:
        """Whether this scale keeps some recipes and reduces others (cpu): each row says its budget."""
        return self.scale.name != "full" and not self.scale.scaled_down

    def budget(self, spec: RunSpec) -> str:
        return "needs a GPU" if self.scale.gpu_reason(spec) else self.scale.budget(spec)

    def summary(self) -> list[str]:
        """A line per report, from its rows of results.csv (so ``section`` comes first)."""
        # A scale that keeps some recipes (cpu) compares only those with the published values.
        recipes = ", published recipes" if self.mixed_budgets else ""
        rows = [["report", "runs finished", "table cells filled", f"mean \\|difference\\|{recipes} (points)",
                 "findings confirmed"]]  # fmt: skip
        for plan in self.plans:
            runs = self.trained_here([plan])
            mine = [row for row in self.rows if row["report"] == plan.id]
            cells = [row for row in mine if row["table"] != FINDINGS]
            diffs = [abs(row["difference"]) for row in cells if row["difference"] is not None
                     and (not self.mixed_budgets or row["budget"] == "published recipe")]  # fmt: skip
            findings = [row for row in mine if row["table"] == FINDINGS]
            judged = [row["status"] for row in findings if row["ours"] is not None]
            gpu = sum(row["status"].startswith("needs a GPU") for row in findings)
            rows.append([
                f"[{plan.id}](#{plan.id}) {plan.title}", f"{sum(r.finished for r in runs)} / {len(runs)}",
                f"{sum(row['ours'] is not None for row in cells)} / {len(cells)}",
                f"{statistics.fmean(diffs):.2f}" if diffs else "—",
                findings_count(judged, len(plan.findings), gpu),
            ])  # fmt: skip
        return ["## Summary", "", markdown_table(rows)]

    def section(self, plan: ReportPlan) -> str:
        lines = [f'<a id="{plan.id}"></a>', f"## {plan.id}: {plan.title}", ""]
        if plan.source:
            lines += [f"Source: `{plan.source}`. Experiments: `{plan.path}`.", ""]
        notes = [*plan.notes, *self.scale.notes.get(plan.id, []), *self.automatic_notes(plan)]
        if notes:
            lines += ["Where our protocol differs:", "", *(f"- {n}" for n in notes), ""]
        for table in plan.tables:
            lines += (self.per_class_table if table.kind == "per_class" else self.runs_table)(plan, table)
        lines += self.findings_table(plan)
        return "\n".join(lines + self.figures_section(plan) + self.runs_section(plan))

    def automatic_notes(self, plan: ReportPlan) -> list[str]:
        notes = []
        # Runs trained here with their config's own network (a scale may train another in its place).
        own = [s for s in plan.unique_runs() if not self.scale.gpu_reason(s)
               and not any(a.startswith("--model.backbone=") for a in self.scale.run_args(s))]  # fmt: skip
        random_init = [
            f"`{s.name}`" for s in own if self.source.replaces_pretrained(read_yaml(s.config, "config"))
        ]
        if random_init:
            one = len(random_init) == 1
            verb, whose = ("starts", "its config asks") if one else ("start", "their configs ask")
            notes.append(
                f"{', '.join(random_init)} {verb} from random weights: the ImageNet weights {whose} for "
                "are not in the torch hub cache and cannot be downloaded here."
            )
        if any(self.scale.has_plain_reference(s) for s in plan.unique_runs()):
            notes.append(
                '"plain loop": the same run retrained by a hand-written PyTorch loop (`litvision '
                "reproduce plain RUN_DIR`: same seed, weights, batches, optimizer and checkpoint "
                "selection, no Lightning); it checks the training machinery, not the report."
            )
        return notes

    def runs_table(self, plan: ReportPlan, table: Table) -> list[str]:
        plain = any(self.scale.has_plain_reference(plan.runs[row.run]) for row in table.rows)
        header = ["row"]
        for metric in map(METRICS.get, table.metrics):
            header += [f"{metric.header}: published", self.ours] + (["difference"] if metric.accuracy else [])
        header += ["plain loop (%)", "ours - plain loop"] if plain else []
        rows = [header + (["budget"] if self.mixed_budgets else []) + ["run"]]
        for row in table.rows:
            spec = plan.runs[row.run]
            result = self.result(spec)
            plain_value = _pct(result.number(PLAIN, "acc"))
            cells = [row.label]
            for metric, published in zip(row.metrics, row.published):
                accuracy, ours = METRICS[metric].accuracy, self.value(metric, spec)
                cells += [
                    fmt(published, accuracy),
                    ours.text(accuracy) if ours.values else self.missing(spec),
                ]
                cells += [fmt_diff(ours.mean, published)] if accuracy else []
                reference = plain_value if metric == "test_acc" else None
                self.csv_row(plan, table, row.label, metric, published, ours, spec, reference)
            if plain:
                no_reference = "—" if self.scale.has_plain_reference(spec) else "n/a"
                shown = fmt(plain_value) if plain_value is not None else no_reference
                cells += [shown, fmt_diff(METRICS["test_acc"].value(result), plain_value)]
            if self.mixed_budgets:
                cells.append("—" if self.scale.gpu_reason(spec) else self.scale.budget(spec))
            rows.append([*cells, f"`{spec.name}`"])
        return [f"### {table.title}", "", markdown_table(rows)]

    def csv_row(self, plan: ReportPlan, table: Table, label: str, metric: str, published: float | None,
                ours: Seeds, spec: RunSpec, plain: float | None = None) -> None:  # fmt: skip
        """A row of results.csv; the difference (accuracies only) is empty where a value is missing."""
        mean, accuracy = ours.mean, METRICS[metric].accuracy
        diff = None if mean is None or published is None or not accuracy else mean - published
        values = [plan.id, table.title, label, metric, published, mean, ours.std, len(ours.values), diff,
                  plain, self.status(spec), self.budget(spec), spec.name, str(self.result(spec).directory),
                  self.scale.name, self.source.name]  # fmt: skip
        self.rows.append(dict(zip(CSV_COLUMNS, values)))

    def _class_value(self, spec: RunSpec, key: int | str) -> Seeds:
        """A class's test accuracy over the seeds of a run; ``total``: the overall one; ``"A-B"``: the mean
        accuracy of classes A to B, taken in each seed."""
        tests = [r.test for r in self.seeded(spec) if r.test is not None]
        asked = self.scale.seed_count(spec, self.seeds)
        if key == "total":
            return Seeds(tuple(100 * test["acc"] for test in tests), asked)
        first, _, last = str(key).partition("-")
        span = range(int(first), int(last or first) + 1)
        classes = [list(test.get("per_class", {}).values()) for test in tests]
        means = [statistics.fmean(c[k]["acc"] for k in span) for c in classes if span[-1] < len(c)]
        return Seeds(tuple(100 * mean for mean in means), asked)

    def per_class_table(self, plan: ReportPlan, table: Table) -> list[str]:
        specs = {label: plan.runs[run] for label, run in table.columns.items()}
        tests = [r.test for spec in specs.values() for r in self.seeded(spec) if r.test]
        names: list[str] = list(tests[0].get("per_class", {})) if tests else []
        rows = [["class", *specs]]
        for key, published in table.published.items():
            if not isinstance(key, int):  # "total", or a range of classes
                label = "overall" if key == "total" else f"classes {key} (mean)"
            else:  # the class's id, and its name where that is not the id
                name = names[key] if key < len(names) else str(key)
                label = str(key) if name == str(key) else f"{key} {name}"
            cells = [label]
            for (column, spec), value in zip(specs.items(), published):
                ours = self._class_value(spec, key)
                diff = fmt_diff(ours.mean, value)
                shown = ours.text() if ours.values else self.missing(spec)
                cells.append(f"{shown} / {fmt(value)}" + (f" ({diff})" if diff else ""))
                self.csv_row(plan, table, f"{column}: {label}", "test_acc", value, ours, spec)
            rows.append(cells)
        note = f"Each cell: {self.ours} / published (difference), in %."
        if self.mixed_budgets:  # a column at a reduced budget or with another network is not the recipe
            by_budget: dict[str, list[str]] = {}
            for column, spec in specs.items():
                by_budget.setdefault(self.budget(spec), []).append(column)
            note += " Budget: " + "; ".join(f"{', '.join(c)}: {b}" for b, c in by_budget.items()) + "."
        return [f"### {table.title}", "", note, "", markdown_table(rows)]

    def cell(self, plan: ReportPlan, cell: Cell) -> Seeds:
        """Our value of a cell over the finished seeds of its run."""
        spec = plan.runs[cell.run]
        return self._class_value(spec, cell.key) if cell.key is not None else self.value(cell.metric, spec)

    def findings_table(self, plan: ReportPlan) -> list[str]:
        """The report's orderings, each with the published values, ours and whether ours agree; in
        results.csv, a row each: the published gap, ours, the noise (``ours_std``) and the verdict."""
        if not plan.findings:
            return []
        rows = [["finding", "published", "gap", self.ours, "gap", "verdict"]]
        for finding in plan.findings:
            sides = (finding.higher, finding.lower)
            high, low = (self.cell(plan, cell) for cell in sides)
            pub_high, pub_low = (plan.published(cell) for cell in sides)
            gap = None if high.mean is None or low.mean is None else high.mean - low.mean
            pub_gap = None if pub_high is None or pub_low is None else pub_high - pub_low
            if gap is None:  # the first side without a value, and why
                spec = next(plan.runs[c.run] for c, v in zip(sides, (high, low)) if v.mean is None)
                said, ours = f"{self.missing(spec)}: `{spec.name}`", "—"
            else:
                said, ours = verdict(high, low), f"{high.text()} vs {low.text()}"
            published = f"{fmt(pub_high)} vs {fmt(pub_low)}"
            rows.append([finding.claim, published, fmt_diff(pub_high, pub_low), ours,
                         fmt_diff(high.mean, low.mean), said])  # fmt: skip
            spec, stds = plan.runs[finding.higher.run], [s.std for s in (high, low) if s.std is not None]
            run = f"{finding.higher.run} > {finding.lower.run}"
            values = [plan.id, FINDINGS, finding.claim, "gap", pub_gap, gap, max(stds, default=None),
                      min(len(high.values), len(low.values)), None, None, said, self.budget(spec), run, "",
                      self.scale.name, self.source.name]  # fmt: skip
            self.rows.append(dict(zip(CSV_COLUMNS, values)))
        note = (f"The report's orderings, each as two of the numbers above, the higher first: published and "
                f"{self.ours} values in %, the gaps in points. The noise: twice the larger standard "
                "deviation of the two sides' seeds.")  # fmt: skip
        return ["### Findings", "", note, "", markdown_table(rows)]

    def figures_section(self, plan: ReportPlan) -> list[str]:
        statuses = read_json(self.runs_root / plan.id / ANALYSES_FILE) or {}
        lines = ["### Figures", ""] if plan.analyses else []
        for analysis in plan.analyses:
            entry = statuses.get(analysis.key) or {}
            gpu = [name for name in analysis.runs if self.scale.gpu_reason(plan.runs[name])]
            here = [name for name in self.scale.analysed(analysis, plan.runs) if name not in gpu]
            left = f"without {', '.join(gpu)}: needs a GPU at this scale; " if gpu and here else ""
            command = f"({left}`{entry.get('command', '')}`)"
            figures = [Path(f) for f in entry.get("figures", []) if Path(f).is_file()]
            if not entry:
                missing = ", ".join(name for name in here if not self.result(plan.runs[name]).finished)
                why = f"its run(s) {missing} have not finished" if missing else "not run yet"
                why = f"its run(s) {', '.join(gpu)} need a GPU at this scale" if gpu and not here else why
                own = self.scale.analysis_gpu_reason(plan.id, analysis)
                why = f"it needs a GPU at this scale: {own.rstrip('.')}" if own else why
                said = f"no figure, {why}."
            elif entry.get("status") != "done":
                said = f"{entry.get('status')}: {entry.get('reason', '')} {command}"
            # A tool that writes a table only (rebalance): its numbers are read into the tables.
            elif not BY_NAME[analysis.tool].figures:
                said = f"a table, read into the tables above {command}."
            elif not figures:
                said = f"the tool wrote no figure {command}."
            else:
                lines += [f"**{analysis.caption}** {command}", ""]
                for figure in figures:
                    destination = self.out_dir / "figures" / f"{plan.id}-{analysis.key}-{figure.name}"
                    self.figures.append((figure, destination))
                    lines += [f"![{analysis.caption}](figures/{destination.name})", ""]
                continue
            lines += [f"- *{analysis.caption}*: {said}", ""]
        return lines

    def runs_section(self, plan: ReportPlan) -> list[str]:
        rows = [["run", "status", "test accuracy (%)", "epochs", "training time (s)", "command (s)",
                 "device"]]  # fmt: skip
        commands, gpu = [], []
        for spec in plan.unique_runs():
            if self.scale.gpu_reason(spec):
                command = shlex.join(["litvision", "fit", f"--config={spec.config}", *spec.override_args()])
                gpu.append(f"- `{spec.name}`: {self.scale.gpu_reason(spec)} `{command}`")
                continue
            for r in self.seeded(spec):
                done = r.finished
                command_s = fmt(r.marker.get("wall_time_s") if done else None, accuracy=False)
                resumed = done and r.marker.get("resumed_from_checkpoint")
                rows.append([
                    f"`{r.spec.name}`", r.status, fmt(METRICS["test_acc"].value(r)),
                    r.info.get("epochs", (r.test or {}).get("epoch")) if done else "—",
                    r.training_time, f"{command_s} (last attempt)" if resumed else command_s, r.device or "—",
                ])  # fmt: skip
                commands += [f"# {r.spec.name}\n{r.marker['command']}"] if r.marker.get("command") else []
        again = shlex.join(["litvision", "reproduce", "run", plan.id, "--scale", self.scale.name,
                            "--data-source", self.source.name, "--only", f"{plan.id}/RUN"])  # fmt: skip
        lines = ["### Runs", "", "Training time: the fit (training and validation) from `run_info.json`, "
                 "over its sessions (of a session that was killed, up to its last checkpoint); "
                 "command: the whole `litvision fit`, start-up and test included (of a run resumed from its "
                 "checkpoint, only the attempt that finished it). One run again, its seeds "
                 f"and arguments as here, from a clone of the repository: `{again}`.", "",
                 markdown_table(rows)]  # fmt: skip
        if len(rows) == 1:  # every run needs a GPU at this scale
            lines = ["### Runs", ""]
        if gpu:
            lines += [f"Needs a GPU (not run at this scale; `make reproduce-{plan.id}` on a GPU box runs "
                      "every row at its recipe, or each alone with its command):", "", *gpu, ""]  # fmt: skip
        if commands:
            summary = "<summary>The command of each run (each an ordinary litvision run)</summary>"
            lines += [f"<details>{summary}", "", "```bash", *commands, "```", "", "</details>", ""]
        return lines
