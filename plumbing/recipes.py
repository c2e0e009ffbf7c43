"""Typed recipes: validation of configuration dataclasses, and YAML recipes read against a command.

Every config dataclass may define ``problems(self) -> list[tuple[str, str]]`` returning
``(field_name, reason)`` pairs for impossible settings. :func:`validate` walks a nested config,
collects every problem with its dotted key (``model.encoder.img_size``) and raises one
:class:`ConfigError` listing them all, so a user fixes a recipe in one go. :func:`load_recipe`
parses a YAML recipe against a command's signature exactly as the command line would, which is
how launchers and the tests read every shipped recipe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Problems = list[tuple[str, str]]


class ConfigError(ValueError):
    """An impossible or unknown configuration value; the message names each key and value."""


def _walk(obj: Any, path: str, found: list[str]) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            _walk(value, f"{path}.{key}" if path else str(key), found)
        return
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return
    check = getattr(obj, "problems", None)
    if callable(check):
        for key, reason in check():
            dotted = f"{path}.{key}" if path else key
            value = getattr(obj, key, "<unset>")
            found.append(f"{dotted}={value!r}: {reason}")
    for field in dataclasses.fields(obj):
        _walk(getattr(obj, field.name), f"{path}.{field.name}" if path else field.name, found)


def validate(config: Any, source: str | None = None) -> Any:
    """Check a config dataclass (or a dict of them, keyed by section); return it or raise :class:`ConfigError`."""
    found: list[str] = []
    _walk(config, "", found)
    if found:
        where = f" in {source}" if source else ""
        raise ConfigError(f"invalid configuration{where}:\n  " + "\n  ".join(found))
    return config


def load_recipe(command: Callable[..., Any] | type, path: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Parse and validate ``path`` (plus ``--key value`` overrides) against ``command``'s signature.

    ``command`` is a command function or a config dataclass (its fields are the recipe's
    sections). Returns the keyword arguments it would be called with, dataclasses instantiated.
    Raises :class:`ConfigError` naming the file and the key for unknown keys or impossible values.
    """
    from jsonargparse import ActionConfigFile, ArgumentParser

    if not Path(path).is_file():
        raise FileNotFoundError(f"recipe file not found: {path}")
    parser = ArgumentParser(exit_on_error=False, allow_abbrev=False)  # keys match exactly
    parser.add_argument("--config", action=ActionConfigFile)
    if isinstance(command, type):
        parser.add_class_arguments(command, nested_key=None, as_group=False)
    else:
        parser.add_function_arguments(command, as_positional=False)
    try:
        parsed = parser.parse_args(["--config", path, *overrides])
        init = parser.instantiate(parsed)
    except Exception as err:  # jsonargparse reports unknown keys and wrong types as ArgumentError
        raise ConfigError(f"{path}: {err}") from err
    kwargs = {key: value for key, value in vars(init).items() if key != "config"}
    return validate(kwargs, source=path)
