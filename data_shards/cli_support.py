"""The shared command-line runner: typed functions become subcommands (jsonargparse).

Each stage's ``__main__`` hands its command functions to :func:`run_cli`. Bad input (a wrong key,
an impossible value, a missing file) ends with one clear ``error:`` line and exit status 2 instead
of a traceback. :func:`load_recipe` parses a YAML recipe against a command's signature exactly as
the command line would, which is how the tests validate every shipped recipe.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from data_shards.config_checks import ConfigError, validate

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


def load_recipe(command: Callable[..., Any], path: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Parse and validate ``path`` (plus ``--key value`` overrides) against ``command``'s signature.

    Returns the keyword arguments the command would be called with, dataclasses instantiated.
    Raises :class:`ConfigError` naming the file and the key for unknown keys or impossible values.
    """
    from jsonargparse import ActionConfigFile, ArgumentParser

    if not Path(path).is_file():
        raise FileNotFoundError(f"recipe file not found: {path}")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_function_arguments(command, as_positional=False)
    try:
        parsed = parser.parse_args(["--config", path, *overrides])
        init = parser.instantiate_classes(parsed)
    except Exception as err:  # jsonargparse reports unknown keys and wrong types as ArgumentError
        raise ConfigError(f"{path}: {err}") from err
    kwargs = {key: value for key, value in vars(init).items() if key != "config"}
    return validate(kwargs, source=path)
