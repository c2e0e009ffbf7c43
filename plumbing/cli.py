"""The shared command-line runner: typed functions become subcommands (jsonargparse).

Each stage's ``__main__`` hands its command functions to :func:`run_cli`. Keys match exactly (no
abbreviations: ``--trainer.max_step`` is refused, not taken as ``--trainer.max_steps``). Bad input
(an unknown or misspelt key, an impossible value, a missing file) ends with one ``error:`` line
naming it and exit status 2, instead of a usage dump or a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import re
import sys
import typing
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from plumbing.recipes import ConfigError

USER_ERRORS = (ConfigError, FileNotFoundError, NotADirectoryError)
# How jsonargparse names a key it does not know: on the command line, and inside a --config file.
UNKNOWN_KEY = re.compile(r"unrecognized arguments: --([\w.]+)|does not accept option '([\w.]+)'")


def underscore_flags(args: Sequence[str]) -> list[str]:
    """Accept ``--search-space`` for ``--search_space``: dashes in flag names become underscores."""
    fixed = []
    for token in args:
        if token.startswith("--") and len(token) > 2:
            name, sep, value = token.partition("=")
            token = "--" + name[2:].replace("-", "_") + sep + value
        fixed.append(token)
    return fixed


def command_keys(command: Callable[..., Any], prefix: str = "") -> Iterator[str]:
    """Every dotted key a command accepts: its parameters and, for dataclass parameters, their fields."""
    if dataclasses.is_dataclass(command):
        hints = typing.get_type_hints(command)
        names = [(field.name, hints.get(field.name)) for field in dataclasses.fields(command)]
    else:
        hints = typing.get_type_hints(command)
        names = [(name, hints.get(name)) for name in inspect.signature(command).parameters]
    for name, hint in names:
        yield prefix + name
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            yield from command_keys(hint, f"{prefix}{name}.")


def one_line_message(err: argparse.ArgumentError, commands: dict[str, Callable[..., Any]], args: Sequence[str], prog: str) -> str:
    """jsonargparse's message on one line; for an unknown key, the closest known keys and where to look."""
    message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    unknown = UNKNOWN_KEY.search(message)
    name = next((a for a in args if a in commands), None)
    if unknown and name:
        key = unknown.group(1) or unknown.group(2)
        close = difflib.get_close_matches(key, list(command_keys(commands[name])), n=3, cutoff=0.75)
        configs = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"]
        where = f" in {', '.join(configs)}" if unknown.group(2) and configs else ""
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        message = f"unknown key {key!r}{where}; {hint}`{prog} {name} --help` lists every key"
    return message


def run_cli(
    commands: Sequence[Callable[..., Any]], prog: str, description: str, args: Sequence[str] | None = None
) -> Any:
    """Run the subcommand named on the command line; print user errors as one ``error:`` line, exit status 2.

    Flag names may use dashes or underscores (``--num-samples`` = ``--num_samples``) but are
    never abbreviated.
    """
    from jsonargparse import auto_cli

    args = underscore_flags(sys.argv[1:] if args is None else args)
    named = {command.__name__: command for command in commands}
    try:
        return auto_cli(named, prog=prog, description=description, args=args, as_positional=True, allow_abbrev=False, exit_on_error=False)
    except argparse.ArgumentError as err:
        print(f"error: {one_line_message(err, named, args, prog)}", file=sys.stderr)
        raise SystemExit(2) from None
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
