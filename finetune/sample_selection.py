"""Keep only some samples of a shard loader: subject filters (k-fold runs) and class-balanced sampling.

``data_shards.streaming`` has no per-sample selection yet, so this module derives a selective
copy of a loader's stream: before a sample is decoded its ``json`` labels are read and the
sample is dropped (silently; it is not corrupt) when its subject is not kept, or, for class
balance, with probability ``1 - accept[class]`` drawn from the stream's own seeded generator
(deterministic per seed, epoch and worker). Training keeps its fixed number of batches per epoch
(the stream resamples shards); evaluation reads every kept sample once. Replace this with a
``LoaderConfig`` option once the data stage offers one.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np

from data_shards.streaming import ShardLoader
from data_shards.streams import EvalStream, TrainStream


def _kept(stream: Any, sample: Any, rng: np.random.Generator) -> bool:
    """Whether ``stream`` (with ``keep_subjects``/``class_accept``) keeps ``sample``; unreadable labels are kept
    so that the stream's own decoding counts them as corrupt."""
    try:
        record = json.loads(sample[1]["json"])
    except (KeyError, ValueError):
        return True
    if stream.keep_subjects is not None and record.get("subject") not in stream.keep_subjects:
        return False
    if stream.class_accept is not None:
        label = int(record.get("expression", -1))
        return 0 <= label < len(stream.class_accept) and rng.random() < stream.class_accept[label]
    return True


class SelectiveTrainStream(TrainStream):
    """A training stream that decodes only the samples :func:`_kept` accepts."""

    keep_subjects: frozenset[str] | None = None
    class_accept: tuple[float, ...] | None = None

    def _decode(self, sample: Any, rng: np.random.Generator) -> Any:
        return super()._decode(sample, rng) if _kept(self, sample, rng) else None


class SelectiveEvalStream(EvalStream):
    """An evaluation stream that decodes only the samples :func:`_kept` accepts."""

    keep_subjects: frozenset[str] | None = None
    class_accept: tuple[float, ...] | None = None

    def _decode(self, sample: Any, rng: np.random.Generator) -> Any:
        return super()._decode(sample, rng) if _kept(self, sample, rng) else None


def class_acceptance(counts: list[int]) -> tuple[float, ...]:
    """Per-class acceptance ``min_count / count``: every class is then drawn equally often.

    Classes with no sample get 0 (they cannot be drawn anyway).
    """
    present = [c for c in counts if c > 0]
    if not present:
        raise ValueError("class-balanced sampling needs expression counts; the manifests report none")
    rarest = min(present)
    return tuple(rarest / c if c > 0 else 0.0 for c in counts)


def select_samples(
    loader: ShardLoader, subjects: list[str] | None = None, class_accept: tuple[float, ...] | None = None, length: int | None = None
) -> ShardLoader:
    """A loader over the same shards keeping only ``subjects`` (None = all) and class-balanced by ``class_accept``.

    ``length`` replaces the loader's batch count (training: batches per epoch, evaluation: an
    upper bound used for progress only).
    """
    stream = copy.copy(loader.stream)
    stream.__class__ = SelectiveTrainStream if isinstance(stream, TrainStream) else SelectiveEvalStream
    stream.keep_subjects = frozenset(subjects) if subjects is not None else None
    stream.class_accept = class_accept
    if isinstance(stream, TrainStream) and length is not None:
        stream.batches_per_epoch = length
    return ShardLoader(stream, loader.num_workers, loader.length if length is None else length)
