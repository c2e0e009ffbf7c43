"""Resolve the shard sets a loader reads: manifest paths or brace patterns, checked up front.

An entry is a ``manifest.json`` path, a shard-set folder, or a brace pattern of shard files
(``dir/shard-{000000..000009}.tar``) read with the ``manifest.json`` beside them (which gives the
counts and the label vocabulary). A missing shard or an empty list is a clear error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from braceexpand import braceexpand

from data_shards.manifest import Manifest, read_manifest
from plumbing.recipes import ConfigError


@dataclass
class ShardSet:
    """The shards of one entry with their sample counts, its manifest and its sampling weight."""

    manifest: Manifest
    paths: list[str]
    samples: list[int]
    weight: float

    @property
    def num_samples(self) -> int:
        """Samples in the selected shards."""
        return sum(self.samples)


def resolve_entry(entry: str, weight: float) -> ShardSet:
    """One shard set from a manifest path, a folder or a brace pattern."""
    if entry.endswith(".json") or os.path.isdir(entry):
        manifest = read_manifest(entry)
        paths, samples = manifest.shard_paths(), [s.samples for s in manifest.shards]
    else:
        files = [str(Path(p).resolve()) for p in braceexpand(entry)]
        manifest = read_manifest(Path(files[0]).parent / "manifest.json")
        by_path = dict(zip(manifest.shard_paths(), (s.samples for s in manifest.shards)))
        unknown = [f for f in files if f not in by_path]
        if unknown:
            raise ConfigError(f"shard pattern {entry!r}: {unknown[0]} is not listed in {manifest.path}")
        paths, samples = files, [by_path[f] for f in files]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"shard not found: {missing[0]} (listed by {manifest.path}; {len(missing)} missing)")
    if not paths or sum(samples) == 0:
        raise ConfigError(f"shard set {entry!r} holds no samples")
    return ShardSet(manifest, paths, samples, weight)


def resolve_sets(entries: list[str], weights: list[float], modality: str) -> list[ShardSet]:
    """Every entry resolved, weights checked (empty = equal), and each set's modality matched."""
    if not entries:
        raise ConfigError("shards: the list of shard sets is empty; give manifest paths or brace patterns")
    if weights and len(weights) != len(entries):
        raise ConfigError(f"weights: {len(weights)} weights for {len(entries)} shard sets")
    if any(w <= 0 for w in weights):
        raise ConfigError(f"weights={weights}: weights must be positive")
    sets = [resolve_entry(entry, weight) for entry, weight in zip(entries, weights or [1.0] * len(entries))]
    for shard_set in sets:
        if shard_set.manifest.modality != modality:
            raise ConfigError(f"{shard_set.manifest.path} holds {shard_set.manifest.modality} samples, the loader wants {modality}")
    return sets
