"""What to run: report plans (``configs/experiments/NNN.yaml``), sweeps (``configs/sweeps/*.yaml``) and
scales (``configs/experiments/scales/*.yaml``): typed dataclasses, parsed by jsonargparse, then checked
for what types cannot say (that configs exist, that tables name the plan's runs and known metrics).

A run is an ordinary config plus overrides (dotted keys, as on the command line). Sweep points that
change nothing (a value equal to the base config's) are the base config's own run, trained once.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from jsonargparse import ArgumentError, ArgumentParser

from litvision.analysis.cli import BY_NAME
from litvision.errors import LitvisionError

T = TypeVar("T")
# The analysis tools a plan may ask for: those that declare the file that shows they ran (their figures,
# or a table's JSON for rebalance).
ANALYSIS_TOOLS = tuple(name for name, tool in BY_NAME.items() if tool.done)


@dataclass(frozen=True)
class RunSpec:
    """One training run: ``litvision fit --config CONFIG --key=value ...``."""

    report: str
    name: str  # directory name of the run, unique within its report
    config: Path
    overrides: tuple[tuple[str, Any], ...] = ()
    plain_reference: bool = False
    seed: int = 0  # which of the run's seeds: 0 is the config's own, k adds k to its seeds

    @property
    def id(self) -> str:
        return f"{self.report}/{self.name}"

    @property
    def row_id(self) -> str:
        """The id of the run all of whose seeds this one belongs to (scale patterns match it)."""
        return f"{self.report}/{self.name.removesuffix(f'-seed{self.seed}') if self.seed else self.name}"

    def with_seed(self, seed: int) -> RunSpec:
        """The same run with its seeds moved by ``seed``, in a directory of its own."""
        return replace(self, name=f"{self.name}-seed{seed}" if seed else self.name, seed=seed)

    def override_args(self) -> list[str]:
        return [f"--{key}={format_value(value)}" for key, value in self.overrides]


@dataclass
class Row:
    """A row of a runs table: one run's values of the table's metrics (or its own ``metrics``)."""

    label: str
    run: str
    published: list[float | None]
    metrics: list[str] | None = None


@dataclass
class Table:
    """A table of a report: ``runs`` (a row per run) or ``per_class`` (a column per run, published values
    per class id and ``total``)."""

    title: str
    kind: Literal["runs", "per_class"] = "runs"
    metrics: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)  # per_class: column label -> run name
    published: dict[int | str, list[float | None]] = field(default_factory=dict)


@dataclass
class Analysis:
    """A figure of a report: ``litvision analyze TOOL`` on some of the plan's runs (or a config)."""

    tool: str
    runs: list[str] = field(default_factory=list)
    caption: str = ""
    args: list[str] = field(default_factory=list)
    config: str | None = None  # loss-landscape's own config
    name: str | None = None

    @property
    def key(self) -> str:
        """The analysis's name within its plan: its output folder when it has no single run to write into."""
        suffix = self.name or "+".join(self.runs)
        return f"{self.tool}-{suffix}" if suffix else self.tool

    @property
    def single(self) -> bool:
        """Whether it analyses one run, writing into that run's ``analysis/`` folder."""
        return self.tool != "loss-landscape" and len(self.runs) == 1


@dataclass
class Cell:
    """A number of a report: a run's metric, or (``classes``: ``"0-4"``, ``"3"``) its mean test accuracy
    over a range of classes, as a per-class table shows it."""

    run: str
    metric: str = "test_acc"
    classes: int | str | None = None

    @property
    def key(self) -> int | str | None:
        """The per-class table's key of ``classes``."""
        return int(self.classes) if str(self.classes).isdigit() else self.classes


@dataclass
class Finding:
    """An ordering the report states, ``higher`` above ``lower``; our report says whether ours agree."""

    claim: str
    higher: Cell
    lower: Cell


@dataclass
class RunEntry:
    """A run of a plan file (a bare config path is read as ``{config: ...}``)."""

    config: str
    overrides: dict[str, Any] = field(default_factory=dict)
    plain_reference: bool = False


def parse(
    kind: type[T], data: Any, where: str, raw: tuple[str, ...] = (), given: dict[str, Any] | None = None
) -> T:
    """``data`` (a YAML file's contents) as the dataclass ``kind``, checked by jsonargparse, its error in
    one line. The ``raw`` keys (command-line arguments: ``{model.optimizer: {class_path: ...}}``) are kept
    as written, ``class_path`` unresolved; the ``given`` fields are the caller's, not the file's."""
    given = given or {}
    allowed = sorted(f.name for f in fields(kind) if f.name not in given)
    unknown = sorted(set(data) - set(allowed)) if isinstance(data, dict) else []
    if unknown:  # checked here too: jsonargparse drops an unknown key whose value is {}
        raise LitvisionError(f"{where}: unknown key {unknown[0]!r}; allowed: {allowed}")
    kept = {key: data.pop(key) for key in raw if isinstance(data, dict) and key in data}
    for key, value in kept.items():
        if not isinstance(value, (dict, list)):
            raise LitvisionError(f"{where}: '{key}' must be a mapping or a list, not {value!r}")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--file", type=kind)
    try:
        parsed = parser.instantiate(parser.parse_object({"file": {**data, **given} if given else data})).file
    except ArgumentError as err:
        raise LitvisionError(f"{where}: {_one_line(str(err))}") from None
    for key, value in kept.items():
        setattr(parsed, key, value)
    return parsed


def _one_line(error: str) -> str:
    """A jsonargparse error in one line: the key, the value and what was expected."""
    missing = re.search(r"required: file\.(\S+)", error)
    if missing:
        return f"'{missing.group(1)}' is missing"
    keys = [k.removeprefix("file.") for k in re.findall(r'(?:Parser key|key) "([^"]+)"', error)]
    key = ".".join(k for k in dict.fromkeys(keys) if k != "file") or "file"
    scalar = re.search(r"Unable to load config ['\"](.*?)['\"]", error)
    if scalar:  # a value where a mapping of fields belongs
        return f"'{key}' is {scalar.group(1)!r}: expected a mapping"
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    value = next((line.split("value:", 1)[1].strip() for line in lines if "value:" in line), None)
    expected = next((line for line in lines if line.startswith(("Expected a", "Subtypes"))), lines[-1])
    expected = expected.split(". Got value")[0].replace("Subtypes:", "expected one of")
    expected = re.sub(r"<class '(\w+)'>", r"\1", expected.replace("typing.", "")).replace("NoneType", "null")
    shown = f" is {value!r}" if value is not None else ""
    return f"'{key}'{shown}: {expected[0].lower() + expected[1:]}"


@dataclass
class ReportPlan:
    """``configs/experiments/NNN.yaml`` (all but its id and path): a report's runs, tables and figures."""

    id: str
    path: Path
    title: str
    source: str = ""
    notes: list[str] = field(default_factory=list)
    # Every name a table or analysis may use (a sweep's points included). In the file: a run's config, or
    # a RunEntry mapping; a sweep's runs are the points of the sweep files in ``sweeps``.
    runs: dict[str, RunSpec] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    analyses: list[Analysis] = field(default_factory=list)
    sweeps: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def unique_runs(self) -> list[RunSpec]:
        return list({spec.name: spec for spec in self.runs.values()}.values())  # one spec per directory

    def published(self, cell: Cell) -> float | None:
        """The report's own value of ``cell``, from the plan's tables (None: no table has it)."""
        for table in self.tables:
            if cell.key is None:
                rows = [row for row in table.rows if row.run == cell.run and cell.metric in row.metrics]
                if rows:
                    return rows[0].published[rows[0].metrics.index(cell.metric)]
            elif cell.key in table.published and cell.run in table.columns.values():
                return table.published[cell.key][list(table.columns.values()).index(cell.run)]
        return None


@dataclass
class Scale:
    """How much of each run to train: ``full`` is the reports' own recipes; a scale file
    (``configs/experiments/scales/NAME.yaml``, these fields but the name) changes some. Every mapping
    from run patterns is matched against ``<report>/<run>`` (fnmatch), the later pattern winning."""

    name: str
    description: str = "the reports' own recipes"  # a scale file's default: its name
    scaled_down: bool = False  # every run shrunk (quick, smoke; a file's default); false: recipes kept
    data: dict[str, dict[str, int]] = field(default_factory=dict)  # dataset -> subset sizes
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # pattern -> arguments
    analyses: dict[str, list[str]] = field(default_factory=dict)  # tool -> arguments
    reduced: dict[str, str] = field(default_factory=dict)  # pattern -> the budget in words
    needs_gpu: dict[str, str] = field(default_factory=dict)  # pattern -> why it is not run here
    seeds: dict[str, int] = field(default_factory=dict)  # pattern -> number of seeds
    plain_reference: list[str] | None = None  # only these runs get their plan's plain loop
    notes: dict[str, list[str]] = field(default_factory=dict)  # report id -> notes on this scale
    reports: list[str] | None = None  # the plans its report covers (None: the five numbered reports)

    def _matching(self, spec: RunSpec | str, entries: dict[str, T]) -> list[T]:
        row = spec if isinstance(spec, str) else spec.row_id
        return [value for pattern, value in entries.items() if fnmatch.fnmatchcase(row, pattern)]

    def _match(self, spec: RunSpec | str, entries: dict[str, T]) -> T | None:
        return (self._matching(spec, entries) or [None])[-1]

    def run_args(self, spec: RunSpec) -> list[str]:
        """The scale's arguments for a run, from every pattern that matches ``report/run``."""
        merged = {key: value for args in self._matching(spec, self.runs) for key, value in args.items()}
        return [f"--{key}={format_value(value)}" for key, value in merged.items()]

    def budget(self, spec: RunSpec) -> str:
        """The run's budget in words: the report's recipe, or how this scale reduces it."""
        if self.scaled_down:
            return "scaled down"
        return self._match(spec, self.reduced) or "published recipe"

    def gpu_reason(self, spec: RunSpec | str) -> str | None:
        """Why this scale leaves the run (or an analysis that trains its own networks, the loss landscape,
        by its id ``report/key``) to a GPU (None: it runs here)."""
        return self._match(spec, self.needs_gpu)

    def analysis_gpu_reason(self, report: str, analysis: Analysis) -> str | None:
        """Why this scale leaves an analysis that trains networks of its own (one of no runs: the loss
        landscape) to a GPU, by its id ``report/key`` (None: it runs here, or it reads runs)."""
        return None if analysis.runs else self.gpu_reason(f"{report}/{analysis.key}")

    def seed_count(self, spec: RunSpec, seeds: int | None = None) -> int:
        """How many seeds the run gets: ``seeds`` (the command line) if given, else this scale's."""
        return seeds if seeds is not None else self._match(spec, self.seeds) or 1

    def analysed(self, analysis: Analysis, runs: dict[str, RunSpec]) -> list[str]:
        """The runs (of the plan's ``runs``) that ``analysis`` reads at this scale: a figure of several
        runs (curves) leaves out those this scale leaves to a GPU and shows the others."""
        if analysis.tool != "curves":
            return analysis.runs
        return [name for name in analysis.runs if not self.gpu_reason(runs[name])]

    def has_plain_reference(self, spec: RunSpec) -> bool:
        if not spec.plain_reference or spec.seed:
            return False
        patterns = self.plain_reference
        return patterns is None or any(fnmatch.fnmatchcase(spec.row_id, p) for p in patterns)


def format_value(value: Any) -> str:
    """A YAML value as the command line takes it: scalars as text, lists and mappings as JSON."""
    if isinstance(value, (bool, list, dict)) or value is None:
        return json.dumps(value)
    return str(value)


class TimeLoader(yaml.SafeLoader):
    """YAML with integers as YAML 1.2 reads them: ``4:00:00`` stays a string (YAML 1.1 makes it 14400,
    base 60), as a time limit is written."""


TimeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:int"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
TimeLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))


def read_yaml(path: Path | str, what: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> dict[str, Any]:
    path = Path(path)  # an analysis's config is a str
    if not path.is_file():
        raise LitvisionError(f"{what} '{path}' not found")
    try:
        data = yaml.load(path.read_text(), Loader=loader)
    except yaml.YAMLError as err:
        raise LitvisionError(f"{what} '{path}' is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise LitvisionError(f"{what} '{path}' must be a mapping of keys to values")
    return data


def _config_path(value: str, root: Path, where: str) -> Path:
    if not (root / value).is_file():
        raise LitvisionError(f"{where}: config '{value}' not found (paths are relative to '{root}')")
    return Path(value)


def _word(name: Any, where: str, what: str) -> str:
    """A name that names a directory or folder: one word."""
    if not isinstance(name, str) or not name or "/" in name or " " in name:
        raise LitvisionError(f"{where}: {what} {name!r} must be one word (it names a directory)")
    return name


def _words(text: str) -> str:
    """Text from YAML (folded or not) on one line, single-spaced."""
    return " ".join(str(text).split())


def lookup(config: dict[str, Any], key: str) -> tuple[bool, Any]:
    """(found, value) of a dotted key in a config mapping."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _contained(value: Any, base: Any) -> bool:
    """Whether ``value`` asks for nothing that ``base`` does not already have."""
    if isinstance(value, dict):
        return isinstance(base, dict) and all(k in base and _contained(v, base[k]) for k, v in value.items())
    if isinstance(value, (int, float)) and isinstance(base, (int, float)) and not isinstance(value, bool):
        return float(value) == float(base)
    return value == base


def is_noop(config: dict[str, Any], overrides: dict[str, Any]) -> bool:
    """Whether the overrides leave the config as it is (so the run is the base config's own)."""
    for key, value in overrides.items():
        found, base = lookup(config, key)
        if not found or not _contained(value, base):
            return False
    return True


@dataclass
class Sweep:
    """``configs/sweeps/*.yaml``: a base config and its points, as ``argument`` with ``values`` or as
    named ``points`` of overrides; each point is a run ``name-label``."""

    config: str
    name: str | None = None  # default: the file's name
    argument: str | None = None
    values: list[Any] | None = None
    points: dict[str, dict[str, Any]] | None = None  # label -> overrides (filled from ``values`` too)

    def specs(self, report: str, root: Path) -> dict[str, RunSpec]:
        base, config = read_yaml(root / self.config, "config"), Path(self.config)
        specs = {}
        for label, overrides in (self.points or {}).items():
            name = f"{self.name}-{label}"
            if is_noop(base, overrides):  # the base config itself: one run, whatever the sweep
                specs[name] = RunSpec(report, config.stem, config)
            else:
                specs[name] = RunSpec(report, name, config, tuple(overrides.items()))
        return specs


def load_sweep(path: Path, root: Path) -> Sweep:
    where = f"sweep '{path}'"
    sweep = parse(Sweep, read_yaml(root / path, "sweep"), where, raw=("values", "points"))
    _config_path(sweep.config, root, where)
    sweep.name = _word(sweep.name or Path(path).stem, where, "name")
    if (sweep.points is None) == (sweep.argument is None):
        raise LitvisionError(f"{where}: give either 'argument' with 'values', or 'points'")
    if sweep.argument is not None:
        if not sweep.values:
            raise LitvisionError(f"{where}: 'values' is empty")
        sweep.points = {format_value(v): {sweep.argument: v} for v in sweep.values}
        if len(sweep.points) != len(sweep.values):
            raise LitvisionError(f"{where}: 'values' has duplicates")
    sweep.points = {str(label): overrides for label, overrides in (sweep.points or {}).items()}
    for label, overrides in sweep.points.items():
        if not isinstance(overrides, dict):
            raise LitvisionError(f"{where}: point '{label}' must map dotted arguments to values")
        _word(label, where, "point name")
    return sweep


def _require(where: str, what: str, names: Iterable[Any], known: Iterable[str], among: str = "") -> None:
    """Each of ``names`` is one of ``known``."""
    known = sorted(known)
    for name in names:
        if name not in known:
            raise LitvisionError(f"{where}: {what} {name!r} is not one of {among}{known}")


def _check_table(table: Table, runs: dict[str, RunSpec], metrics_known: set[str], where: str) -> None:
    where = f"{where} '{table.title}'"
    for row in table.rows:
        row.metrics = row.metrics or list(table.metrics)
    named = [*table.columns.values(), *(row.run for row in table.rows)]
    _require(where, "run", named, runs, "the plan's runs ")
    metrics = [*table.metrics, *(metric for row in table.rows for metric in row.metrics)]
    _require(where, "metric", metrics, metrics_known)
    for key, values in table.published.items():
        if key != "total" and not isinstance(key, int) and not _class_range(key):
            raise LitvisionError(
                f"{where}: 'published' keys are class ids (0, 1, ...), a range of them ('0-4': their mean "
                f"accuracy) or 'total', not {key!r}"
            )
        _count(values, len(table.columns), f"{where}, class {key}: 'published'")
    for row in table.rows:
        _count(row.metrics, len(table.metrics), f"{where}, row '{row.label}': 'metrics'")
        _count(row.published, len(table.metrics), f"{where}, row '{row.label}': 'published'")


def _class_range(key: Any) -> bool:
    """Whether ``key`` is a range of class ids, ``"0-4"`` (upwards)."""
    span = re.fullmatch(r"(\d+)-(\d+)", str(key))
    return bool(span and int(span[1]) < int(span[2]))


def _count(values: list[Any], n: int, what: str) -> None:
    if len(values) != n:
        raise LitvisionError(f"{what} must list {n} value(s)")


def _check_analysis(analysis: Analysis, runs: dict[str, RunSpec], root: Path, where: str) -> None:
    _require(where, "tool", [analysis.tool], ANALYSIS_TOOLS)
    _require(where, "run", analysis.runs, runs, "the plan's runs ")
    if analysis.tool == "loss-landscape":
        if analysis.runs or analysis.config is None:
            raise LitvisionError(f"{where}: loss-landscape takes a 'config', not runs")
        _config_path(analysis.config, root, where)
    elif not analysis.runs or (analysis.tool != "curves" and len(analysis.runs) != 1):
        raise LitvisionError(f"{where}: tool {analysis.tool} analyses one run ('curves': one or more)")
    if analysis.name is not None:
        _word(analysis.name, where, "name")
    analysis.caption = analysis.caption or analysis.tool


def _check_finding(finding: Finding, plan: ReportPlan, metrics_known: set[str], where: str) -> None:
    where = f"{where} '{finding.claim}'"
    for side, cell in (("higher", finding.higher), ("lower", finding.lower)):
        _require(f"{where}, {side}", "run", [cell.run], plan.runs, "the plan's runs ")
        _require(f"{where}, {side}", "metric", [cell.metric], metrics_known)
        classes = str(cell.classes)
        if cell.classes is not None and not (
            (classes.isdigit() or _class_range(classes)) and cell.metric == "test_acc"
        ):
            raise LitvisionError(
                f"{where}, {side}: 'classes' {cell.classes!r} must be a class id or a range ('0-4') of the "
                "test accuracy (metric test_acc)"
            )
    high, low = plan.published(finding.higher), plan.published(finding.lower)
    if high is not None and low is not None and high <= low:
        raise LitvisionError(
            f"{where}: the published values ({high} and {low}) do not put 'higher' above 'lower'"
        )
    finding.claim = _words(finding.claim)


def load_plan(path: Path, root: Path, metrics_known: set[str]) -> ReportPlan:
    """A report plan, checked: every config, sweep, run, metric and tool it names exists."""
    report, where = path.stem, f"plan '{path}'"
    plan = parse(ReportPlan, read_yaml(path, "plan"), where, ("runs",), given={"id": report, "path": path})
    entries, plan.runs = plan.runs, {}
    if not isinstance(entries, dict) or not all(isinstance(e, (str, dict)) for e in entries.values()):
        raise LitvisionError(f"{where}: 'runs' must map run names to configs (or to {{config: ...}})")
    for name, entry in entries.items():
        at = f"{where}, run '{_word(name, where, 'run name')}'"
        entry = parse(RunEntry, {"config": entry} if isinstance(entry, str) else entry, at, ("overrides",))
        if not isinstance(entry.overrides, dict):
            raise LitvisionError(f"{at}: 'overrides' must map dotted arguments to values")
        config = _config_path(entry.config, root, at)
        plan.runs[name] = RunSpec(report, name, config, tuple(entry.overrides.items()), entry.plain_reference)
    for sweep_path in plan.sweeps:
        for name, spec in load_sweep(Path(sweep_path), root).specs(report, root).items():
            if name in plan.runs:
                raise LitvisionError(f"{where}: sweep '{sweep_path}' names run '{name}' again")
            plan.runs[name] = spec
    by_dir: dict[str, RunSpec] = {}
    for spec in plan.runs.values():
        if by_dir.setdefault(spec.name, spec) != spec:
            raise LitvisionError(f"{where}: two different runs would share the directory '{spec.name}'")
    for table in plan.tables:
        _check_table(table, plan.runs, metrics_known, f"{where}, table")
    for analysis in plan.analyses:
        _check_analysis(analysis, plan.runs, root, f"{where}, analysis")
    for finding in plan.findings:
        _check_finding(finding, plan, metrics_known, f"{where}, finding")
    keys = [a.key for a in plan.analyses]
    if len(set(keys)) != len(keys):
        raise LitvisionError(f"{where}: two analyses share a name ({keys}); give them different 'name's")
    plan.notes = [_words(n) for n in plan.notes]
    return plan


def available_plans(plans_dir: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(plans_dir.glob("*.yaml"))}


def is_numbered(plan_id: str) -> bool:
    """Whether a plan is one of the numbered reports (000 ... 004), those ``all`` means; the others (such
    as cifar10_lt, whose runs would not fit the quick scale's half hour) run only when named."""
    return re.fullmatch(r"\d{3}", plan_id) is not None


def select_plans(names: list[str], plans_dir: Path) -> list[Path]:
    """The plan files of the reports named (``all`` or none: the numbered reports of ``plans_dir``)."""
    known = available_plans(plans_dir)
    if not known:
        raise LitvisionError(f"no report plans (*.yaml) in '{plans_dir}'")
    if not names or names == ["all"]:
        return [path for plan_id, path in known.items() if is_numbered(plan_id)]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise LitvisionError(
            f"report(s) {unknown} not found in '{plans_dir}': choose from {list(known)} or all (the "
            "numbered reports)"
        )
    return [known[n] for n in dict.fromkeys(names)]


def load_scale(name: str, scales_dir: Path) -> Scale:
    """``full`` (the reports' own recipes) or a scale file ``scales_dir/NAME.yaml``."""
    if name == "full":
        return Scale("full")
    path = scales_dir / f"{name}.yaml"
    if not path.is_file():
        known = ["full", *sorted(p.stem for p in scales_dir.glob("*.yaml"))]
        raise LitvisionError(f"scale '{name}' not found: choose from {known}")
    where = f"scale '{path}'"
    defaults = {"description": name, "scaled_down": True}
    scale = parse(Scale, {**defaults, **read_yaml(path, "scale")}, where, ("runs",), given={"name": name})
    if not isinstance(scale.runs, dict) or not all(isinstance(v, dict) for v in scale.runs.values()):
        raise LitvisionError(f"{where}: 'runs' must map run patterns to arguments")
    _require(where, "analysis tool", scale.analyses, ANALYSIS_TOOLS)
    if any(n < 1 for n in scale.seeds.values()):
        raise LitvisionError(f"{where}: 'seeds' must be 1 or more")
    scale.description = _words(scale.description or name)
    scale.reduced = {p: _words(v) for p, v in scale.reduced.items()}
    scale.needs_gpu = {p: _words(v) for p, v in scale.needs_gpu.items()}
    scale.notes = {k: [_words(n) for n in v] for k, v in scale.notes.items()}
    return scale
