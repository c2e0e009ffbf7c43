"""The label schema of one sample: what a shard's ``json`` member holds, and how it is checked.

A sample's labels are a :class:`Labels` value. In a shard it is stored as JSON with only the labels
that exist: ``subject`` (identity string), ``source`` (dataset name), ``aus`` (a mapping from AU id
to 1 active / 0 inactive / ``MISSING_AU`` unknown), ``expression`` (class index), ``valence`` and
``arousal`` (floats in [-1, 1]). Absent keys mean "missing". Where the sample came from:
``origin`` (the media's path relative to the media folder), for clips ``time`` ([start, end] in
seconds of the source) and ``fps``, for detected faces ``face`` (``score`` and ``box``
[left, top, right, bottom] in source pixels; a clip's first frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

MISSING_AU = -1
"""The explicit "missing" value of an AU in a sample's ``aus`` mapping."""

LABEL_KEYS = {"subject", "source", "aus", "expression", "valence", "arousal", "origin", "time", "fps", "face"}
"""Every key a sample's ``json`` member may hold."""


@dataclass
class Labels:
    """Labels of one face image or clip; ``None`` or an empty mapping means missing."""

    subject: str | None = None
    source: str | None = None
    aus: dict[str, int] = field(default_factory=dict)
    expression: int | None = None
    valence: float | None = None
    arousal: float | None = None
    origin: str | None = None
    time: tuple[float, float] | None = None
    fps: float | None = None
    face: dict[str, Any] | None = None

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
        if self.origin is not None:
            out["origin"] = self.origin
        if self.time is not None:
            out["time"] = [round(float(t), 4) for t in self.time]
        if self.fps is not None:
            out["fps"] = round(float(self.fps), 4)
        if self.face is not None:
            out["face"] = dict(self.face)
        return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _provenance_problems(record: dict[str, Any]) -> list[str]:
    found: list[str] = []
    if "time" in record:
        time = record["time"]
        if not (isinstance(time, list) and len(time) == 2 and all(_is_number(t) for t in time) and 0 <= time[0] <= time[1]):
            found.append(f"time={time!r} is not [start, end] seconds with 0 <= start <= end")
    if "fps" in record and not (_is_number(record["fps"]) and record["fps"] > 0):
        found.append(f"fps={record['fps']!r} is not a positive number")
    if "face" in record:
        face = record["face"]
        if not isinstance(face, dict) or set(face) != {"score", "box"}:
            found.append(f"face={face!r} must hold exactly 'score' and 'box'")
        else:
            score, box = face["score"], face["box"]
            if not (_is_number(score) and 0.0 <= score <= 1.0):
                found.append(f"face score={score!r} is outside [0, 1]")
            if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box) and box[0] < box[2] and box[1] < box[3]):
                found.append(f"face box={box!r} is not [left, top, right, bottom] with left < right and top < bottom")
    return found


def label_problems(record: Any, au_ids: list[str], num_classes: int) -> list[str]:
    """Schema violations of one decoded ``json`` member against a manifest's vocabulary."""
    if not isinstance(record, dict):
        return ["labels are not a JSON object"]
    found: list[str] = []
    unknown = set(record) - LABEL_KEYS
    if unknown:
        found.append(f"unknown label keys {sorted(unknown)}")
    for key in ("subject", "source", "origin"):
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
    return found + _provenance_problems(record)
