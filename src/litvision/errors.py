"""Errors that the command line reports as one line instead of a traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


class LitvisionError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class DataNotFoundError(LitvisionError):
    """A dataset is not on disk and could not be downloaded."""


class NonFiniteError(LitvisionError):
    """Training diverged: the loss or the weights became nan or inf (a search records the trial as
    failed and goes on)."""


def one_line_cause(err: BaseException | None) -> str | None:
    """The message of the LitvisionError behind ``err`` (found through its causes: the config parser
    and DataLoader workers wrap them), or None if there is none. PyTorch re-raises an error of a loader
    worker with the worker's traceback as its text: its last line is the original message."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, LitvisionError):
            lines = [line for line in str(err).splitlines() if line.strip()]
            if len(lines) <= 1:
                return str(err)
            return lines[-1].split(f"{type(err).__name__}: ", 1)[-1]
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


@contextmanager
def one_line_errors(prog: str) -> Iterator[None]:
    """The ``main`` of every command: an error with a LitvisionError behind it ends the program with
    ``PROG: error: <message>`` on stderr and exit status 1; any other error keeps its traceback."""
    try:
        yield
    except Exception as err:
        cause = one_line_cause(err)
        if cause is None:
            raise
        print(f"{prog}: error: {cause}", file=sys.stderr)
        raise SystemExit(1) from None
