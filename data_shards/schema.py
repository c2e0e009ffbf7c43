"""The label schema of one sample: what a shard's ``json`` member holds, and how it is checked.

A sample's labels are a :class:`Labels` value. In a shard it is stored as JSON with only the labels
that exist: ``subject`` (identity string), ``source`` (dataset name), ``aus`` (a mapping from AU id
to 1 active / 0 inactive / ``MISSING_AU`` unknown), ``expression`` (class index), ``valence`` and
``arousal`` (floats in [-1, 1]). Absent keys mean "missing".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

MISSING_AU = -1
"""The explicit "missing" value of an AU in a sample's ``aus`` mapping."""


@dataclass
class Labels:
    """Labels of one face image or clip; ``None`` or an empty mapping means missing."""

    subject: str | None = None
    source: str | None = None
    aus: dict[str, int] = field(default_factory=dict)
    expression: int | None = None
    valence: float | None = None
    arousal: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored in a shard: only the labels that exist."""
        out: dict[str, Any] = {}
        if self.subject is not None:
            out["subject"] = self.subject
        if self.source is not None:
            out["source"] = self.source
        if self.aus:
            out["aus"] = dict(self.aus)
        if self.expression is not None:
            out["expression"] = int(self.expression)
        if self.valence is not None:
            out["valence"] = float(self.valence)
        if self.arousal is not None:
            out["arousal"] = float(self.arousal)
        return out


def label_problems(record: Any, au_ids: list[str], num_classes: int) -> list[str]:
    """Schema violations of one decoded ``json`` member against a manifest's vocabulary."""
    if not isinstance(record, dict):
        return ["labels are not a JSON object"]
    found: list[str] = []
    unknown = set(record) - {"subject", "source", "aus", "expression", "valence", "arousal"}
    if unknown:
        found.append(f"unknown label keys {sorted(unknown)}")
    for key in ("subject", "source"):
        if key in record and not isinstance(record[key], str):
            found.append(f"{key} must be a string")
    aus = record.get("aus", {})
    if not isinstance(aus, dict):
        found.append("aus must be a mapping of AU id to 1/0/-1")
    else:
        for au, value in aus.items():
            if au not in au_ids:
                found.append(f"AU {au!r} is not in the manifest's au_ids")
            if value not in (0, 1, MISSING_AU):
                found.append(f"AU {au} has value {value!r}; expected 1, 0 or {MISSING_AU}")
    if "expression" in record:
        value = record["expression"]
        if not isinstance(value, int) or not 0 <= value < num_classes:
            found.append(f"expression={value!r} is not a class index below {num_classes}")
    for key in ("valence", "arousal"):
        if key in record:
            value = record[key]
            if not isinstance(value, (int, float)) or math.isnan(value) or not -1.0 <= value <= 1.0:
                found.append(f"{key}={value!r} is outside [-1, 1]")
    return found
