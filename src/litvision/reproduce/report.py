"""The reproduction report, read from the run directories alone (``litvision reproduce report``).

First the records, one per table cell and seed of its run (``results.csv``); then ``REPORT.md``
rendered from them: each table with the published value, ours and the difference, the findings and
whether ours agree (``findings.csv``), our figures, the hardware, wall times and commit. Its fixed
sentences: ``report.yaml``.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import shlex
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from litvision.analysis.cli import BY_NAME
from litvision.data.sources import DATASETS, DataSource
from litvision.launch.pool import INTERRUPTED, MARKER, last_error
from litvision.parsing import options
from litvision.reproduce.plan import Cell, Finding, Plan, Run, Scale, Table
from litvision.reproduce.runner import PLAIN_DIR, epochs_trained, is_finished
from litvision.utils import (
    csv_text,
    git_state,
    lookup,
    markdown_table,
    now,
    read_json,
    read_scalars,
    read_yaml,
    write_text,
)

TEXT = yaml.safe_load(Path(__file__).with_name("report.yaml").read_text())
TEST, PLAIN = "test_results.json", f"{PLAIN_DIR}/results.json"
SVM, REBALANCE = "analysis/svm_head.json", "analysis/rebalance.json"
AGAIN = "it resumes from its last checkpoint at the next `litvision reproduce run`"


@dataclass
class RunDir:
    """What a run directory holds, each file read once."""

    run: Run
    path: Path

    @cached_property
    def marker(self) -> dict[str, Any]:
        return read_json(self.path / MARKER) or {}

    @cached_property
    def info(self) -> dict[str, Any]:
        return read_json(self.path / "run_info.json") or {}

    @cached_property
    def finished(self) -> bool:
        return is_finished(self.path)

    @cached_property
    def test(self) -> dict[str, Any] | None:
        return read_json(self.path / TEST) if self.finished else None

    @cached_property
    def scalars(self) -> dict[str, list[float]]:
        """The run's TensorBoard scalars by tag, in step order (none before the run has finished)."""
        events = read_scalars(self.path) if self.finished else {}
        return {tag: [e.value for e in tag_events] for tag, tag_events in events.items()}

    def number(self, file: str, path: str) -> float | None:
        """The number at the dotted ``path`` of the finished run's JSON file ``file``, if there is one."""
        value = lookup(read_json(self.path / file) or {}, path)[1] if self.finished else None
        return value if isinstance(value, (int, float)) else None

    @cached_property
    def status(self) -> str:
        status = self.marker.get("status")
        if self.finished:
            return "finished"
        if status == "failed":
            return f"failed: {self.marker.get('reason', 'see its log')}"
        if status == INTERRUPTED:
            return f"{INTERRUPTED}: {AGAIN}"
        if (self.path / "checkpoints" / "last.ckpt").is_file():  # running, or its runner was stopped
            return f"unfinished: {epochs_trained(self.path)} epoch(s) trained; {AGAIN}"
        log = self.path / "reproduce.log"
        return f"unfinished: {last_error(log)}" if log.is_file() else "not run"

    @property
    def wall_time_s(self) -> float | None:
        return self.info.get("wall_time_s") or self.marker.get("wall_time_s")

    @property
    def training_time(self) -> str:
        """The fit's seconds over its sessions, and how many sessions ended with no time recorded."""
        untimed = sum("wall_time_s" not in s for s in self.info.get("sessions", []))
        seconds = fmt(self.wall_time_s if self.finished else None, accuracy=False)
        return f"{seconds} (+ {untimed} session(s) not timed)" if self.finished and untimed else seconds

    @property
    def device(self) -> str:
        device, n = self.info.get("device") or "", self.info.get("num_devices") or 1
        return f"{n} x {device}" if device and n > 1 else str(device)


def pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


@dataclass(frozen=True)
class Metric:
    header: str
    value: Callable[[RunDir], float | None]
    accuracy: bool = True  # a percentage: differences in points; otherwise no difference is shown


def at(file: str, path: str, header: str = "test accuracy (%)") -> Metric:
    """An accuracy read from a finished run's JSON file, in %."""
    return Metric(header, lambda run: pct(run.number(file, path)))


METRICS: dict[str, Metric] = {
    "test_acc": at(TEST, "acc"),
    "test_acc_macro": at(TEST, "acc_macro", "macro test accuracy (%)"),
    "train_acc": Metric("training accuracy (%)", lambda r: pct(r.scalars.get("train/acc", [None])[-1])),
    "val_acc_best": Metric(
        "best validation accuracy (%)", lambda r: pct(max(r.scalars.get("val/acc", [None])))
    ),
    "wall_time_s": Metric("time (s)", lambda r: r.wall_time_s if r.finished else None, accuracy=False),
    "svm_head_acc": at(SVM, "heads.svm.acc"),
    "crt_head_acc": at(SVM, "heads.crt.acc"),
    "test_many_shot": at(TEST, "shot_groups.many_shot.acc", "many-shot test accuracy (%)"),
    "test_medium_shot": at(TEST, "shot_groups.medium_shot.acc", "medium-shot test accuracy (%)"),
    "test_few_shot": at(TEST, "shot_groups.few_shot.acc", "few-shot test accuracy (%)"),
    # litvision analyze rebalance
    **{f"{m}_acc": at(REBALANCE, f"methods.{m}.acc") for m in ("posthoc", "tau_norm", "lws", "crt")},
}


def fmt(value: float | None, accuracy: bool = True) -> str:
    return "—" if value is None else f"{value:.{2 if accuracy else 0}f}"


def difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def fmt_diff(ours: float | None, published: float | None) -> str:
    gap = difference(ours, published)
    return "" if gap is None else f"{round(gap, 2) + 0.0:+.2f}"  # + 0.0: no -0.00


@dataclass
class Record:
    """One number of the report: a table cell from one seed of its run (a row of results.csv)."""

    report: str
    table: str
    row: str
    metric: str
    classes: str  # a per-class table's class id, range of ids or total
    seed: int
    published: float | None
    ours: float | None
    plain_loop: float | None  # the plain-loop reference's test accuracy (seed 0, runs tables)
    status: str  # finished, no value yet, needs a GPU, failed, not run, ...
    budget: str
    run: str
    run_dir: str
    scale: str
    data_source: str


@dataclass(frozen=True)
class Seeds:
    """A cell over the seeds of its run: the mean, sample standard deviation and count of its values."""

    values: tuple[float, ...]
    asked: int  # the seeds the scale trains (more than the values: some have not finished)
    missing: str  # why there is no value (the first seed's status)

    @classmethod
    def of(cls, records: list[Record]) -> Seeds:
        return cls(tuple(r.ours for r in records if r.ours is not None), len(records), records[0].status)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def text(self, accuracy: bool = True) -> str:
        n, mean = len(self.values), fmt(self.mean, accuracy)
        if not n or (self.std is None and n >= self.asked):
            return mean if n else self.missing
        count = f"{n} seeds" if n >= self.asked else f"{n} of {self.asked} seeds"
        return f"{mean} ({count})" if self.std is None else f"{mean} ± {fmt(self.std, accuracy)} ({count})"


def noise(*sides: Seeds) -> float | None:
    """The larger standard deviation over the seeds of the sides (None: one seed each)."""
    return max((s.std for s in sides if s.std is not None), default=None)


VERDICTS = {  # (ours in the published order, the gap beyond twice the noise)
    (True, True): "confirmed, beyond the noise",
    (True, False): "same direction, within the noise",
    (False, True): "reversed, beyond the noise",
    (False, False): "not confirmed, within the noise",
}


def verdict(higher: Seeds, lower: Seeds) -> str:
    """Whether our values put ``higher`` above ``lower``, and whether the gap is beyond the noise."""
    gap, spread = higher.mean - lower.mean, noise(higher, lower)
    if spread is None:
        return ("confirmed" if gap > 0 else "not confirmed") + " (one seed each: the noise is not measured)"
    said = VERDICTS[gap > 0, abs(gap) > 2 * spread]
    return f"{said} (2 x {spread:.2f}: twice the seeds' standard deviation)"


def host() -> str:
    try:
        model = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        model = None
    cpu = model.group(1).strip() if model else platform.processor() or platform.machine()
    return f"{platform.node()}: {os.cpu_count()} CPU cores ({cpu}), {platform.system()} {platform.release()}"


@dataclass
class Report:
    """The report of some plans at one scale: records read from the runs, then rendered."""

    plans: list[Plan]
    scale: Scale
    source: DataSource
    runs_root: Path  # RUNS/<scale>
    out_dir: Path
    command: str = ""
    seeds: int | None = None  # seeds per run (None: the scale's)

    def __post_init__(self) -> None:
        self.dirs: dict[Path, RunDir] = {}
        scaled = "ours" if self.scale.name == "full" else f"ours ({self.scale.name})"
        self.ours = f"ours ({self.scale.name}, scaled down)" if self.scale.scaled_down else scaled
        # A scale that keeps some recipes and reduces others (cpu): each row says its budget.
        self.mixed = self.scale.name != "full" and not self.scale.scaled_down

    def seeded(self, run: Run) -> list[RunDir]:
        """The directories of every seed of a run."""
        seeds = [run.with_seed(k) for k in range(self.scale.seed_count(run, self.seeds))]
        paths = [self.runs_root / run.report / r.name for r in seeds]
        return [self.dirs.setdefault(p, RunDir(r, p)) for r, p in zip(seeds, paths)]

    def trained_here(self, plans: list[Plan]) -> list[RunDir]:
        """Every seed of every run of ``plans`` that this scale trains here (not left to a GPU)."""
        runs = [run for p in plans for run in p.unique_runs() if not self.scale.gpu_reason(run)]
        return [d for run in runs for d in self.seeded(run)]

    # --- the records -------------------------------------------------------------------------------
    def table_cells(self, plan: Plan, table: Table) -> list[tuple[str, Cell, float | None]]:
        """A table's cells: (row label, what it shows, the published value); a per-class table's row
        labels name the column first ("Combined: 3 cat")."""
        if table.kind == "runs":
            return [
                (row.label, Cell(row.run, m), p)
                for row in table.rows
                for m, p in zip(row.metrics, row.published)
            ]
        return [
            (f"{column}: {self.class_label(plan, key)}", Cell(run, "test_acc", key), p)
            for key, values in table.published.items()
            for (column, run), p in zip(table.columns.items(), values)
        ]

    def value(self, run: RunDir, cell: Cell) -> float | None:
        """A cell's value in one run: a metric, or the test accuracy of a class (``total``: overall;
        ``"A-B"``: the mean of classes A to B)."""
        if cell.classes is None:
            return METRICS[cell.metric].value(run)
        if run.test is None:
            return None
        if cell.classes == "total":
            return 100 * run.test["acc"]
        first, _, last = str(cell.classes).partition("-")
        classes = list(run.test.get("per_class", {}).values())
        span = range(int(first), int(last or first) + 1)
        return 100 * statistics.fmean(classes[k]["acc"] for k in span) if span[-1] < len(classes) else None

    @cached_property
    def records(self) -> list[Record]:
        """Every table cell of the plans, one record per seed of its run."""
        records, where = [], (self.scale.name, self.source.name)
        for plan, table in ((p, t) for p in self.plans for t in p.tables):
            for label, cell, published in self.table_cells(plan, table):
                run, classes = plan.runs[cell.run], "" if cell.classes is None else str(cell.classes)
                key, gpu = (plan.id, table.title, label, cell.metric, classes), self.scale.gpu_reason(run)
                for k, result in enumerate(self.seeded(run)):
                    ours = None if gpu else self.value(result, cell)
                    status = "needs a GPU" if gpu else result.status.split(":", 1)[0]
                    status = "no value yet" if status == "finished" and ours is None else status
                    plain = cell.metric == "test_acc" and not classes and not k  # the runs tables' seed 0
                    plain_acc = pct(result.number(PLAIN, "acc")) if plain else None
                    about = (status, self.scale.budget(run), run.name, str(result.path), *where)
                    records.append(Record(*key, k, published, ours, plain_acc, *about))
        return records

    @cached_property
    def cells(self) -> dict[tuple, list[Record]]:
        """The records of each table cell: (report, table, row, metric) -> one per seed."""
        cells: dict[tuple, list[Record]] = {}
        for r in self.records:
            cells.setdefault((r.report, r.table, r.row, r.metric), []).append(r)
        return cells

    def class_label(self, plan: Plan, key: int | str) -> str:
        """A per-class table's row: a class's id and name (where it is not the id), a range, or overall."""
        if not isinstance(key, int):
            return "overall" if key == "total" else f"classes {key} (mean)"
        tested = (d.test for r in plan.unique_runs() for d in self.seeded(r) if d.test)
        names = list(next(tested, {}).get("per_class", {}))
        name = names[key] if key < len(names) else str(key)
        return str(key) if name == str(key) else f"{key} {name}"

    def seeds_of(self, plan: Plan, cell: Cell) -> Seeds:
        """A finding's cell over its run's seeds, from the first table that shows it."""
        classes = "" if cell.classes is None else str(cell.classes)
        key = (plan.id, plan.runs[cell.run].name, cell.metric, classes)
        return Seeds.of(
            next(v for v in self.cells.values() if (v[0].report, v[0].run, v[0].metric, v[0].classes) == key)
        )

    def judge(self, plan: Plan, finding: Finding) -> tuple[Seeds, Seeds, str]:
        """Both sides of a finding and the verdict (or why there is none: the first side without a
        value, and its run)."""
        high, low = self.seeds_of(plan, finding.higher), self.seeds_of(plan, finding.lower)
        if high.mean is not None and low.mean is not None:
            return high, low, verdict(high, low)
        side, cell = (high, finding.higher) if high.mean is None else (low, finding.lower)
        return high, low, f"{side.missing}: `{plan.runs[cell.run].name}`"

    # --- the files ---------------------------------------------------------------------------------
    def write(self) -> Path:
        """Write REPORT.md, results.csv, findings.csv and figures/ into ``out_dir``; return REPORT.md."""
        figures: list[tuple[Path, Path]] = []
        body = [self.section(plan, figures) for plan in self.plans]
        shutil.rmtree(self.out_dir / "figures", ignore_errors=True)
        for source, destination in figures:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
        rounded = lambda row: [round(v, 2) if isinstance(v, float) else v for v in row]  # noqa: E731
        columns = [f.name for f in dataclasses.fields(Record)]
        records = [columns, *map(rounded, map(dataclasses.astuple, self.records))]
        write_text(self.out_dir / "results.csv", csv_text(records))
        findings = [["report", "finding", "published_gap", "ours_gap", "verdict", "noise", "seeds"]]
        for plan in self.plans:
            for finding in plan.findings:
                high, low, said = self.judge(plan, finding)
                published = difference(plan.published(finding.higher), plan.published(finding.lower))
                seeds = min(len(high.values), len(low.values))
                gap, spread = difference(high.mean, low.mean), noise(high, low)
                findings.append([plan.id, finding.claim, *rounded([published, gap, said, spread, seeds])])
        write_text(self.out_dir / "findings.csv", csv_text(findings))
        write_text(self.out_dir / "REPORT.md", "\n".join([*self.header(), *self.summary(), *body]))
        return self.out_dir / "REPORT.md"

    def header(self) -> list[str]:
        results = self.trained_here(self.plans)
        done = [r for r in results if r.finished]
        what = "the five reports" if len(self.plans) > 1 else self.plans[0].title
        lines = [f"# Reproduction of {what} ({self.scale.name} scale)", ""]
        plain = [r for r in done if self.scale.has_plain_reference(r.run)]  # references trained after runs
        plain_done = sum(r.number(PLAIN, "acc") is not None for r in plain)
        if len(done) < len(results) or plain_done < len(plain):
            left = f", {plain_done} of {len(plain)} plain-loop references" if plain else ""
            lines += [TEXT["partial"].format(finished=len(done), total=len(results), plain=left), ""]
        if self.scale.scaled_down or self.mixed:
            text = TEXT["scaled_down" if self.scale.scaled_down else "mixed"]
            text = text.format(ours=self.ours, scale=self.scale.name, description=self.scale.description)
            lines += [text, ""]
        git = git_state()
        commits = sorted({str(r.info["git_commit"])[:7] for r in done if r.info.get("git_commit")})
        code = git["git_commit"][:7] if git["git_commit"] else "unknown (not a git checkout)"
        code += " with uncommitted changes" if git["git_dirty"] else ""
        code += f"; runs made at commit(s) {', '.join(commits)}" if commits else ""
        devices = ", ".join(sorted({r.device for r in done if r.device})) or "no device recorded"
        datasets = sorted({dataset for dataset, _ in DATASETS.values()})
        data = "; ".join(f"{d}: {self.source.describe(d)}" for d in datasets)
        failed = sum(r.status.startswith("failed") for r in results)
        to_gpu = sum(bool(self.scale.gpu_reason(run)) for plan in self.plans for run in plan.unique_runs())
        wall = sum(r.wall_time_s or 0 for r in done) / 60
        command_wall = sum(r.marker.get("wall_time_s") or 0 for r in done) / 60
        cpu = sum(r.marker.get("cpu_time_s") or 0 for r in done) / 60
        return lines + [
            f"- Generated {now()}" + (f" by `{self.command}`" if self.command else ""),
            f"- Code: litvision commit {code}",
            f"- Hardware: runs on {devices}; host {host()}",
            f"- Data ({self.source.name}): {data}",
            f"- Runs: {len(done)} of {len(results)} finished, {failed} failed"
            + (f", {to_gpu} left to a GPU" if to_gpu else "")
            + f"; in total {wall:.1f} minutes of training (the fits), {command_wall:.1f} minutes of commands"
            + (f", {cpu:.1f} minutes of CPU time" if cpu else ""),
            TEXT["run_directories"].format(root=self.runs_root),
            "",
            TEXT["protocol"],
            "",
        ]

    def summary(self) -> list[str]:
        """A line per report: its runs, cells, mean difference (at the cpu scale: of the published recipes
        only) and findings."""
        recipes = ", published recipes" if self.mixed else ""
        header = ["report", "runs finished", "table cells filled", f"mean \\|difference\\|{recipes} (points)"]
        rows = [[*header, "findings confirmed"]]
        for plan in self.plans:
            runs = self.trained_here([plan])
            cells = [(Seeds.of(v), v[0]) for v in self.cells.values() if v[0].report == plan.id]
            diffs = [
                abs(seeds.mean - r.published)
                for seeds, r in cells
                if seeds.mean is not None and r.published is not None and METRICS[r.metric].accuracy
                if not self.mixed or r.budget == "published recipe"
            ]
            judged = [self.judge(plan, f) for f in plan.findings]
            verdicts = [said for high, low, said in judged if None not in (high.mean, low.mean)]
            gpu = sum(said.startswith("needs a GPU") for *_, said in judged)
            left = [(len(judged) - len(verdicts) - gpu, "waiting for runs"), (gpu, "needing a GPU")]
            left = "; ".join(f"{n} {what}" for n, what in left if n)
            confirmed = f"{sum(v.startswith('confirmed') for v in verdicts)} of {len(verdicts)}"
            filled = f"{sum(seeds.mean is not None for seeds, _ in cells)} / {len(cells)}"
            finished = f"{sum(r.finished for r in runs)} / {len(runs)}"
            mean = f"{statistics.fmean(diffs):.2f}" if diffs else "—"
            findings = (confirmed + (f" ({left})" if left else "")) if judged else "—"
            rows.append([f"[{plan.id}](#{plan.id}) {plan.title}", finished, filled, mean, findings])
        return ["## Summary", "", markdown_table(rows)]

    # --- a report's section --------------------------------------------------------------------------
    def section(self, plan: Plan, figures: list[tuple[Path, Path]]) -> str:
        lines = [f'<a id="{plan.id}"></a>', f"## {plan.id}: {plan.title}", ""]
        if plan.source:
            lines += [f"Source: `{plan.source}`. Experiments: `{plan.path}`.", ""]
        notes = [*plan.notes, *self.scale.notes.get(plan.id, []), *self.automatic_notes(plan)]
        if notes:
            lines += ["Where our protocol differs:", "", *(f"- {n}" for n in notes), ""]
        for table in plan.tables:
            lines += (self.per_class_table if table.kind == "per_class" else self.runs_table)(plan, table)
        lines += self.findings_table(plan) + self.figures_section(plan, figures) + self.runs_section(plan)
        return "\n".join(lines)

    def automatic_notes(self, plan: Plan) -> list[str]:
        notes, runs = [], plan.unique_runs()
        # Runs trained here with their config's own network (a scale may train another in its place).
        own = [
            r
            for r in runs
            if not self.scale.gpu_reason(r) and "model.backbone" not in self.scale.arguments(r)
        ]
        configs = {r.name: read_yaml(r.config, "config") for r in own}
        random = [f"`{name}`" for name, config in configs.items() if self.source.replaces_pretrained(config)]
        if random:
            one = len(random) == 1
            runs_text = f"{', '.join(random)} {'starts' if one else 'start'}"
            whose = "its config asks" if one else "their configs ask"
            notes.append(TEXT["random_weights"].format(runs=runs_text, whose=whose))
        if any(self.scale.has_plain_reference(r) for r in runs):
            notes.append(TEXT["plain_loop"])
        return notes

    def runs_table(self, plan: Plan, table: Table) -> list[str]:
        plain = any(self.scale.has_plain_reference(plan.runs[row.run]) for row in table.rows)
        header = ["row"]
        for metric in map(METRICS.get, table.metrics):
            header += [f"{metric.header}: published", self.ours] + (["difference"] if metric.accuracy else [])
        header += ["plain loop (%)", "ours - plain loop"] if plain else []
        rows = [header + (["budget"] if self.mixed else []) + ["run"]]
        for row in table.rows:
            run, cells = plan.runs[row.run], [row.label]
            for metric, published in zip(row.metrics, row.published):
                accuracy = METRICS[metric].accuracy
                ours = Seeds.of(self.cells[plan.id, table.title, row.label, metric])
                cells += [fmt(published, accuracy), ours.text(accuracy)]
                cells += [fmt_diff(ours.mean, published)] if accuracy else []
            if plain:
                first = self.seeded(run)[0]
                reference = pct(first.number(PLAIN, "acc"))
                missing = "—" if self.scale.has_plain_reference(run) else "n/a"
                cells += [fmt(reference) if reference is not None else missing]
                cells += [fmt_diff(METRICS["test_acc"].value(first), reference)]
            if self.mixed:
                cells += ["—" if self.scale.gpu_reason(run) else self.scale.budget(run)]
            rows.append([*cells, f"`{run.name}`"])
        return [f"### {table.title}", "", markdown_table(rows)]

    def per_class_table(self, plan: Plan, table: Table) -> list[str]:
        rows = [["class", *table.columns]]
        for key, values in table.published.items():
            cells = [self.class_label(plan, key)]
            for column, published in zip(table.columns, values):
                ours = Seeds.of(self.cells[plan.id, table.title, f"{column}: {cells[0]}", "test_acc"])
                diff = fmt_diff(ours.mean, published)
                cells.append(f"{ours.text()} / {fmt(published)}" + (f" ({diff})" if diff else ""))
            rows.append(cells)
        note = TEXT["per_class"].format(ours=self.ours)
        if self.mixed:  # a column at a reduced budget or with another network is not the recipe
            by_budget: dict[str, list[str]] = {}
            for column, run in table.columns.items():
                by_budget.setdefault(self.scale.budget(plan.runs[run]), []).append(column)
            note += " Budget: " + "; ".join(f"{', '.join(c)}: {b}" for b, c in by_budget.items()) + "."
        return [f"### {table.title}", "", note, "", markdown_table(rows)]

    def findings_table(self, plan: Plan) -> list[str]:
        """The report's orderings, each with the published values, ours and whether ours agree."""
        rows = [["finding", "published", "gap", self.ours, "gap", "verdict"]]
        for finding in plan.findings:
            high, low, said = self.judge(plan, finding)
            pub_high, pub_low = plan.published(finding.higher), plan.published(finding.lower)
            ours = "—" if None in (high.mean, low.mean) else f"{high.text()} vs {low.text()}"
            published = f"{fmt(pub_high)} vs {fmt(pub_low)}"
            gaps = fmt_diff(pub_high, pub_low), fmt_diff(high.mean, low.mean)
            rows.append([finding.claim, published, gaps[0], ours, gaps[1], said])
        note = TEXT["findings"].format(ours=self.ours)
        return ["### Findings", "", note, "", markdown_table(rows)] if plan.findings else []

    def figures_section(self, plan: Plan, figures: list[tuple[Path, Path]]) -> list[str]:
        """Each analysis's figures (added to ``figures``: their copies), or why there are none."""
        lines = ["### Figures", ""] if plan.analyses else []
        older = read_json(self.runs_root / plan.id / "analyses.json") or {}  # runs made before the markers
        for analysis in plan.analyses:
            marker = read_json(self.runs_root / plan.id / "analysis" / f"{analysis.key}.json")
            entry, tool = marker or older.get(analysis.key) or {}, BY_NAME[analysis.tool]
            gpu = [name for name in analysis.runs if self.scale.gpu_reason(plan.runs[name])]
            here = [name for name in self.scale.analysed(analysis, plan.runs) if name not in gpu]
            left = f"without {', '.join(gpu)}: needs a GPU at this scale; " if gpu and here else ""
            command = f"({left}`{entry.get('command', '')}`)"
            output = Path(entry.get("output", "-"))  # older entries list their figures
            found = sorted(str(p) for pattern in tool.figures for p in output.glob(pattern))
            found = found or [f for f in entry.get("figures", []) if Path(f).is_file()]
            if not entry:  # why: it or every run it reads needs a GPU here, or its runs have not finished
                own = None if analysis.runs else self.scale.gpu_reason(f"{plan.id}/{analysis.key}")
                unfinished = ", ".join(n for n in here if not self.seeded(plan.runs[n])[0].finished)
                why = f"its run(s) {unfinished} have not finished" if unfinished else "not run yet"
                why = f"its run(s) {', '.join(gpu)} need a GPU at this scale" if gpu and not here else why
                why = f"it needs a GPU at this scale: {own.rstrip('.')}" if own else why
                said = f"no figure, {why}."
            elif entry.get("status") not in ("finished", "done"):
                said = f"{entry.get('status')}: {entry.get('reason', '')} {command}"
            elif not tool.figures:  # a tool that writes a table only (rebalance): read into the tables
                said = f"a table, read into the tables above {command}."
            elif not found:
                said = f"the tool wrote no figure {command}."
            else:
                lines += [f"**{analysis.caption}** {command}", ""]
                for figure in map(Path, found):
                    name = f"{plan.id}-{analysis.key}-{figure.name}"
                    figures.append((figure, self.out_dir / "figures" / name))
                    lines += [f"![{analysis.caption}](figures/{name})", ""]
                continue
            lines += [f"- *{analysis.caption}*: {said}", ""]
        return lines

    def runs_section(self, plan: Plan) -> list[str]:
        """Each run's status, accuracy, epochs, times and device; the commands of those left to a GPU."""
        header = ["run", "status", "test accuracy (%)", "epochs", "training time (s)", "command (s)"]
        rows = [[*header, "device"]]
        commands, gpu = [], []
        for run in plan.unique_runs():
            if reason := self.scale.gpu_reason(run):
                command = shlex.join(["litvision", "fit", f"--config={run.config}", *options(run.overrides)])
                gpu.append(f"- `{run.name}`: {reason} `{command}`")
                continue
            for r in self.seeded(run):
                command_s = fmt(r.marker.get("wall_time_s") if r.finished else None, accuracy=False)
                resumed = r.finished and r.marker.get("resumed_from_checkpoint")
                times = [r.training_time, f"{command_s} (last attempt)" if resumed else command_s]
                epochs = r.info.get("epochs", (r.test or {}).get("epoch")) if r.finished else "—"
                accuracy = fmt(METRICS["test_acc"].value(r))
                rows.append([f"`{r.run.name}`", r.status, accuracy, epochs, *times, r.device or "—"])
                commands += [f"# {r.run.name}\n{r.marker['command']}"] if r.marker.get("command") else []
        options_ = ["--scale", self.scale.name, "--data_source", self.source.name, "--only", f"{plan.id}/RUN"]
        again = shlex.join(["litvision", "reproduce", "run", plan.id, *options_])
        lines = ["### Runs", "", TEXT["runs"].format(again=again), "", markdown_table(rows)]
        lines = lines if len(rows) > 1 else lines[:2]  # no table where every run needs a GPU at this scale
        lines += [TEXT["needs_gpu"].format(report=plan.id), "", *gpu, ""] if gpu else []
        details = [f"<details>{TEXT['commands']}", "", "```bash", *commands, "```", "", "</details>", ""]
        return lines + (details if commands else [])
