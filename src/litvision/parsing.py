"""The argument parser of every litvision command: jsonargparse's, with each error in one line (a
"did you mean" for a misspelt key or choice) instead of the usage and a nested report of union
types, and no prefix matching of options (``--trainer.max_epoch`` is an error, not ``max_epochs``).

:class:`OneLineErrors` is a mixin for any jsonargparse parser class (Lightning's CLI uses it on its own
parser class); :class:`Parser` is jsonargparse's with it, the parser of ``analyze``, ``reproduce`` and
the top-level help.
"""

from __future__ import annotations

import difflib
import importlib
import itertools
import re
import sys
import textwrap
from argparse import SUPPRESS
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any, NoReturn

import jsonargparse
import yaml
from jsonargparse import ActionConfigFile, DefaultHelpFormatter

from litvision.utils import import_object

# An unknown key in each of jsonargparse's and argparse's wordings (the group: the key as given).
_UNKNOWN_KEY = (
    re.compile(r"unrecognized arguments: (--[^\s=]+)"),
    re.compile(r"does not accept option '([^']+)'"),
    re.compile(r"Option '([^']+)' is not accepted"),
    re.compile(r'Key "([^"]+)" is not expected'),
    re.compile(r"ambiguous option: (--[^\s=]+)"),
)
_KEY = re.compile(r'Parser key "([^"]+)"')
_CLASS = re.compile(r"class_path[= ]'([^']+)'")
_EXPECTED = re.compile(r"Expected an? <class '([\w.]+)'>")
_GIVEN = re.compile(
    r"(?:Given value: |Expected a path but )(.*?)(?: either not accessible.*|\. Got value: .*)?$"
)
_IMPORT = re.compile(r"(module '[\w.]+' has no attribute '\w+'|No module named '[\w.]+')")
_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")
# Lines of a nested report that say nothing of the cause.
_NOISE = re.compile(
    r"^(- )?(Does not validate against any of the Union subtypes|Subtypes: |Errors:$|Expected a "
    r"<class 'NoneType'>|Given value type: |Given value: |Expected a path but |Expected a dot import|"
    r"Problem with given class_path)"
)


class HelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help, shortened: a usage line that groups dotted options (``[--model.OPTION VALUE
    ...]``) when there are many; the options under ``brief_prefixes`` described by their first sentence
    and default; a class option's known subclasses by name (a long list left to ``--KEY.help``), without
    an entry of its own for ``--KEY.help``."""

    brief_prefixes: tuple[str, ...] = ()
    max_listed_subclasses = 10
    max_usage_options = 12

    def add_argument(self, action: Any) -> None:
        if type(action).__name__ != "_ActionHelpClassPath":  # said in the option's own entry
            super().add_argument(action)

    def _format_usage(self, usage: str | None, actions: Iterable[Any], *args: Any, **kwargs: Any) -> str:
        actions = list(actions)
        optionals = [a for a in actions if a.option_strings and a.help != SUPPRESS]
        if usage is not None or len(optionals) <= self.max_usage_options:
            return super()._format_usage(usage, actions, *args, **kwargs)
        groups = dict.fromkeys(
            a.option_strings[-1].split(".", 1)[0] for a in optionals if "." in a.option_strings[-1]
        )
        plain = [
            a for a in optionals if "." not in a.option_strings[-1] and a.option_strings[-1] not in groups
        ]
        words = [self._format_actions_usage([a], []) for a in plain]
        words += [f"[{group}.OPTION VALUE ...]" for group in groups]
        words += [self._format_actions_usage([a], []) for a in actions if not a.option_strings]
        prefix = "usage: "
        # Non-breaking spaces keep each option whole on its line.
        text = textwrap.fill(
            f"{self._prog} " + " ".join(w.replace(" ", "\0") for w in words if w),
            width=max(self._width, 40),
            initial_indent=prefix,
            subsequent_indent=" " * (len(prefix) + len(self._prog) + 1),
            break_on_hyphens=False,
            break_long_words=False,
        )
        return text.replace("\0", " ") + "\n\n"

    def _get_help_string(self, action: Any) -> str:
        text = super()._get_help_string(action)
        brief = action.dest.startswith(self.brief_prefixes) and action.help
        if brief:
            text = _first_sentence(action.help) + re.sub(
                r"type: .*?(, default: |\)$)", r"\1", text[len(action.help) :]
            )
            text = text.replace("(, ", "(")
        listed = re.search(r", known subclasses: (.*)\)$", text, flags=re.S)
        if listed is not None:
            paths = [p.strip() for p in listed.group(1).split(",")]
            option = action.option_strings[-1].rstrip("+") if action.option_strings else action.dest
            if len(paths) > self.max_listed_subclasses:
                shown = f"; {len(paths)} known classes, {option}.help CLASS shows one's options"
            else:
                shown = f"; known: {', '.join(paths)} ({option}.help CLASS shows one's options)"
            text = text[: listed.start()] + shown + ")"
        return text


class OneLineErrors:
    """Mixin for a jsonargparse ``ArgumentParser`` class (or argparse's): an error ends the program with
    exit status 2 and one line on stderr, ``PROG: error: MESSAGE``; options are never abbreviated; a
    jsonargparse parser's help is :class:`HelpFormatter`'s."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        if issubclass(type(self), jsonargparse.ArgumentParser):  # argparse's parsers keep their own
            kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        # The parsers jsonargparse builds inside a parse (exit_on_error=False) raise: the outer parser
        # reports their message.
        if not getattr(self, "exit_on_error", True):
            super().error(message, ex)  # type: ignore[misc]
        parser = getattr(ex, "subcommand_parser", None) or self
        print(f"{command_name(parser)}: error: {one_line(message, parser)}", file=sys.stderr)
        sys.exit(2)


class Parser(OneLineErrors, jsonargparse.ArgumentParser):
    """jsonargparse's ``ArgumentParser`` with :class:`OneLineErrors`; ``config``: a command's parser, with
    ``--config`` (jsonargparse also builds this class for the types it parses)."""

    def __init__(self, *args: Any, config: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("default_env", False)
        super().__init__(*args, **kwargs)
        if config:
            self.add_argument("--config", action=ActionConfigFile, help="a YAML file of these options")


def one_line(message: str, parser: Any = None) -> str:
    """``message`` (one of jsonargparse's, possibly a nested report over many lines) as one line: the
    key, the value given and the innermost cause, with a suggestion where a name is close to a known one."""
    keys = [k for k, _ in itertools.groupby(_KEY.findall(message))]  # a class's key is named twice
    key = ".".join(keys)
    unknown = next((m.group(1) for p in _UNKNOWN_KEY for m in [p.search(message)] if m), None)
    if unknown is not None:
        return _unknown_key(unknown.lstrip("-"), key or None, message, parser)
    choice = _CHOICE.search(message)
    if choice is not None:
        given, allowed = choice.group(1), re.findall(r"'([^']*)'", choice.group(2))
        return f"'{given}' is not one of {', '.join(allowed)}{suggestion(given, allowed)}"
    if not keys:
        return " ".join(line.strip() for line in message.splitlines() if line.strip())
    lines = [line.strip(" -") for line in message.splitlines()]
    given = next((m.group(1) for line in lines for m in [_GIVEN.match(line)] if m), None)
    if given is None:  # a plain type's error: "Expected a <class 'int'>. Got value: three"
        found = re.search(r"Got value: (.*)$", message, flags=re.M)
        given = found.group(1) if found else None
    missing = _IMPORT.search(message)
    if missing is not None:
        found = _CLASS.findall(message)
        value = found[-1] if found else given
        return f"--{key}: cannot import {value!r} ({missing.group(1)}){_import_suggestion(value)}"
    expected = [t for t in dict.fromkeys(_EXPECTED.findall(message)) if t != "NoneType"]
    if expected and given is not None:
        kinds = " or ".join(f"a{'n' if t[0] in 'aeiou' else ''} {t.rsplit('.', 1)[-1]}" for t in expected)
        return f"--{key}: {given!r} is not {kinds}"
    causes = []
    for line in message.splitlines():
        line = _KEY.sub("", line.strip()).strip(" :-")
        if line and not _NOISE.search(line):
            causes.append(line)
    return f"--{key}: " + "; ".join(dict.fromkeys(causes))


def suggestion(name: str, known: Iterable[str], prefix: str = "") -> str:
    """``; did you mean X?`` with the known name closest to ``name``, or nothing if none is close. A
    dotted name is compared with its siblings by its last part: a shared ``model.`` would make any two
    options of the model look alike."""
    known = [k for k in known if k]
    head, _, tail = name.rpartition(".")
    siblings = [k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == head]
    if head and siblings:
        close = [f"{head}.{c}" for c in difflib.get_close_matches(tail, siblings, n=1, cutoff=0.7)]
    else:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return f"; did you mean {prefix}{close[0]}?" if close else ""


def command_name(parser: Any) -> str:
    """The command as a user types it (``litvision fit``), from a parser's ``prog``."""
    return str(getattr(parser, "prog", "") or "").replace(" [options]", "") or "litvision"


def _unknown_key(name: str, parent: str | None, message: str, parser: Any) -> str:
    if parent is None:
        known = [o.lstrip("-") for o in _option_strings(parser)]
        help_ = f"; '{command_name(parser)} --help' lists the options"
        if "does not accept option" in message:  # a key of a config file
            return f"unknown key {name} in a config file{suggestion(name, known) or help_}"
        return f"unknown option --{name}{suggestion(name, known, prefix='--') or help_}"
    # An option of a class chosen by class_path: the model's network, a dataset, an optimizer.
    name = name.removeprefix("init_args.")
    found = _CLASS.findall(message)
    if not found:
        return f"--{parent}.{name}: unknown option"
    class_path = found[-1]  # the innermost: a nested class's (a dataset's imbalance profile)
    close = suggestion(name, _class_options(class_path))
    return f"--{parent}.{name}: {class_path.rsplit('.', 1)[-1]} has no option '{name}'{close}"


def _first_sentence(text: str) -> str:
    found = re.match(r"(.+?[.!?])(\s|$)", " ".join(text.split()))
    return found.group(1) if found else text


def _option_strings(parser: Any) -> list[str]:
    if parser is None:
        return []
    return [s for action in parser._actions for s in action.option_strings if s.startswith("--")]


def _class_options(class_path: str) -> list[str]:
    """The constructor options of the class at ``class_path``, as jsonargparse knows them (those of
    its bases reached through ``**kwargs`` included); none if it cannot tell."""
    try:
        options = jsonargparse.ArgumentParser(exit_on_error=False)
        options.add_class_arguments(import_object(class_path))
    except Exception:  # a suggestion is a courtesy, never an error of its own
        return []
    return [s.lstrip("-") for s in _option_strings(options) if s != "--help" and not s.endswith(".help")]


def _import_suggestion(class_path: str | None) -> str:
    """``; did you mean M.X?`` when ``class_path``'s module imports and has a name close to its last part."""
    if not class_path or "." not in class_path:
        return ""
    module, _, name = class_path.rpartition(".")
    try:
        names = [n for n in dir(importlib.import_module(module)) if not n.startswith("_")]
    except Exception:  # a suggestion is a courtesy, never an error of its own
        return ""
    return suggestion(name, names, prefix=f"{module}.")


def cli_value(value: Any) -> str:
    """A value as a ``--key=value`` argument that reads back as the same value (``1.0e-05``, not the
    ``1e-05`` that YAML would read as a string); a path as its text."""
    if isinstance(value, (str, PurePath)):
        return str(value)
    flow = yaml.safe_dump(value, default_flow_style=True, width=float("inf"))  # one line, however long
    return flow.removesuffix("\n...\n").strip()


def options(values: Mapping[str, Any]) -> list[str]:
    """Arguments (dotted keys) as command-line options, ``--key=value``."""
    return [f"--{key}={cli_value(value)}" for key, value in values.items()]
