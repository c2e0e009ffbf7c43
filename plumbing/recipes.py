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
import operator
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, get_origin, get_type_hints

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
            try:
                value = operator.attrgetter(key)(obj)  # a key may be dotted: a field of a section
            except AttributeError:
                value = "<unset>"
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


def config_from_dict(cls: type, values: dict[str, Any], source: str = "config") -> Any:
    """Rebuild dataclass ``cls`` from its ``dataclasses.asdict`` record (nested dataclasses and tuples included).

    The one way every stored config (checkpoints, run folders, releases) is read back. Keys the
    record lacks take their defaults; a key ``cls`` does not have is a ``ValueError`` naming ``source``.
    """
    hints = get_type_hints(cls)
    known = {item.name for item in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{source}: {cls.__name__} has no field {', '.join(unknown)} (a config of another version?)")
    kwargs = {}
    for name, value in values.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            value = config_from_dict(kind, value, f"{source}: {name}")
        elif get_origin(kind) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


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
