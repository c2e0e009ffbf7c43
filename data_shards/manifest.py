"""The manifest of a shard set: per-shard counts and checksums, the label vocabulary, sizes.

One ``manifest.json`` sits beside the shards it describes (shard names are relative to it). The
builder writes a small sidecar ``<shard>.json`` (a :class:`ShardSummary`) after each finished
shard; :func:`merge_summaries` folds them into a :class:`Manifest`, which is how a job array's
parts and an interrupted build come together.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from plumbing.recipes import ConfigError

FORMAT_VERSION = 1


@dataclass
class ShardRecord:
    """One shard file: its name beside the manifest, sample count, size and SHA-256."""

    name: str
    samples: int
    bytes: int
    sha256: str


DROP_COUNTS = ("dropped_small", "dropped_unreadable", "dropped_no_face", "dropped_no_face_clips")
"""The counts of inputs the writers dropped (summed over every shard, even those left empty)."""


@dataclass
class LabelCounts:
    """How many samples carry each kind of label, per AU, class and subject, and what was dropped or skipped.

    ``dropped_small``: inputs (with ``--faces detect``: faces) below the minimum size;
    ``dropped_unreadable``: unreadable or missing media; ``dropped_no_face``: photos or videos in
    which no usable face was found; ``dropped_no_face_clips``: clip windows without a face track
    long enough; ``skipped``: inputs the source passed over, by reason (``label_line``: a
    malformed label line; ``link_loop``: a symlink that loops; ``repeated_folder``: a folder
    reached a second time through a link).
    """

    samples: int = 0
    with_subject: int = 0
    with_aus: int = 0
    with_expression: int = 0
    with_valence_arousal: int = 0
    au_positive: dict[str, int] = field(default_factory=dict)
    expression: dict[str, int] = field(default_factory=dict)
    subject: dict[str, int] = field(default_factory=dict)
    dropped_small: int = 0
    dropped_unreadable: int = 0
    dropped_no_face: int = 0
    dropped_no_face_clips: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def add(self, other: "LabelCounts") -> None:
        """Add ``other``'s counts into this one."""
        for name in ("samples", "with_subject", "with_aus", "with_expression", "with_valence_arousal", *DROP_COUNTS):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        pairs = ((self.au_positive, other.au_positive), (self.expression, other.expression), (self.subject, other.subject), (self.skipped, other.skipped))
        for mine, theirs in pairs:
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value

    def losses(self) -> str:
        """What was dropped or skipped, as one phrase (empty when nothing was)."""
        named = {
            "below min size": self.dropped_small,
            "unreadable or missing": self.dropped_unreadable,
            "without a face": self.dropped_no_face,
            "clip windows without a face track": self.dropped_no_face_clips,
            **{f"skipped ({reason.replace('_', ' ')})": count for reason, count in sorted(self.skipped.items())},
        }
        return ", ".join(f"{count} {what}" for what, count in named.items() if count)


@dataclass
class ShardSummary:
    """What the builder knows about one finished shard (written as ``<shard>.json``)."""

    record: ShardRecord
    index: int
    subjects: list[str]
    sources: list[str]
    counts: LabelCounts

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ShardSummary":
        """Inverse of ``dataclasses.asdict``."""
        return cls(ShardRecord(**data["record"]), data["index"], data["subjects"], data["sources"], LabelCounts(**data["counts"]))


@dataclass
class Manifest:
    """A shard set: modality, sizes, the label vocabulary, counts and one record per shard.

    ``subjects`` is the vocabulary that a batch's ``subject`` index points into; ``au_ids`` orders
    the columns of a batch's ``aus``; ``class_names`` indexes ``expression``.
    """

    modality: str
    img_size: int
    frames: int
    au_ids: list[str]
    class_names: list[str]
    subjects: list[str]
    sources: list[str]
    counts: LabelCounts
    shards: list[ShardRecord]
    format_version: int = FORMAT_VERSION
    path: str = ""

    @property
    def num_samples(self) -> int:
        """Samples in the whole set."""
        return sum(shard.samples for shard in self.shards)

    def shard_paths(self) -> list[str]:
        """Absolute paths of the shards, in order."""
        root = Path(self.path).parent
        return [str(root / shard.name) for shard in self.shards]

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to ``manifest.json`` (without ``path``)."""
        data = asdict(self)
        data.pop("path")
        return data


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read a ``manifest.json`` (or the one inside a folder); errors name the file and the key."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.json"
    if not path.is_file():
        parts = any(path.parent.glob("part-*-of-*.json")) if path.parent.is_dir() else False
        hint = f" (a job-array build: run python -m data_shards merge {path.parent})" if parts else ""
        raise FileNotFoundError(f"shard manifest not found: {path}{hint}")
    try:
        data = json.loads(path.read_text())
        counts = LabelCounts(**data.pop("counts"))
        shards = [ShardRecord(**shard) for shard in data.pop("shards")]
        manifest = Manifest(**data, counts=counts, shards=shards, path=str(path.resolve()))
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ConfigError(f"{path}: not a valid shard manifest ({err})") from err
    if manifest.format_version != FORMAT_VERSION:
        raise ConfigError(f"{path}: format_version={manifest.format_version}, this code reads {FORMAT_VERSION}")
    return manifest


def merge_summaries(
    summaries: Iterable[ShardSummary], *, modality: str, img_size: int, frames: int, au_ids: list[str], class_names: list[str]
) -> Manifest:
    """Fold shard summaries (any order) into one manifest with shards sorted by index."""
    ordered = sorted(summaries, key=lambda s: s.index)
    subjects: set[str] = set()
    sources: set[str] = set()
    counts = LabelCounts()
    for summary in ordered:
        subjects.update(summary.subjects)
        sources.update(summary.sources)
        counts.add(summary.counts)
    return Manifest(
        modality=modality,
        img_size=img_size,
        frames=frames,
        au_ids=list(au_ids),
        class_names=list(class_names),
        subjects=sorted(subjects),
        sources=sorted(sources),
        counts=counts,
        shards=[summary.record for summary in ordered],
    )
