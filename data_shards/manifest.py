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


@dataclass
class LabelCounts:
    """How many samples carry each kind of label, per AU, class and subject (and how many inputs were dropped)."""

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

    def add(self, other: "LabelCounts") -> None:
        """Add ``other``'s counts into this one."""
        for name in ("samples", "with_subject", "with_aus", "with_expression", "with_valence_arousal", "dropped_small", "dropped_unreadable"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.au_positive, other.au_positive), (self.expression, other.expression), (self.subject, other.subject)):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value


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
