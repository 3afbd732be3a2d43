"""The parser every ``litvision`` command is built from (``fit`` through Lightning's CLI, ``analyze``,
``reproduce``): jsonargparse's, so each takes ``--config`` and ``--print_config``, with its errors in one
line, ``PROG: error: MESSAGE``."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

from jsonargparse import ActionConfigFile, ArgumentParser


def one_line(message: str) -> str:
    """jsonargparse's message (several lines for a wrong type) joined into one."""
    return " ".join(line.strip() for line in str(message).splitlines() if line.strip())


class Parser(ArgumentParser):
    """jsonargparse's parser with a one-line error, exit status 2 (as argparse); ``config``: a command's
    parser, with ``--config`` (jsonargparse also builds this class for the types it parses)."""

    def __init__(self, *args: Any, config: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("default_env", False)
        super().__init__(*args, **kwargs)
        if config:
            self.add_argument("--config", action=ActionConfigFile, help="a YAML file of these options")

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        sys.stderr.write(f"{prog}: error: {one_line(message)}\n")
        self.exit(2)
