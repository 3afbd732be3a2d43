"""What to run: report plans (``configs/experiments/NNN.yaml``), sweeps (``configs/sweeps/*.yaml``) and
scales (``configs/experiments/scales/*.yaml``), read into plain dataclasses and checked.

A run is an ordinary config plus overrides (dotted keys, as on the command line). Sweep points that
change nothing (a value equal to the base config's) are the base config's own run, trained once.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from litvision.errors import LitvisionError

TABLE_KINDS = ("runs", "per_class")
ANALYSIS_TOOLS = ("curves", "tsne", "feature-maps", "confusion", "svm-head", "rebalance", "loss-landscape")


@dataclass(frozen=True)
class RunSpec:
    """One training run: ``litvision fit --config CONFIG --key=value ...``."""

    report: str
    name: str  # directory name of the run, unique within its report
    config: Path
    overrides: tuple[tuple[str, Any], ...] = ()
    plain_reference: bool = False

    @property
    def id(self) -> str:
        return f"{self.report}/{self.name}"

    def override_args(self) -> list[str]:
        return [f"--{key}={format_value(value)}" for key, value in self.overrides]


@dataclass
class Row:
    label: str
    run: str
    metrics: list[str]
    published: list[float | None]


@dataclass
class Table:
    title: str
    kind: str = "runs"
    metrics: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    # kind per_class: column label -> run name, and published values per class id (and "total").
    columns: dict[str, str] = field(default_factory=dict)
    published: dict[Any, list[float | None]] = field(default_factory=dict)


@dataclass
class Analysis:
    tool: str
    runs: list[str]
    caption: str
    args: list[str] = field(default_factory=list)
    config: Path | None = None  # loss-landscape's own config
    name: str | None = None

    @property
    def key(self) -> str:
        """The analysis's name within its plan: its output folder when it has no single run to write into."""
        suffix = self.name or "+".join(self.runs)
        return f"{self.tool}-{suffix}" if suffix else self.tool


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
    name: str
    description: str = "the reports' own recipes"
    data: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    analyses: dict[str, list[str]] = field(default_factory=dict)

    @property
    def scaled_down(self) -> bool:
        return self.name != "full"

    def run_args(self, spec: RunSpec) -> list[str]:
        """The scale's arguments for a run, from every pattern that matches ``report/run``."""
        merged: dict[str, Any] = {}
        for pattern, args in self.runs:
            if fnmatch.fnmatchcase(spec.id, pattern):
                merged.update(args)
        return [f"--{key}={format_value(value)}" for key, value in merged.items()]


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


def _require(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise LitvisionError(f"{where}: '{key}' is missing")
    value = data[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise LitvisionError(f"{where}: '{key}' must be a {names}, not {value!r}")
    return value


def _unknown_keys(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise LitvisionError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _config_path(value: Any, root: Path, where: str) -> Path:
    if not isinstance(value, str):
        raise LitvisionError(f"{where}: a config must be a path to a YAML file, not {value!r}")
    path = Path(value)
    if not (root / path).is_file():
        raise LitvisionError(f"{where}: config '{value}' not found (paths are relative to '{root}')")
    return path


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
    data = read_yaml(root / path, "sweep")
    _unknown_keys(data, {"name", "config", "argument", "values", "points"}, where)
    config = _config_path(data.get("config"), root, where)
    name = data.get("name", Path(path).stem)
    if not isinstance(name, str) or not name or "/" in name:
        raise LitvisionError(f"{where}: 'name' must be a non-empty word, not {name!r}")
    if ("points" in data) == ("argument" in data):
        raise LitvisionError(f"{where}: give either 'argument' with 'values', or 'points'")
    if "argument" in data:
        argument = _require(data, "argument", str, where)
        values = _require(data, "values", list, where)
        if not values:
            raise LitvisionError(f"{where}: 'values' is empty")
        points = {format_value(v): {argument: v} for v in values}
        if len(points) != len(values):
            raise LitvisionError(f"{where}: 'values' has duplicates")
    else:
        points = _require(data, "points", dict, where)
        for label, overrides in points.items():
            if not isinstance(overrides, dict) or not all(isinstance(k, str) for k in overrides):
                raise LitvisionError(
                    f"{where}: point '{label}' must map dotted arguments to values, e.g. "
                    "{model.optimizer.init_args.lr: 0.01}"
                )
        points = {str(label): dict(overrides) for label, overrides in points.items()}
    for label in points:
        if not label or "/" in label or " " in label:
            raise LitvisionError(f"{where}: point name {label!r} must be one word (it names a directory)")
    return Sweep(Path(path), name, config, points)


def _run_spec(report: str, name: str, value: Any, root: Path, where: str) -> RunSpec:
    if isinstance(value, str):
        value = {"config": value}
    if not isinstance(value, dict):
        raise LitvisionError(f"{where}: run '{name}' must be a config path or a mapping with 'config'")
    _unknown_keys(value, {"config", "overrides", "plain_reference"}, f"{where}, run '{name}'")
    config = _config_path(value.get("config"), root, f"{where}, run '{name}'")
    overrides = value.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise LitvisionError(f"{where}, run '{name}': 'overrides' must map dotted arguments to values")
    return RunSpec(report, name, config, tuple(overrides.items()), bool(value.get("plain_reference", False)))


def _published(values: Any, count: int, where: str) -> list[float | None]:
    if not isinstance(values, list) or len(values) != count:
        raise LitvisionError(f"{where}: 'published' must list {count} value(s), one per metric or column")
    for v in values:
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise LitvisionError(f"{where}: published value {v!r} is not a number (or null)")
    return [None if v is None else float(v) for v in values]


def _table(data: Any, runs: dict[str, RunSpec], metrics_known: set[str], where: str) -> Table:
    if not isinstance(data, dict):
        raise LitvisionError(f"{where}: a table must be a mapping")
    kind = data.get("kind", "runs")
    if kind not in TABLE_KINDS:
        raise LitvisionError(f"{where}: kind {kind!r} is not one of {list(TABLE_KINDS)}")
    title = _require(data, "title", str, where)
    where = f"{where} '{title}'"

    def known_run(name: Any) -> str:
        if name not in runs:
            raise LitvisionError(f"{where}: run {name!r} is not one of the plan's runs {sorted(runs)}")
        return name

    if kind == "per_class":
        _unknown_keys(data, {"title", "kind", "columns", "published"}, where)
        columns = _require(data, "columns", dict, where)
        columns = {str(label): known_run(name) for label, name in columns.items()}
        published = _require(data, "published", dict, where)
        for key in published:
            if key != "total" and (isinstance(key, bool) or not isinstance(key, int)):
                raise LitvisionError(f"{where}: 'published' keys are class ids (0, 1, ...) or 'total'")
        published = {k: _published(v, len(columns), f"{where}, class {k}") for k, v in published.items()}
        return Table(title, kind, columns=columns, published=published)
    _unknown_keys(data, {"title", "kind", "metrics", "rows"}, where)
    metrics = _require(data, "metrics", list, where)
    for metric in metrics:
        if metric not in metrics_known:
            raise LitvisionError(f"{where}: metric {metric!r} is not one of {sorted(metrics_known)}")
    rows = []
    for i, row in enumerate(_require(data, "rows", list, where)):
        if not isinstance(row, dict):
            raise LitvisionError(f"{where}, row {i + 1}: must be a mapping with label, run, published")
        _unknown_keys(row, {"label", "run", "metrics", "published"}, f"{where}, row {i + 1}")
        row_metrics = row.get("metrics", metrics)
        if not isinstance(row_metrics, list) or len(row_metrics) != len(metrics):
            raise LitvisionError(f"{where}, row {i + 1}: 'metrics' must list {len(metrics)} metric(s)")
        for metric in row_metrics:
            if metric not in metrics_known:
                raise LitvisionError(f"{where}: metric {metric!r} is not one of {sorted(metrics_known)}")
        label = str(_require(row, "label", (str, int, float), f"{where}, row {i + 1}"))
        rows.append(
            Row(
                label,
                known_run(row.get("run")),
                list(row_metrics),
                _published(row.get("published"), len(metrics), f"{where}, row '{label}'"),
            )
        )
    return Table(title, kind, metrics=list(metrics), rows=rows)


def _analysis(data: Any, runs: dict[str, RunSpec], root: Path, where: str) -> Analysis:
    if not isinstance(data, dict):
        raise LitvisionError(f"{where}: an analysis must be a mapping with 'tool'")
    _unknown_keys(data, {"tool", "name", "runs", "caption", "args", "config"}, where)
    tool = data.get("tool")
    if tool not in ANALYSIS_TOOLS:
        raise LitvisionError(f"{where}: tool {tool!r} is not one of {list(ANALYSIS_TOOLS)}")
    names = data.get("runs") or []
    if not isinstance(names, list):
        raise LitvisionError(f"{where}: 'runs' must be a list of run names")
    for name in names:
        if name not in runs:
            raise LitvisionError(f"{where}: run {name!r} is not one of the plan's runs {sorted(runs)}")
    if tool == "loss-landscape":
        if names:
            raise LitvisionError(f"{where}: loss-landscape takes a 'config', not runs")
        config = _config_path(data.get("config"), root, where)
    else:
        if not names:
            raise LitvisionError(f"{where}: tool {tool} needs 'runs'")
        if tool != "curves" and len(names) != 1:
            raise LitvisionError(f"{where}: tool {tool} analyses one run, got {len(names)}")
        config = None
    args = data.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise LitvisionError(f"{where}: 'args' must be a list of strings")
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or not name or "/" in name):
        raise LitvisionError(f"{where}: 'name' must be one word (it names a folder), not {name!r}")
    return Analysis(tool, list(names), str(data.get("caption", tool)), list(args), config, name)


def load_plan(path: Path, root: Path, metrics_known: set[str]) -> ReportPlan:
    """A report plan, checked: every config, sweep, run, metric and tool it names exists."""
    report = path.stem
    where = f"plan '{path}'"
    data = read_yaml(path, "plan")
    _unknown_keys(data, {"title", "source", "runs", "sweeps", "notes", "tables", "analyses"}, where)
    runs: dict[str, RunSpec] = {}
    for name, value in (data.get("runs") or {}).items():
        if not isinstance(name, str) or not name or "/" in name:
            raise LitvisionError(f"{where}: run name {name!r} must be one word (it names a directory)")
        runs[name] = _run_spec(report, name, value, root, where)
    for sweep_path in data.get("sweeps") or []:
        for name, spec in load_sweep(Path(sweep_path), root).specs(report, root).items():
            if name in runs:
                raise LitvisionError(f"{where}: sweep '{sweep_path}' names run '{name}' again")
            runs[name] = spec
    by_dir: dict[str, RunSpec] = {}
    for spec in runs.values():
        other = by_dir.setdefault(spec.name, spec)
        if other != spec:
            raise LitvisionError(f"{where}: two different runs would share the directory '{spec.name}'")
    notes = data.get("notes") or []
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise LitvisionError(f"{where}: 'notes' must be a list of sentences")
    tables = [_table(t, runs, metrics_known, f"{where}, table") for t in data.get("tables") or []]
    analyses = [_analysis(a, runs, root, f"{where}, analysis") for a in data.get("analyses") or []]
    keys = [a.key for a in analyses]
    if len(set(keys)) != len(keys):
        raise LitvisionError(f"{where}: two analyses share a name ({keys}); give them different 'name's")
    return ReportPlan(
        id=report,
        path=path,
        title=str(_require(data, "title", str, where)),
        source=str(data.get("source", "")),
        notes=[" ".join(n.split()) for n in notes],
        runs=runs,
        tables=tables,
        analyses=analyses,
    )


def available_plans(plans_dir: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(plans_dir.glob("*.yaml"))}


def select_plans(names: list[str], plans_dir: Path) -> list[Path]:
    """The plan files of the reports named (``all`` or none: every plan in ``plans_dir``)."""
    known = available_plans(plans_dir)
    if not known:
        raise LitvisionError(f"no report plans (*.yaml) in '{plans_dir}'")
    if not names or names == ["all"]:
        return list(known.values())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise LitvisionError(
            f"report(s) {unknown} not found in '{plans_dir}': choose from {list(known)} or all"
        )
    return [known[n] for n in dict.fromkeys(names)]


def load_scale(name: str, scales_dir: Path) -> Scale:
    """``full`` (the reports' own recipes) or a scaled-down scale file ``scales_dir/NAME.yaml``."""
    if name == "full":
        return Scale("full")
    path = scales_dir / f"{name}.yaml"
    if not path.is_file():
        known = ["full", *sorted(p.stem for p in scales_dir.glob("*.yaml"))]
        raise LitvisionError(f"scale '{name}' not found: choose from {known}")
    where = f"scale '{path}'"
    data = read_yaml(path, "scale")
    _unknown_keys(data, {"description", "data", "runs", "analyses"}, where)
    runs = data.get("runs") or {}
    if not isinstance(runs, dict) or not all(isinstance(v, dict) for v in runs.values()):
        raise LitvisionError(f"{where}: 'runs' must map run patterns to arguments")
    analyses = data.get("analyses") or {}
    for tool, args in analyses.items():
        if tool not in ANALYSIS_TOOLS:
            raise LitvisionError(f"{where}: analysis tool {tool!r} is not one of {list(ANALYSIS_TOOLS)}")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise LitvisionError(f"{where}: arguments of {tool} must be a list of strings")
    data_sizes = data.get("data") or {}
    if not isinstance(data_sizes, dict):
        raise LitvisionError(f"{where}: 'data' must map datasets to subset sizes")
    return Scale(
        name=name,
        description=" ".join(str(data.get("description", name)).split()),
        data=data_sizes,
        runs=[(str(p), dict(a)) for p, a in runs.items()],
        analyses={t: list(a) for t, a in analyses.items()},
    )
