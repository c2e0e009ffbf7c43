"""The shared command-line runner: typed functions become subcommands (jsonargparse).

Each stage's ``__main__`` hands its command functions to :func:`run_cli`. Bad input (a wrong key,
an impossible value, a missing file) ends with one clear ``error:`` line and exit status 2 instead
of a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from plumbing.recipes import ConfigError

USER_ERRORS = (ConfigError, FileNotFoundError, NotADirectoryError)


def underscore_flags(args: Sequence[str]) -> list[str]:
    """Accept ``--search-space`` for ``--search_space``: dashes in flag names become underscores."""
    fixed = []
    for token in args:
        if token.startswith("--") and len(token) > 2:
            name, sep, value = token.partition("=")
            token = "--" + name[2:].replace("-", "_") + sep + value
        fixed.append(token)
    return fixed


def run_cli(
    commands: Sequence[Callable[..., Any]], prog: str, description: str, args: Sequence[str] | None = None
) -> Any:
    """Run the subcommand named on the command line; print user errors without a traceback.

    Flag names may use dashes or underscores (``--num-samples`` = ``--num_samples``).
    """
    from jsonargparse import auto_cli

    args = underscore_flags(sys.argv[1:] if args is None else args)
    try:
        named = {command.__name__: command for command in commands}
        return auto_cli(named, prog=prog, description=description, args=args, as_positional=True)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
