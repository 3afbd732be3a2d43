"""A search space: a YAML file that maps config keys (any key ``litvision fit`` takes) to the values a
search may give them (docs/search.md)::

    model.optimizer.init_args.lr: {type: float, low: 1.0e-4, high: 0.1, log: true}
    model.backbone.init_args.width: {type: int, low: 16, high: 128, step: 16}
    model.backbone.init_args.activation: {choices: [relu, leaky_relu, elu]}
    model.optimizer:                     # a choice whose values enable keys of their own
      choices:
        torch.optim.SGD: {model.optimizer.init_args.momentum: {type: float, low: 0.0, high: 0.99}}
        torch.optim.Adam: {}

Each key becomes an Optuna distribution of the same name; a trial's values become ``--key=value``
arguments of ``fit``, a choice before the keys it enables.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from litvision.errors import LitvisionError
from litvision.utils import read_yaml

SPEC_KEYS = {"type", "low", "high", "log", "step", "choices"}
TYPES = ("float", "int", "categorical")


@dataclass(frozen=True)
class Param:
    """One key of the space: its distribution and, for a choice, the keys each value enables. Its Optuna
    name is the key, or, for a key that several choices enable with different ranges (the learning rate
    of each optimizer), ``KEY (CHOICE)``: Optuna gives one name one distribution."""

    key: str
    distribution: BaseDistribution
    enables: dict[Any, tuple[Param, ...]] = field(default_factory=dict)
    name: str = ""  # set by load_space
    under: str = ""  # the choice that enables the key, if any

    def suggest(self, trial: optuna.Trial) -> Any:
        d, name = self.distribution, self.name
        if isinstance(d, FloatDistribution):
            return trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
        if isinstance(d, IntDistribution):
            return trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
        return trial.suggest_categorical(name, d.choices)

    def grid(self, points: int) -> list[Any]:
        """``points`` values spread over the range (evenly, or evenly in log for ``log``); every choice."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return list(d.choices)
        spread = np.geomspace if d.log else np.linspace
        values = spread(d.low, d.high, points).tolist()
        if isinstance(d, IntDistribution):
            return sorted({int(round(v)) for v in values})
        return values


@dataclass(frozen=True)
class SearchSpace:
    path: Path
    params: tuple[Param, ...]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """The trial's values, in argument order (a choice before the keys it enables)."""
        values: dict[str, Any] = {}

        def visit(params: Sequence[Param]) -> None:
            for param in params:
                values[param.key] = value = param.suggest(trial)
                visit(param.enables.get(value, ()))

        visit(self.params)
        return values

    def every_param(self) -> Iterator[tuple[Param, dict[str, Any]]]:
        """Each key, with the choices of the keys above it that enable it."""

        def walk(params: Sequence[Param], above: dict[str, Any]) -> Iterator[tuple[Param, dict[str, Any]]]:
            for param in params:
                yield param, above
                for choice, enabled in param.enables.items():
                    yield from walk(enabled, {**above, param.key: choice})

        return walk(self.params, {})

    def examples(self) -> list[dict[str, Any]]:
        """Value sets that use every key and every choice at least once, to check them against the config
        before a study starts: the lowest value or first choice of each key, then each choice in turn."""

        def values(params: Sequence[Param], forced: dict[str, Any]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for param in params:
                d = param.distribution
                first = d.choices[0] if isinstance(d, CategoricalDistribution) else d.low
                out[param.key] = value = forced.get(param.key, first)
                out.update(values(param.enables.get(value, ()), forced))
            return out

        sets = [values(self.params, {})]
        for param, above in self.every_param():
            if isinstance(param.distribution, CategoricalDistribution):
                sets += [values(self.params, {**above, param.key: c}) for c in param.distribution.choices[1:]]
        return sets

    def grid(self, points: int) -> dict[str, list[Any]]:
        """Optuna's GridSampler space: ``points`` values per numeric key, every choice."""
        return {param.name: param.grid(points) for param, _ in self.every_param()}

    def as_dict(self) -> dict[str, Any]:
        """The space as stored with a study: a resumed study must search the same one."""
        return yaml.safe_load(self.path.read_text())


def load_space(path: Path) -> SearchSpace:
    """Read a space file; a one-line error for anything that is not a space."""
    path = Path(path)
    data = read_yaml(path, "search space")
    if not data:
        raise LitvisionError(f"search space '{path}' holds no keys: map config keys to ranges or choices")
    params = _params(data, path)
    ranges: dict[str, set[str]] = {}
    for param, _ in SearchSpace(path, params).every_param():
        ranges.setdefault(param.key, set()).add(repr(param.distribution))
    differing = {key for key, found in ranges.items() if len(found) > 1}
    for key in sorted(differing & {param.key for param in params}):
        raise LitvisionError(
            f"search space '{path}': '{key}' is given at the top level and, with another range, under a "
            "choice; give it in one place"
        )
    return SearchSpace(path, _named(params, differing))


def _named(params: tuple[Param, ...], keys: set[str]) -> tuple[Param, ...]:
    """The params with each key of ``keys`` that a choice enables named after its choice."""
    return tuple(
        replace(
            p,
            name=f"{p.key} ({p.under})" if p.key in keys and p.under else p.key,
            enables={c: _named(sub, keys) for c, sub in p.enables.items()},
        )
        for p in params
    )


def _params(data: Mapping[Any, Any], path: Path, under: str = "") -> tuple[Param, ...]:
    return tuple(_param(str(key), spec, path, under) for key, spec in data.items())


def _param(key: str, spec: Any, path: Path, under: str = "") -> Param:
    where = f"search space '{path}', key '{key}'"
    if not isinstance(spec, Mapping):
        raise LitvisionError(
            f"{where}: {spec!r} is not a range or choices; give {{type: float, low: A, high: B}}, "
            "{type: int, low: A, high: B} or {choices: [...]}"
        )
    unknown = sorted(set(map(str, spec)) - SPEC_KEYS)
    if unknown:
        raise LitvisionError(
            f"{where}: unknown field '{unknown[0]}'; the fields are {', '.join(sorted(SPEC_KEYS))}"
        )
    kind = spec.get("type", "categorical" if "choices" in spec else None)
    if kind not in TYPES:
        raise LitvisionError(
            f"{where}: type {kind!r} is invalid: use float, int or categorical (with choices)"
        )
    if kind == "categorical":
        choices = spec.get("choices")
        if isinstance(choices, Mapping):  # each choice with the keys it enables
            enables = {c: _params(sub or {}, path, str(c).rsplit(".", 1)[-1]) for c, sub in choices.items()}
            choices = list(choices)
        else:
            enables = {}
        if not isinstance(choices, list) or not choices:
            raise LitvisionError(f"{where}: choices {choices!r} are empty; list at least one value")
        bad = [c for c in choices if c is not None and not isinstance(c, bool | int | float | str)]
        if bad:
            raise LitvisionError(f"{where}: choice {bad[0]!r} is not a number, string, boolean or null")
        return Param(
            key, CategoricalDistribution(choices), {c: p for c, p in enables.items() if p}, under=under
        )
    missing = [name for name in ("low", "high") if name not in spec]
    if missing:
        raise LitvisionError(f"{where}: a {kind} range needs low and high ({missing[0]} is missing)")
    low, high, log, step = spec["low"], spec["high"], bool(spec.get("log", False)), spec.get("step")
    number = int if kind == "int" else (int, float)
    for name, value in (("low", low), ("high", high), ("step", step)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, number)):
            raise LitvisionError(
                f"{where}: {name} {value!r} is not {'an integer' if kind == 'int' else 'a number'}"
            )
    if low > high:
        raise LitvisionError(f"{where}: the range [{low}, {high}] is empty: low must be at most high")
    try:
        if kind == "int":
            return Param(
                key, IntDistribution(low, high, log=log, step=1 if step is None else step), under=under
            )
        return Param(key, FloatDistribution(low, high, log=log, step=step), under=under)
    except ValueError as err:  # Optuna's own checks: log with low <= 0, log with a step, ...
        raise LitvisionError(f"{where}: {err}") from None
