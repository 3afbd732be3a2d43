"""What to run: report plans (``configs/experiments/NNN.yaml``), sweeps (``configs/sweeps/*.yaml``) and
scales (``configs/experiments/scales/*.yaml``) as typed dataclasses that jsonargparse reads and checks;
then what types cannot say (configs exist, tables name the plan's runs and known metrics). A run is an
ordinary config plus overrides (dotted keys); a sweep point that changes nothing is its config's run.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from jsonargparse import ArgumentError

from litvision.analysis.cli import BY_NAME
from litvision.errors import LitvisionError
from litvision.parsing import Parser, cli_value, one_line
from litvision.utils import lookup, read_yaml

T = TypeVar("T")
# The tools a plan may ask for: those that declare the file that shows they ran.
ANALYSIS_TOOLS = tuple(name for name, tool in BY_NAME.items() if tool.done)


@dataclass(frozen=True)
class Run:
    """One training run: ``litvision fit --config CONFIG --key=value ...``, at one of its seeds. In a plan
    file: a config path, or ``{config, overrides, plain_reference}``."""

    config: str
    overrides: dict = field(default_factory=dict)  # a plain dict: its class_paths are kept as written
    plain_reference: bool = False  # also retrained by the plain PyTorch loop (litvision.plain)
    report: str = ""
    name: str = ""  # its directory, unique within its report
    seed: int = 0  # 0: the config's own seeds; k: each moved by k, in the directory <name>-seed<k>

    @property
    def id(self) -> str:
        return f"{self.report}/{self.name}"

    @property
    def base(self) -> str:
        """The name of the run all of whose seeds this one is (the scales' patterns match its id)."""
        return self.name.removesuffix(f"-seed{self.seed}") if self.seed else self.name

    def with_seed(self, seed: int) -> Run:
        return replace(self, name=f"{self.base}-seed{seed}" if seed else self.base, seed=seed)


@dataclass
class Row:
    """A row of a runs table: one run's values of the table's metrics (or its own ``metrics``)."""

    label: str
    run: str
    published: list[float | None]
    metrics: list[str] | None = None


@dataclass
class Table:
    """``runs``: a row per run; ``per_class``: a column per run, published values per class id, per range
    of class ids (``"0-4"``: their mean accuracy) and for ``total``."""

    title: str
    kind: Literal["runs", "per_class"] = "runs"
    metrics: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)  # per_class: column label -> run name
    published: dict[int | str, list[float | None]] = field(default_factory=dict)


@dataclass
class Analysis:
    """A figure: ``litvision analyze TOOL`` on some of the plan's runs (the loss landscape: a config)."""

    tool: str
    runs: list[str] = field(default_factory=list)
    caption: str = ""
    args: list[str] = field(default_factory=list)
    config: str | None = None
    name: str | None = None

    @property
    def key(self) -> str:
        """Its name within its plan (its output folder when it writes into no single run)."""
        suffix = self.name or "+".join(self.runs)
        return f"{self.tool}-{suffix}" if suffix else self.tool

    @property
    def single(self) -> bool:
        """Whether it analyses one run, writing into that run's ``analysis/`` folder."""
        return self.tool != "loss-landscape" and len(self.runs) == 1


@dataclass
class Cell:
    """A number of a report: a run's metric, or (``classes``: ``"0-4"``, ``3``, ``total``) its test
    accuracy over those classes, as a per-class table shows it."""

    run: str
    metric: str = "test_acc"
    classes: int | str | None = None


@dataclass
class Finding:
    """An ordering the report states, ``higher`` above ``lower``; our report says whether ours agree."""

    claim: str
    higher: Cell
    lower: Cell


@dataclass
class Plan:
    """A report's runs, tables, figures and findings (``configs/experiments/NNN.yaml``)."""

    title: str
    source: str = ""
    notes: list[str] = field(default_factory=list)
    # name -> Run; in the file a config or a mapping, read as a plain dict (dict[str, Any] would have
    # jsonargparse build the classes a run's overrides name)
    runs: dict = field(default_factory=dict)
    sweeps: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    analyses: list[Analysis] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    id: str = ""  # the file's name
    path: Path = Path()

    def unique_runs(self) -> list[Run]:
        return list({run.name: run for run in self.runs.values()}.values())  # one per directory

    def published(self, cell: Cell) -> float | None:
        """The report's own value of ``cell``, from the first of the plan's tables that shows it."""
        return next(iter(self.shown(cell)), None)

    def shown(self, cell: Cell) -> list[float | None]:
        """The published values of ``cell`` in the plan's tables, one per table that shows it."""
        values = []
        for table in self.tables:
            if cell.classes is None:
                rows = [row for row in table.rows if row.run == cell.run and cell.metric in row.metrics]
                values += [row.published[row.metrics.index(cell.metric)] for row in rows[:1]]
            elif cell.classes in table.published and cell.run in table.columns.values():
                values.append(table.published[cell.classes][list(table.columns.values()).index(cell.run)])
        return values


@dataclass
class Sweep:
    """A base config and its points: ``argument`` over ``values``, or named ``points`` of overrides;
    each point is a run ``<name>-<label>``."""

    config: str
    name: str | None = None  # default: the file's name
    argument: str | None = None
    values: list | None = None
    points: dict | None = None


@dataclass
class Scale:
    """How much of each run to train: ``full`` is the reports' own recipes; a scale file changes some.
    Each mapping from run patterns is matched against ``<report>/<run>`` (fnmatch), the later winning."""

    name: str = "full"
    description: str = "the reports' own recipes"  # a file's default: its name
    scaled_down: bool = False  # every run shrunk (a file's default); false: the recipes kept
    data: dict[str, dict[str, int]] = field(default_factory=dict)  # dataset -> images per class
    runs: dict = field(default_factory=dict)  # pattern -> fit arguments
    analyses: dict[str, list[str]] = field(default_factory=dict)  # tool -> arguments
    reduced: dict[str, str] = field(default_factory=dict)  # pattern -> the budget in words
    needs_gpu: dict[str, str] = field(default_factory=dict)  # pattern -> why it is not run here
    seeds: dict[str, int] = field(default_factory=dict)  # pattern -> number of seeds
    plain_reference: list[str] | None = None  # only these runs get their plan's plain loop
    notes: dict[str, list[str]] = field(default_factory=dict)  # report id -> notes at this scale
    reports: list[str] | None = None  # the plans its report covers (None: the numbered reports)
    queue: list[str] = field(default_factory=list)  # run patterns: the queue's order (default: the plans')

    def _match(self, run: Run | str, entries: dict[str, T]) -> list[T]:
        """The values of the patterns that match a run's ``report/run`` (its seeds alike), in order."""
        run_id = run if isinstance(run, str) else f"{run.report}/{run.base}"
        return [value for pattern, value in entries.items() if fnmatch.fnmatchcase(run_id, pattern)]

    def arguments(self, run: Run) -> dict[str, Any]:
        """The fit arguments of every pattern that matches the run, the later pattern winning."""
        return {key: value for args in self._match(run, self.runs) for key, value in args.items()}

    def gpu_reason(self, run: Run | str) -> str | None:
        """Why this scale leaves a run (or an analysis that trains networks of its own, by its id
        ``report/loss-landscape``) to a GPU; None: it runs here. The one place that decides it."""
        return ([None, *self._match(run, self.needs_gpu)])[-1]

    def budget(self, run: Run) -> str:
        """The run's budget in words: the report's recipe, how this scale reduces it, or needs a GPU."""
        if self.gpu_reason(run):
            return "needs a GPU"
        recipe = ["published recipe", *self._match(run, self.reduced)][-1]
        return "scaled down" if self.scaled_down else recipe

    def seed_count(self, run: Run, seeds: int | None = None) -> int:
        """The seeds the run gets: ``seeds`` (the command line) if given, else this scale's, else 1."""
        return seeds or [1, *self._match(run, self.seeds)][-1]

    def analysed(self, analysis: Analysis, runs: dict[str, Run]) -> list[str]:
        """The runs an analysis reads at this scale: a figure of several (curves) leaves out those left
        to a GPU; a figure of one such run has none."""
        here = [name for name in analysis.runs if not self.gpu_reason(runs[name])]
        return here if analysis.tool == "curves" or here == analysis.runs else []

    def has_plain_reference(self, run: Run) -> bool:
        chosen = self.plain_reference is None or any(
            fnmatch.fnmatchcase(run.id, p) for p in self.plain_reference
        )
        return run.plain_reference and not run.seed and chosen


def parse(kind: type[T], data: dict[str, Any], where: str) -> T:
    """``data`` as the dataclass ``kind``, checked by jsonargparse; its error in one line."""
    known = {f.name for f in fields(kind)}  # jsonargparse lets an unknown key with the value {} pass
    unknown = sorted(set(data) - known)
    if unknown:
        raise LitvisionError(f"{where}: unknown key {unknown[0]!r}; allowed: {sorted(known)}")
    parser = Parser(exit_on_error=False)
    parser.add_class_arguments(kind, "file")
    try:
        return parser.instantiate(parser.parse_object({"file": data})).file
    except ArgumentError as err:
        raise LitvisionError(f"{where}: {one_line(str(err)).replace('file.', '')}") from None


def check(ok: bool, where: str, problem: str) -> None:
    if not ok:
        raise LitvisionError(f"{where}: {problem}")


def word(name: Any, where: str, what: str) -> str:
    """A name that names a directory or a file: one word."""
    one_word = isinstance(name, str) and name and "/" not in name and " " not in name
    check(one_word, where, f"{what} {name!r} must be one word (it names a directory)")
    return name


def one_of(where: str, what: str, names: list[Any], known: Any, among: str = "") -> None:
    for name in names:
        check(name in known, where, f"{what} {name!r} is not one of {among}{sorted(known)}")


def class_range(key: Any) -> bool:
    """Whether ``key`` is a range of class ids upwards, ``"0-4"``."""
    span = re.fullmatch(r"(\d+)-(\d+)", str(key))
    return bool(span and int(span[1]) < int(span[2]))


def contained(value: Any, base: Any) -> bool:
    """Whether ``value`` asks for nothing that ``base`` does not already have."""
    if isinstance(value, dict):
        return isinstance(base, dict) and all(k in base and contained(v, base[k]) for k, v in value.items())
    if isinstance(value, (int, float)) and isinstance(base, (int, float)) and not isinstance(value, bool):
        return float(value) == float(base)
    return value == base


def load_sweep(path: Path | str) -> Sweep:
    where = f"sweep '{path}'"
    sweep = parse(Sweep, read_yaml(path, "sweep"), where)
    check(Path(sweep.config).is_file(), where, f"config '{sweep.config}' not found")
    sweep.name = word(sweep.name or Path(path).stem, where, "name")
    either = (sweep.points is None) != (sweep.argument is None)
    check(either, where, "give either 'argument' with 'values', or 'points'")
    if sweep.argument is not None:
        sweep.points = {cli_value(v): {sweep.argument: v} for v in sweep.values or []}
        check(len(sweep.points) == len(sweep.values or []) > 0, where, "'values' is empty or has duplicates")
    for label, overrides in (sweep.points or {}).items():
        point = word(label, where, "point name")
        check(isinstance(overrides, dict), where, f"point {point!r} must map arguments to values")
    return sweep


def sweep_runs(sweep: Sweep, report: str) -> dict[str, Run]:
    """The sweep's points as runs; a point that changes nothing is the base config's own run."""
    base, runs = read_yaml(sweep.config, "config"), {}
    for label, overrides in (sweep.points or {}).items():
        noop = all(contained(v, lookup(base, k)[1]) and lookup(base, k)[0] for k, v in overrides.items())
        name = Path(sweep.config).stem if noop else f"{sweep.name}-{label}"
        runs[f"{sweep.name}-{label}"] = Run(sweep.config, {} if noop else overrides, report=report, name=name)
    return runs


def load_plan(path: Path, metrics: set[str]) -> Plan:
    """A report plan, checked: every config, sweep, run, metric and tool it names exists (config paths
    are relative to the current directory, the repository)."""
    where = f"plan '{path}'"
    plan = parse(Plan, read_yaml(path, "plan"), where)
    plan.id, plan.path, runs, ours = path.stem, path, {}, "the plan's runs "
    for name, entry in plan.runs.items():
        at = f"{where}, run '{word(name, where, 'run name')}'"
        check(isinstance(entry, (str, dict)), at, "give a config, or {config, overrides, plain_reference}")
        run = parse(Run, {"config": entry} if isinstance(entry, str) else entry, at)
        cwd = f"(paths are relative to '{Path.cwd()}')"
        check(Path(run.config).is_file(), at, f"config '{run.config}' not found {cwd}")
        runs[name] = replace(run, report=plan.id, name=name)
    for sweep in plan.sweeps:
        for name, run in sweep_runs(load_sweep(sweep), plan.id).items():
            check(name not in runs, where, f"sweep '{sweep}' names run '{name}' again")
            runs[name] = run
    plan.runs, by_dir = runs, {}
    for run in runs.values():
        shared = by_dir.setdefault(run.name, run) != run
        check(not shared, where, f"two different runs would share the directory '{run.name}'")
    for table in plan.tables:
        at = f"{where}, table '{table.title}'"
        for row in table.rows:
            row.metrics = row.metrics or list(table.metrics)
            for values, what in ((row.metrics, "metrics"), (row.published, "published")):
                count = f"'{what}' must list {len(table.metrics)} value(s)"
                check(len(values) == len(table.metrics), f"{at}, row '{row.label}'", count)
        one_of(at, "run", [*table.columns.values(), *(row.run for row in table.rows)], runs, ours)
        one_of(at, "metric", [*table.metrics, *(m for row in table.rows for m in row.metrics)], metrics)
        for key, values in table.published.items():
            what = "class ids (0, 1, ...), a range of them ('0-4': their mean accuracy) or 'total'"
            a_key = key == "total" or isinstance(key, int) or class_range(key)
            check(a_key, at, f"'published' keys are {what}, not {key!r}")
            count = f"'published' must list {len(table.columns)} value(s)"
            check(len(values) == len(table.columns), f"{at}, class {key}", count)
    for analysis in plan.analyses:
        at = f"{where}, analysis"
        one_of(at, "tool", [analysis.tool], ANALYSIS_TOOLS)
        one_of(at, "run", analysis.runs, runs, ours)
        if analysis.tool == "loss-landscape":
            takes = not analysis.runs and analysis.config is not None
            check(takes, at, "loss-landscape takes a 'config', not runs")
            check(Path(analysis.config).is_file(), at, f"config '{analysis.config}' not found")
        else:
            one_or_more = len(analysis.runs) == 1 or (analysis.tool == "curves" and analysis.runs)
            check(one_or_more, at, f"tool {analysis.tool} analyses one run ('curves': one or more)")
        word(analysis.name or "-", at, "name")
        analysis.caption = analysis.caption or analysis.tool
    keys = [a.key for a in plan.analyses]
    check(
        len(set(keys)) == len(keys), where, f"two analyses share a name ({keys}); give them different 'name's"
    )
    for finding in plan.findings:
        at = f"{where}, finding '{finding.claim}'"
        finding.claim = " ".join(finding.claim.split())
        sides = {f"{at}, higher": finding.higher, f"{at}, lower": finding.lower}
        for side, cell in sides.items():
            one_of(side, "run", [cell.run], runs, ours)
            one_of(side, "metric", [cell.metric], metrics)
            classes = cell.classes
            a_class = cell.metric == "test_acc" and (str(classes).isdigit() or class_range(classes))
            what = "must be a class id or a range ('0-4') of the test accuracy (metric test_acc)"
            check(classes is None or a_class, side, f"'classes' {classes!r} {what}")
            cell.classes = int(classes) if str(classes).isdigit() else classes
        for side, cell in sides.items():
            check(bool(plan.shown(cell)), side, "not a cell of the plan's tables (a finding compares two)")
        high, low = plan.published(finding.higher), plan.published(finding.lower)
        order = f"the published values ({high} and {low}) do not put 'higher' above 'lower'"
        check(high is None or low is None or high > low, at, order)
    plan.notes = [" ".join(note.split()) for note in plan.notes]
    return plan


def available_plans(plans_dir: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(plans_dir.glob("*.yaml"))}


def is_numbered(plan_id: str) -> bool:
    """Whether a plan is one of the numbered reports (000 ... 004), those ``all`` means; the others (such
    as cifar10_lt, too long for the quick scale) run only when named."""
    return re.fullmatch(r"\d{3}", plan_id) is not None


def select_plans(names: list[str], plans_dir: Path) -> list[Path]:
    """The plan files of the reports named (``all`` or none: the numbered reports of ``plans_dir``)."""
    known = available_plans(plans_dir)
    where = "run litvision reproduce in the repository, or give --plans"
    check(bool(known), f"no report plans (*.yaml) in '{plans_dir}'", where)
    if not names or names == ["all"]:
        return [path for plan_id, path in known.items() if is_numbered(plan_id)]
    unknown = [n for n in names if n not in known]
    choose = f"choose from {list(known)} or all (the numbered reports)"
    check(not unknown, f"report(s) {unknown} not found in '{plans_dir}'", choose)
    return [known[n] for n in dict.fromkeys(names)]


def load_scale(name: str, scales_dir: Path) -> Scale:
    """``full`` (the reports' own recipes) or a scale file ``scales_dir/NAME.yaml``."""
    if name == "full":
        return Scale()
    path = scales_dir / f"{name}.yaml"
    if not path.is_file():
        known = ["full", *sorted(p.stem for p in scales_dir.glob("*.yaml"))]
        raise LitvisionError(f"scale '{name}' not found: choose from {known}")
    where, defaults = f"scale '{path}'", {"description": name, "scaled_down": True}
    scale = parse(Scale, {**defaults, **read_yaml(path, "scale"), "name": name}, where)
    one_of(where, "analysis tool", list(scale.analyses), ANALYSIS_TOOLS)
    runs_ok = all(isinstance(v, dict) for v in scale.runs.values())
    check(runs_ok, where, "'runs' must map run patterns to arguments")
    check(all(n >= 1 for n in scale.seeds.values()), where, "'seeds' must be 1 or more")
    words = lambda text: " ".join(str(text).split())  # noqa: E731  (YAML's folded text on one line)
    scale.description = words(scale.description)
    scale.reduced = {p: words(v) for p, v in scale.reduced.items()}
    scale.needs_gpu = {p: words(v) for p, v in scale.needs_gpu.items()}
    scale.notes = {k: [words(n) for n in v] for k, v in scale.notes.items()}
    return scale
