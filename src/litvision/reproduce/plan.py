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
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from jsonargparse import ArgumentError, ArgumentParser

from litvision.analysis.cli import BY_NAME
from litvision.errors import LitvisionError

TABLE_KINDS = ("runs", "per_class")
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
        return f"{self.report}/{self.base_name}"

    @property
    def base_name(self) -> str:
        return self.name.removesuffix(f"-seed{self.seed}") if self.seed else self.name

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


@dataclass
class RunEntry:
    """A run of a plan file: a config, its overrides and whether it gets a plain-loop reference."""

    config: str
    overrides: dict[str, Any] = field(default_factory=dict)
    plain_reference: bool = False


@dataclass
class PlanFile:
    """``configs/experiments/NNN.yaml``: a report's runs (configs or sweeps), its tables and figures."""

    title: str
    source: str = ""
    runs: dict[str, RunEntry] = field(default_factory=dict)  # a bare config path is read as {config: ...}
    sweeps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    analyses: list[Analysis] = field(default_factory=list)


@dataclass
class SweepFile:
    """``configs/sweeps/*.yaml``: a base config and its points, as ``argument`` with ``values`` or as
    named ``points`` of overrides."""

    config: str
    name: str | None = None
    argument: str | None = None
    values: list[Any] | None = None
    points: dict[str, dict[str, Any]] | None = None


@dataclass
class ScaleFile:
    """``configs/experiments/scales/NAME.yaml``; every mapping from run patterns is matched against
    ``<report>/<run>`` (fnmatch), the later pattern winning."""

    description: str = ""
    scaled_down: bool = True  # every run shrunk (quick, smoke); false: recipes kept unless ``reduced``
    data: dict[str, dict[str, int]] = field(default_factory=dict)  # dataset -> subset sizes
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # pattern -> arguments
    analyses: dict[str, list[str]] = field(default_factory=dict)  # tool -> arguments
    reduced: dict[str, str] = field(default_factory=dict)  # pattern -> the budget in words
    needs_gpu: dict[str, str] = field(default_factory=dict)  # pattern -> why it is not run here
    seeds: dict[str, int] = field(default_factory=dict)  # pattern -> number of seeds
    plain_reference: list[str] | None = None  # only these runs get their plan's plain loop
    notes: dict[str, list[str]] = field(default_factory=dict)  # report id -> notes on this scale


def parse(kind: type[T], data: Any, where: str, raw: tuple[str, ...] = ()) -> T:
    """``data`` (a YAML file's contents) as the dataclass ``kind``, checked by jsonargparse; its error,
    should there be one, in one line naming the key and the bad value. The ``raw`` keys hold command-line
    arguments (``{model.optimizer: {class_path: ...}}``), kept as written: jsonargparse would resolve
    every ``class_path`` in them."""
    kept = {key: data.pop(key) for key in raw if isinstance(data, dict) and key in data}
    for key, value in kept.items():
        if not isinstance(value, (dict, list)):
            raise LitvisionError(f"{where}: '{key}' must be a mapping or a list, not {value!r}")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--file", type=kind)
    try:
        parsed = parser.instantiate(parser.parse_object({"file": data})).file
        for key, value in kept.items():
            setattr(parsed, key, value)
        return parsed
    except ArgumentError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        keys = [k.removeprefix("file.") for k in re.findall(r'(?:Parser key|key) "([^"]+)"', str(err))]
        key = ".".join(k for k in keys if k != "file") or "file"
        unknown = re.search(r"does not accept (?:nested key|option) '?([^' ]+)", str(err))
        if unknown:
            allowed = sorted(f.name for f in fields(kind))
            raise LitvisionError(f"{where}: unknown key {unknown.group(1)!r}; allowed: {allowed}") from None
        missing = re.search(r"required: file\.(\S+)", str(err))
        if missing:
            raise LitvisionError(f"{where}: '{missing.group(1)}' is missing") from None
        value = next((ln.split("value:", 1)[1].strip() for ln in lines if "value:" in ln), None)
        expected = next((ln for ln in lines if ln.startswith(("Expected a", "Subtypes"))), lines[-1])
        expected = expected.split(". Got value")[0].replace("typing.", "").replace("<class ", "")
        expected = re.sub(r"'([a-zA-Z]+)'>", r"\1", expected).replace("NoneType", "null")
        expected = expected.replace("Subtypes:", "expected one of")
        shown = f" is {value!r}" if value is not None else ""
        raise LitvisionError(f"{where}: '{key}'{shown}: {expected[0].lower() + expected[1:]}") from None


@dataclass
class ReportPlan:
    id: str
    path: Path
    title: str
    source: str
    notes: list[str]
    runs: dict[str, RunSpec]  # every name a table or analysis may use (aliases included)
    tables: list[Table]
    analyses: list[Analysis]

    def unique_runs(self) -> list[RunSpec]:
        seen: dict[str, RunSpec] = {}
        for spec in self.runs.values():
            seen.setdefault(spec.name, spec)
        return list(seen.values())


@dataclass
class Scale:
    """How much of each run to train: ``full`` is the reports' own recipes; a scale file (see
    :class:`ScaleFile`, whose fields these are) changes some."""

    name: str
    description: str = "the reports' own recipes"
    scaled_down: bool = False
    data: dict[str, dict[str, int]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    analyses: dict[str, list[str]] = field(default_factory=dict)
    reduced: dict[str, str] = field(default_factory=dict)
    needs_gpu: dict[str, str] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)
    plain_reference: list[str] | None = None
    notes: dict[str, list[str]] = field(default_factory=dict)

    def _match(self, spec: RunSpec, entries: dict[str, Any]) -> Any:
        found = None
        for pattern, value in entries.items():
            if fnmatch.fnmatchcase(spec.row_id, pattern):
                found = value
        return found

    def run_args(self, spec: RunSpec) -> list[str]:
        """The scale's arguments for a run, from every pattern that matches ``report/run``."""
        merged: dict[str, Any] = {}
        for pattern, args in self.runs.items():
            if fnmatch.fnmatchcase(spec.row_id, pattern):
                merged.update(args)
        return [f"--{key}={format_value(value)}" for key, value in merged.items()]

    def budget(self, spec: RunSpec) -> str:
        """The run's budget in words: the report's recipe, or how this scale reduces it."""
        if self.name == "full":
            return "published recipe"
        if self.scaled_down:
            return "scaled down"
        return self._match(spec, self.reduced) or "published recipe"

    def gpu_reason(self, spec: RunSpec) -> str | None:
        """Why this scale leaves the run to a GPU (None: it runs here)."""
        return self._match(spec, self.needs_gpu)

    def seed_count(self, spec: RunSpec, seeds: int | None = None) -> int:
        """How many seeds the run gets: ``seeds`` (the command line) if given, else this scale's."""
        return seeds if seeds is not None else self._match(spec, self.seeds) or 1

    def has_plain_reference(self, spec: RunSpec) -> bool:
        if not spec.plain_reference or spec.seed:
            return False
        patterns = self.plain_reference
        return patterns is None or any(fnmatch.fnmatchcase(spec.row_id, p) for p in patterns)


def format_value(value: Any) -> str:
    """A YAML value as the command line takes it: scalars as text, lists and mappings as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def read_yaml(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise LitvisionError(f"{what} '{path}' not found")
    try:
        data = yaml.safe_load(path.read_text())
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
    """A base config and named points, each a set of overrides: ``name-label`` runs."""

    path: Path
    name: str
    config: Path
    points: dict[str, dict[str, Any]]

    def specs(self, report: str, root: Path) -> dict[str, RunSpec]:
        base = read_yaml(root / self.config, "config")
        specs = {}
        for label, overrides in self.points.items():
            if is_noop(base, overrides):  # the base config itself: one run, whatever the sweep
                specs[f"{self.name}-{label}"] = RunSpec(report, self.config.stem, self.config)
            else:
                specs[f"{self.name}-{label}"] = RunSpec(
                    report, f"{self.name}-{label}", self.config, tuple(overrides.items())
                )
        return specs


def load_sweep(path: Path, root: Path) -> Sweep:
    where = f"sweep '{path}'"
    sweep = parse(SweepFile, read_yaml(root / path, "sweep"), where, raw=("values", "points"))
    config = _config_path(sweep.config, root, where)
    name = _word(sweep.name or Path(path).stem, where, "name")
    if (sweep.points is None) == (sweep.argument is None):
        raise LitvisionError(f"{where}: give either 'argument' with 'values', or 'points'")
    if sweep.argument is not None:
        if not sweep.values:
            raise LitvisionError(f"{where}: 'values' is empty")
        points = {format_value(v): {sweep.argument: v} for v in sweep.values}
        if len(points) != len(sweep.values):
            raise LitvisionError(f"{where}: 'values' has duplicates")
    else:
        points = {str(label): overrides for label, overrides in (sweep.points or {}).items()}
    for label, overrides in points.items():
        if not isinstance(overrides, dict):
            raise LitvisionError(f"{where}: point '{label}' must map dotted arguments to values")
        _word(label, where, "point name")
    return Sweep(Path(path), name, config, points)


def _check_table(table: Table, runs: dict[str, RunSpec], metrics_known: set[str], where: str) -> Table:
    where = f"{where} '{table.title}'"
    named = list(table.columns.values()) + [row.run for row in table.rows]
    for name in named:
        if name not in runs:
            raise LitvisionError(f"{where}: run {name!r} is not one of the plan's runs {sorted(runs)}")
    for key, values in table.published.items():
        if key != "total" and not isinstance(key, int):
            raise LitvisionError(
                f"{where}: 'published' keys are class ids (0, 1, ...) or 'total', not {key!r}"
            )
        if len(values) != len(table.columns):
            raise LitvisionError(f"{where}, class {key}: 'published' must list {len(table.columns)} value(s)")
    for metric in table.metrics:
        if metric not in metrics_known:
            raise LitvisionError(f"{where}: metric {metric!r} is not one of {sorted(metrics_known)}")
    for row in table.rows:
        row.metrics = row.metrics or list(table.metrics)
        for metric in row.metrics:
            if metric not in metrics_known:
                raise LitvisionError(f"{where}: metric {metric!r} is not one of {sorted(metrics_known)}")
        for got, count in ((row.metrics, "metrics"), (row.published, "published")):
            if len(got) != len(table.metrics):
                raise LitvisionError(
                    f"{where}, row '{row.label}': '{count}' must list {len(table.metrics)} value(s)"
                )
    return table


def _check_analysis(analysis: Analysis, runs: dict[str, RunSpec], root: Path, where: str) -> Analysis:
    if analysis.tool not in ANALYSIS_TOOLS:
        raise LitvisionError(f"{where}: tool {analysis.tool!r} is not one of {list(ANALYSIS_TOOLS)}")
    for name in analysis.runs:
        if name not in runs:
            raise LitvisionError(f"{where}: run {name!r} is not one of the plan's runs {sorted(runs)}")
    if analysis.tool == "loss-landscape":
        if analysis.runs or analysis.config is None:
            raise LitvisionError(f"{where}: loss-landscape takes a 'config', not runs")
        _config_path(analysis.config, root, where)
    elif not analysis.runs or (analysis.tool != "curves" and len(analysis.runs) != 1):
        raise LitvisionError(f"{where}: tool {analysis.tool} analyses one run ('curves': one or more)")
    if analysis.name is not None:
        _word(analysis.name, where, "name")
    analysis.caption = analysis.caption or analysis.tool
    return analysis


def load_plan(path: Path, root: Path, metrics_known: set[str]) -> ReportPlan:
    """A report plan, checked: every config, sweep, run, metric and tool it names exists."""
    report = path.stem
    where = f"plan '{path}'"
    data = read_yaml(path, "plan")
    overrides: dict[str, Any] = {}  # command-line arguments, kept from jsonargparse (see parse)
    if isinstance(data.get("runs"), dict):
        data["runs"] = {k: {"config": v} if isinstance(v, str) else v for k, v in data["runs"].items()}
        allowed = sorted(f.name for f in fields(RunEntry))
        for name, entry in data["runs"].items():  # jsonargparse passes a mapping's unknown keys silently
            unknown = sorted(set(entry) - set(allowed)) if isinstance(entry, dict) else []
            if unknown:
                raise LitvisionError(f"{where}, run '{name}': unknown key {unknown[0]!r}; allowed: {allowed}")
            if isinstance(entry, dict) and "overrides" in entry:
                overrides[name] = entry.pop("overrides")
    plan = parse(PlanFile, data, where)
    runs: dict[str, RunSpec] = {}
    for name, entry in plan.runs.items():
        entry.overrides = overrides.get(name, {})
        if not isinstance(entry.overrides, dict):
            raise LitvisionError(f"{where}, run '{name}': 'overrides' must map dotted arguments to values")
        config = _config_path(entry.config, root, f"{where}, run '{_word(name, where, 'run name')}'")
        runs[name] = RunSpec(report, name, config, tuple(entry.overrides.items()), entry.plain_reference)
    for sweep_path in plan.sweeps:
        for name, spec in load_sweep(Path(sweep_path), root).specs(report, root).items():
            if name in runs:
                raise LitvisionError(f"{where}: sweep '{sweep_path}' names run '{name}' again")
            runs[name] = spec
    by_dir: dict[str, RunSpec] = {}
    for spec in runs.values():
        if by_dir.setdefault(spec.name, spec) != spec:
            raise LitvisionError(f"{where}: two different runs would share the directory '{spec.name}'")
    tables = [_check_table(t, runs, metrics_known, f"{where}, table") for t in plan.tables]
    analyses = [_check_analysis(a, runs, root, f"{where}, analysis") for a in plan.analyses]
    keys = [a.key for a in analyses]
    if len(set(keys)) != len(keys):
        raise LitvisionError(f"{where}: two analyses share a name ({keys}); give them different 'name's")
    notes = [" ".join(n.split()) for n in plan.notes]
    return ReportPlan(report, path, plan.title, plan.source, notes, runs, tables, analyses)


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
    scale = parse(ScaleFile, read_yaml(path, "scale"), where, raw=("runs",))
    if not isinstance(scale.runs, dict) or not all(isinstance(v, dict) for v in scale.runs.values()):
        raise LitvisionError(f"{where}: 'runs' must map run patterns to arguments")
    for tool in scale.analyses:
        if tool not in ANALYSIS_TOOLS:
            raise LitvisionError(f"{where}: analysis tool {tool!r} is not one of {list(ANALYSIS_TOOLS)}")
    if any(n < 1 for n in scale.seeds.values()):
        raise LitvisionError(f"{where}: 'seeds' must be 1 or more")

    def words(text: str) -> str:
        return " ".join(str(text).split())

    return Scale(
        name, words(scale.description or name), scale.scaled_down, scale.data, scale.runs, scale.analyses,
        {p: words(v) for p, v in scale.reduced.items()}, {p: words(v) for p, v in scale.needs_gpu.items()},
        scale.seeds, scale.plain_reference, {k: [words(n) for n in v] for k, v in scale.notes.items()},
    )  # fmt: skip
