"""Validation of typed configuration dataclasses, with errors that name the full key.

Every config dataclass in the project may define ``problems(self) -> list[tuple[str, str]]``
returning ``(field_name, reason)`` pairs for impossible settings. :func:`validate` walks a nested
config, collects every problem with its dotted key (``model.encoder.img_size``) and raises one
:class:`ConfigError` listing them all, so a user fixes a recipe in one go.
"""

from __future__ import annotations

import dataclasses
from typing import Any


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
