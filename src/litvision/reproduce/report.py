"""The reproduction report: every table of the five reports with the published value, ours and the
difference, our figures, the hardware, wall times and commit, and where our protocol differs.

Written from the run directories alone (``test_results.json``, ``run_info.json``, TensorBoard events,
``analysis/``), so it can be regenerated at any time: ``litvision reproduce report``.
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

from litvision.analysis.cli import BY_NAME
from litvision.reproduce.data_sources import DATASETS, DataSource
from litvision.reproduce.plan import ReportPlan, RunSpec, Scale, Table, read_yaml
from litvision.reproduce.runner import (
    ANALYSES_FILE,
    LOG,
    MARKER,
    PLAIN_DIR,
    is_finished,
    last_error,
)
from litvision.utils import csv_text, git_state, markdown_table, read_json, read_scalars, write_text


@dataclass
class RunResult:
    """What a run directory holds, read lazily."""

    spec: RunSpec
    directory: Path

    @cached_property
    def marker(self) -> dict[str, Any]:
        return read_json(self.directory / MARKER) or {}

    @cached_property
    def test(self) -> dict[str, Any] | None:
        return read_json(self.directory / "test_results.json") if self.finished else None

    @cached_property
    def info(self) -> dict[str, Any]:
        return read_json(self.directory / "run_info.json") or {}

    @cached_property
    def plain(self) -> dict[str, Any] | None:
        return read_json(self.directory / PLAIN_DIR / "results.json")

    @cached_property
    def finished(self) -> bool:
        return is_finished(self.directory)

    @property
    def status(self) -> str:
        if self.finished:
            return "finished"
        if self.marker.get("status") == "failed":
            return f"failed: {self.marker.get('reason', 'see its log')}"
        if (self.directory / LOG).is_file():
            return f"unfinished: {last_error(self.directory / LOG)}"
        return "not run"

    @property
    def short_status(self) -> str:
        return self.status.split(":", 1)[0]

    @cached_property
    def scalars(self) -> dict[str, list[float]]:
        """The run's TensorBoard scalars by tag, in step order."""
        if not self.finished:
            return {}
        return {tag: [e.value for e in events] for tag, events in read_scalars(self.directory).items()}

    @property
    def wall_time_s(self) -> float | None:
        return self.info.get("wall_time_s") or self.marker.get("wall_time_s")

    @property
    def epochs(self) -> int | None:
        return self.info.get("epochs", (self.test or {}).get("epoch"))

    @property
    def device(self) -> str:
        device = self.info.get("device")
        if not device:
            return ""
        n = self.info.get("num_devices") or 1
        return f"{n} x {device}" if n > 1 else str(device)


def _pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


def _svm(result: RunResult, head: str) -> float | None:
    data = read_json(result.directory / "analysis" / "svm_head.json") if result.finished else None
    try:
        return 100 * float(data["heads"][head]["acc"])  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        return None


def _rebalanced(result: RunResult, method: str) -> float | None:
    """Test accuracy of a classifier re-balancing method (``litvision analyze rebalance``)."""
    data = read_json(result.directory / "analysis" / "rebalance.json") if result.finished else None
    try:
        return 100 * float(data["methods"][method]["acc"])  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        return None


def _shot_group(result: RunResult, group: str) -> float | None:
    """Mean test accuracy of the many-, medium- or few-shot classes (imbalanced runs only)."""
    try:
        return _pct(result.test["shot_groups"][group]["acc"])  # type: ignore[index]
    except (TypeError, KeyError):
        return None


@dataclass(frozen=True)
class Metric:
    header: str
    value: Callable[[RunResult], float | None]
    accuracy: bool = True  # a percentage: differences in points; otherwise no difference is shown


METRICS: dict[str, Metric] = {
    "test_acc": Metric("test accuracy (%)", lambda r: _pct(r.test["acc"]) if r.test else None),
    "test_acc_macro": Metric(
        "macro test accuracy (%)", lambda r: _pct(r.test["acc_macro"]) if r.test else None
    ),
    "train_acc": Metric(
        "training accuracy (%)",
        lambda r: _pct(r.scalars["train/acc"][-1]) if r.scalars.get("train/acc") else None,
    ),
    "val_acc_best": Metric(
        "best validation accuracy (%)",
        lambda r: _pct(max(r.scalars["val/acc"])) if r.scalars.get("val/acc") else None,
    ),
    "wall_time_s": Metric("time (s)", lambda r: r.wall_time_s if r.finished else None, accuracy=False),
    "svm_head_acc": Metric("test accuracy (%)", lambda r: _svm(r, "svm")),
    "crt_head_acc": Metric("test accuracy (%)", lambda r: _svm(r, "crt")),
    "test_many_shot": Metric("many-shot test accuracy (%)", lambda r: _shot_group(r, "many_shot")),
    "test_medium_shot": Metric("medium-shot test accuracy (%)", lambda r: _shot_group(r, "medium_shot")),
    "test_few_shot": Metric("few-shot test accuracy (%)", lambda r: _shot_group(r, "few_shot")),
    "posthoc_acc": Metric("test accuracy (%)", lambda r: _rebalanced(r, "posthoc")),
    "tau_norm_acc": Metric("test accuracy (%)", lambda r: _rebalanced(r, "tau_norm")),
    "lws_acc": Metric("test accuracy (%)", lambda r: _rebalanced(r, "lws")),
}


def fmt(value: float | None, accuracy: bool = True) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" if accuracy else f"{value:.0f}"


def fmt_diff(ours: float | None, published: float | None) -> str:
    return "" if ours is None or published is None else f"{ours - published:+.2f}"


@dataclass(frozen=True)
class Seeds:
    """A value over the seeds of one run: their mean, sample standard deviation and count."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if self.n > 1 else None

    def text(self, accuracy: bool = True) -> str:
        if self.mean is None:
            return "—"
        if self.std is None:
            return fmt(self.mean, accuracy)
        return f"{fmt(self.mean, accuracy)} ± {fmt(self.std, accuracy)} ({self.n} seeds)"


def git_commit() -> str:
    """The commit of the code that writes the report, and whether it had uncommitted changes."""
    state = git_state()
    if state["git_commit"] is None:
        return "unknown (not a git checkout)"
    return state["git_commit"][:7] + (" with uncommitted changes" if state["git_dirty"] else "")


def host() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
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
    rows: list[list[Any]] = field(default_factory=list)
    figures: list[tuple[Path, Path]] = field(default_factory=list)  # (source, destination)
    _results: dict[Path, RunResult] = field(default_factory=dict)

    def result(self, spec: RunSpec) -> RunResult:
        directory = self.runs_root / spec.report / spec.name
        if directory not in self._results:
            self._results[directory] = RunResult(spec, directory)
        return self._results[directory]

    def seeded(self, spec: RunSpec) -> list[RunResult]:
        """The results of every seed of a run."""
        return [self.result(spec.with_seed(k)) for k in range(self.scale.seed_count(spec, self.seeds))]

    def value(self, metric: str, spec: RunSpec) -> Seeds:
        """A metric over the finished seeds of a run."""
        values = (METRICS[metric].value(r) for r in self.seeded(spec))
        return Seeds(tuple(v for v in values if v is not None))

    def status(self, spec: RunSpec) -> str:
        """What stands in a cell without a value: why the run has none."""
        reason = self.scale.gpu_reason(spec)
        return "needs a GPU" if reason else self.result(spec).short_status

    @property
    def ours(self) -> str:
        if self.scale.scaled_down:
            return f"ours ({self.scale.name}, scaled down)"
        return "ours" if self.scale.name == "full" else f"ours ({self.scale.name})"

    def write(self) -> Path:
        """Write REPORT.md, results.csv and figures/ into ``out_dir``; returns REPORT.md's path."""
        body = [self.section(plan) for plan in self.plans]
        text = "\n".join([*self.header(), *body])
        self.out_dir.mkdir(parents=True, exist_ok=True)
        figures = self.out_dir / "figures"
        shutil.rmtree(figures, ignore_errors=True)
        for source, destination in self.figures:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
        header = ["report", "table", "row", "metric", "published", "ours", "ours_std", "seeds", "difference",
                  "plain_loop", "status", "budget", "run", "run_dir", "scale", "data_source"]  # fmt: skip
        write_text(self.out_dir / "results.csv", csv_text([header, *self.rows]))
        write_text(self.out_dir / "REPORT.md", text)
        return self.out_dir / "REPORT.md"

    # --- the parts ---------------------------------------------------------------------------------
    def header(self) -> list[str]:
        specs = [s for p in self.plans for s in p.unique_runs()]
        results = [r for s in specs for r in self.seeded(s) if not self.scale.gpu_reason(s)]
        to_gpu = [s for s in specs if self.scale.gpu_reason(s)]
        finished = [r for r in results if r.finished]
        failed = [r for r in results if r.short_status == "failed"]
        devices = sorted({r.device for r in finished if r.device})
        commits = sorted(
            {str(r.info.get("git_commit", ""))[:7] for r in finished if r.info.get("git_commit")}
        )
        wall = sum(r.wall_time_s or 0 for r in finished)
        command_wall = sum(r.marker.get("wall_time_s") or 0 for r in finished)
        cpu = sum(r.marker.get("cpu_time_s") or 0 for r in finished)
        lines = [f"# Reproduction of the five reports ({self.scale.name} scale)", ""]
        if self.scale.scaled_down:
            lines += [
                f'> **Scaled down: these are not reproductions.** Every "{self.ours}" value comes from a run '
                f"shrunk to check the pipeline: {self.scale.description}. Compare them with each other and "
                "with the plain-loop references, not with the published numbers; `make reproduce-all` on a "
                "GPU runs the reports' own recipes.",
                "",
            ]
        elif self.scale.name != "full":
            lines += [
                f"> **Scale {self.scale.name}**: {self.scale.description} Each row says its budget: "
                '"published recipe" rows ran at the report\'s own recipe on the real data; "reduced" rows '
                'at the budget stated; "needs a GPU" rows were not run here (their commands are listed).',
                "",
            ]
        datasets = sorted({DATASETS[k][0] for k in DATASETS})
        lines += [
            f"- Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')}"
            + (f" by `{self.command}`" if self.command else ""),
            f"- Code: litvision commit {git_commit()}"
            + (f"; runs made at commit(s) {', '.join(commits)}" if commits else ""),
            f"- Hardware: runs on {', '.join(devices) or 'no device recorded'}; host {host()}",
            f"- Data ({self.source.name}): " + "; ".join(f"{d}: {self.source.describe(d)}" for d in datasets),
            f"- Runs: {len(finished)} of {len(results)} finished, {len(failed)} failed"
            + (f", {len(to_gpu)} left to a GPU" if to_gpu else "")
            + "; in total "
            f"{wall / 60:.1f} minutes of training (the fits), {command_wall / 60:.1f} minutes of commands"
            + (f", {cpu / 60:.1f} minutes of CPU time" if cpu else ""),
            f"- Run directories: `{self.runs_root}/<report>/<run>/` (each an ordinary Lightning run: "
            "`config.yaml`, `checkpoints/`, `test_results.json`, `run_info.json`, TensorBoard events)",
            "",
            "Protocol, everywhere: the checkpoint tested is the one with the best accuracy on a validation "
            "split carved from the training set (seeded, stratified); the test set is never used to select "
            "a model or an epoch. Several reports selected on the test set; each section says where.",
            "",
        ]
        return lines + self.summary(results)

    def summary(self, results: list[RunResult]) -> list[str]:
        header = "| report | runs finished | table cells filled | mean \\|difference\\| (points) |"
        lines = ["## Summary", "", header, "| --- | --- | --- | --- |"]
        for plan in self.plans:
            runs = [r for s in plan.unique_runs() if not self.scale.gpu_reason(s) for r in self.seeded(s)]
            cells, diffs = 0, []
            total = 0
            for table in plan.tables:
                for ours, published, accuracy in self._cells(table, plan):
                    total += 1
                    cells += ours is not None
                    if accuracy and ours is not None and published is not None:
                        diffs.append(abs(ours - published))
            mean = f"{sum(diffs) / len(diffs):.2f}" if diffs else "—"
            lines.append(
                f"| [{plan.id}](#{plan.id}) {plan.title} | {sum(r.finished for r in runs)} / {len(runs)} "
                f"| {cells} / {total} | {mean} |"
            )
        return [*lines, ""]

    def _cells(self, table: Table, plan: ReportPlan) -> list[tuple[float | None, float | None, bool]]:
        cells = []
        if table.kind == "per_class":
            for key, published in table.published.items():
                for value, run in zip(published, table.columns.values()):
                    cells.append((self._class_value(plan.runs[run], key).mean, value, True))
            return cells
        for row in table.rows:
            for metric, published in zip(row.metrics, row.published):
                ours = self.value(metric, plan.runs[row.run]).mean
                cells.append((ours, published, METRICS[metric].accuracy))
        return cells

    def section(self, plan: ReportPlan) -> str:
        lines = [f'<a id="{plan.id}"></a>', f"## {plan.id}: {plan.title}", ""]
        if plan.source:
            lines += [f"Source: `{plan.source}`. Experiments: `{plan.path}`.", ""]
        notes = list(plan.notes) + self.scale.notes.get(plan.id, [])
        notes += self.automatic_notes(plan)
        if notes:
            lines += ["Where our protocol differs:", "", *(f"- {n}" for n in notes), ""]
        for table in plan.tables:
            lines += (
                self.per_class_table(plan, table)
                if table.kind == "per_class"
                else self.runs_table(plan, table)
            )
        lines += self.figures_section(plan)
        lines += self.runs_section(plan)
        return "\n".join(lines)

    def automatic_notes(self, plan: ReportPlan) -> list[str]:
        notes = []
        random_init = [
            f"`{spec.name}`"
            for spec in plan.unique_runs()
            if self.source.replaces_pretrained(read_yaml(spec.config, "config"))
        ]
        if random_init:
            verb, whose = (
                ("starts", "its config asks") if len(random_init) == 1 else ("start", "their configs ask")
            )
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
        budgets = self.scale.name != "full" and not self.scale.scaled_down
        header = ["row"]
        for metric in table.metrics:
            m = METRICS[metric]
            header += [f"{m.header}: published", self.ours] + (["difference"] if m.accuracy else [])
        if plain:
            header += ["plain loop (%)", "ours - plain loop"]
        header += ["budget"] if budgets else []
        header += ["run"]
        rows = [header]
        for row in table.rows:
            spec = plan.runs[row.run]
            result = self.result(spec)
            plain_value = _pct(result.plain["acc"]) if result.plain else None
            cells = [row.label]
            for metric, published in zip(row.metrics, row.published):
                m = METRICS[metric]
                ours = self.value(metric, spec)
                cells += [fmt(published, m.accuracy), ours.text(m.accuracy) if ours.n else self.status(spec)]
                cells += [fmt_diff(ours.mean, published)] if m.accuracy else []
                reference = plain_value if metric == "test_acc" else None
                self.csv_row(plan, table, row.label, metric, published, ours, spec, m.accuracy, reference)
            if plain:
                no_reference = "—" if self.scale.has_plain_reference(spec) else "n/a"
                test = METRICS["test_acc"].value(result)
                cells += [
                    fmt(plain_value) if plain_value is not None else no_reference,
                    fmt_diff(test, plain_value),
                ]
            cells += [self.scale.budget(spec) if not self.scale.gpu_reason(spec) else "—"] if budgets else []
            cells.append(f"`{spec.name}`")
            rows.append(cells)
        return [f"### {table.title}", "", markdown_table(rows)]

    def csv_row(
        self,
        plan: ReportPlan,
        table: Table,
        label: str,
        metric: str,
        published: float | None,
        ours: Seeds,
        spec: RunSpec,
        accuracy: bool = True,
        plain: float | None = None,
    ) -> None:
        """A row of results.csv; the difference (accuracies only) is empty where a value is missing."""
        mean = ours.mean
        diff = None if mean is None or published is None or not accuracy else round(mean - published, 2)
        budget = "needs a GPU" if self.scale.gpu_reason(spec) else self.scale.budget(spec)
        self.rows.append([
            plan.id, table.title, label, metric, published, _round(mean), _round(ours.std), ours.n, diff,
            _round(plain), self.status(spec), budget, spec.name, str(self.result(spec).directory),
            self.scale.name, self.source.name,
        ])  # fmt: skip

    def _class_value(self, spec: RunSpec, key: Any) -> Seeds:
        """A class's test accuracy (or the overall one, ``total``) over the seeds of a run."""
        values = []
        for result in self.seeded(spec):
            if result.test is None:
                continue
            per_class = list(result.test["per_class"].values())
            if key == "total":
                values.append(100 * result.test["acc"])
            elif 0 <= key < len(per_class):
                values.append(100 * per_class[key]["acc"])
        return Seeds(tuple(values))

    def per_class_table(self, plan: ReportPlan, table: Table) -> list[str]:
        specs = {label: plan.runs[run] for label, run in table.columns.items()}
        tests = [r.test for spec in specs.values() for r in self.seeded(spec) if r.test]
        names: list[str] = list(tests[0]["per_class"]) if tests else []
        header = ["class", *specs]
        rows = [header]
        for key, published in table.published.items():
            name = names[key] if key != "total" and key < len(names) else str(key)
            label = "overall" if key == "total" else str(key) if name == str(key) else f"{key} {name}"
            cells = [label]
            for (column, spec), value in zip(specs.items(), published):
                ours = self._class_value(spec, key)
                shown = ours.text() if ours.n else self.status(spec)
                diff = fmt_diff(ours.mean, value)
                cells.append(f"{shown} / {fmt(value)}" + (f" ({diff})" if diff else ""))
                self.csv_row(plan, table, f"{column}: {label}", "test_acc", value, ours, spec)
            rows.append(cells)
        note = f"Each cell: {self.ours} / published (difference), in %."
        return [f"### {table.title}", "", note, "", markdown_table(rows)]

    def figures_section(self, plan: ReportPlan) -> list[str]:
        statuses = read_json(self.runs_root / plan.id / ANALYSES_FILE) or {}
        lines = ["### Figures", ""] if plan.analyses else []
        for analysis in plan.analyses:
            entry = statuses.get(analysis.key)
            runs = [self.result(plan.runs[name]) for name in analysis.runs]
            if entry is None:
                missing = [r.spec.name for r in runs if not r.finished]
                why = f"its run(s) {', '.join(missing)} have not finished" if missing else "not run yet"
                lines += [f"- *{analysis.caption}*: no figure, {why}.", ""]
                continue
            if entry.get("status") != "done":
                lines += [f"- *{analysis.caption}*: {entry.get('status')}: {entry.get('reason', '')} "
                          f"(`{entry.get('command', '')}`)", ""]  # fmt: skip
                continue
            figures = [Path(f) for f in entry.get("figures", []) if Path(f).is_file()]
            if not BY_NAME[analysis.tool].figures:  # a table only (rebalance): its numbers are in the tables
                lines += [f"- *{analysis.caption}*: a table, read into the tables above "
                          f"(`{entry.get('command', '')}`).", ""]  # fmt: skip
                continue
            if not figures:
                lines += [
                    f"- *{analysis.caption}*: the tool wrote no figure (`{entry.get('command', '')}`).",
                    "",
                ]
                continue
            lines += [f"**{analysis.caption}** (`{entry.get('command', '')}`)", ""]
            for figure in figures:
                destination = self.out_dir / "figures" / f"{plan.id}-{analysis.key}-{figure.name}"
                self.figures.append((figure, destination))
                lines += [f"![{analysis.caption}](figures/{destination.name})", ""]
        return lines

    def runs_section(self, plan: ReportPlan) -> list[str]:
        lines = [
            "### Runs",
            "",
            "Training time: the fit (training and validation) from `run_info.json`; command: the whole "
            "`litvision fit`, start-up and test included.",
            "",
            "| run | status | test accuracy (%) | epochs | training time (s) | command (s) | device |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        commands, gpu = [], []
        for base in plan.unique_runs():
            reason = self.scale.gpu_reason(base)
            if reason:
                command = shlex.join(["litvision", "fit", f"--config={base.config}", *base.override_args()])
                gpu.append(f"- `{base.name}`: {reason} `{command}`")
                continue
            for r in self.seeded(base):
                acc = METRICS["test_acc"].value(r)
                wall = r.wall_time_s if r.finished else None
                command_s = r.marker.get("wall_time_s") if r.finished else None
                lines.append(
                    f"| `{r.spec.name}` | {r.status} | {fmt(acc)} | {r.epochs if r.finished else '—'} "
                    f"| {fmt(wall, accuracy=False)} | {fmt(command_s, accuracy=False)} | {r.device or '—'} |"
                )
                command = r.marker.get("command")
                if command:
                    commands.append(f"# {r.spec.name}\n{command}")
        lines.append("")
        if gpu:
            lines += [f"Needs a GPU (not run at this scale; `make reproduce-{plan.id}` on a GPU box runs "
                      "every row at its recipe, or each alone with its command):", "", *gpu, ""]  # fmt: skip
        if commands:
            summary = "<summary>The command of each run (each an ordinary litvision run)</summary>"
            lines += [f"<details>{summary}", "", "```bash", *commands, "```", "", "</details>", ""]
        return lines


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
