"""The two sample streams behind the loaders: resampled training batches and exactly-once evaluation.

Both run inside DataLoader workers (or in the main process with no workers). A global worker is
``rank * workers + worker_id``. Training: each global worker draws shards with replacement
(weighted by set weight, then by shard size) from a generator seeded by (seed, epoch, start
batch, global worker), passes samples through a shuffle buffer and yields its share of the
epoch's fixed-size batches. Evaluation: shards (or, with fewer shards than global workers,
samples) are dealt round-robin to global workers, so every sample is read exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from data_shards.decode import LabelMap, ViewConfig, sample_pixels
from data_shards.shard_sets import ShardSet
from data_shards.tar_samples import Sample, SkipCounter, read_shard

Batch = dict[str, Any]


@dataclass
class SampleFilter:
    """Which samples a stream keeps, judged from the ``json`` member before any pixel is decoded.

    ``subjects``: keep only these subjects (None = all). ``accept``: per expression class, the
    probability of keeping a sample (class balance); samples without expression are dropped.
    """

    subjects: frozenset[str] | None = None
    accept: tuple[float, ...] | None = None

    def keeps(self, members: dict[str, bytes], rng: np.random.Generator) -> bool:
        """Whether to keep the sample; unreadable labels are kept so that decoding counts them as corrupt."""
        try:
            record = json.loads(members["json"])
        except (KeyError, ValueError):
            return True
        if self.subjects is not None and record.get("subject") not in self.subjects:
            return False
        if self.accept is not None:
            label = record.get("expression", -1)
            return isinstance(label, int) and 0 <= label < len(self.accept) and rng.random() < self.accept[label]
        return True


@dataclass
class StreamState:
    """Where the stream stands: the epoch and the batches of it already consumed on this rank."""

    epoch: int = 0
    start_batch: int = 0


def collate(items: list[tuple[str, torch.Tensor, tuple]]) -> Batch:
    """Stack decoded samples into the batch contract (contiguous channels-first uint8 pixels, label tensors)."""
    first = items[0][1]
    pixels = torch.empty((len(items), *first.shape), dtype=torch.uint8)
    for slot, (_, sample, _) in zip(pixels, items):
        slot.copy_(sample)
    aus, expression, subject, valence, arousal = zip(*(labels for _, _, labels in items))
    return {
        "pixels": pixels,
        "aus": torch.from_numpy(np.stack(aus)),
        "expression": torch.tensor(expression, dtype=torch.int64),
        "subject": torch.tensor(subject, dtype=torch.int64),
        "valence": torch.tensor(valence, dtype=torch.float32),
        "arousal": torch.tensor(arousal, dtype=torch.float32),
        "key": [key for key, _, _ in items],
    }


def owned_by(shard_samples: list[int], global_workers: int) -> list[tuple[int, int]]:
    """How evaluation deals samples: per shard ``(owner, offset)``.

    With at least as many shards as global workers, shard ``i`` belongs whole to worker
    ``owner = i % W`` (offset unused). Otherwise ``owner`` is -1: every worker reads the shard and
    keeps the samples whose global index ``offset + j`` is ``worker`` modulo ``W``.
    """
    if len(shard_samples) >= global_workers:
        return [(i % global_workers, 0) for i in range(len(shard_samples))]
    offsets = np.concatenate([[0], np.cumsum(shard_samples)[:-1]]).astype(int)
    return [(-1, int(offset)) for offset in offsets]


def eval_counts(shard_samples: list[int], global_workers: int) -> list[int]:
    """Samples each global worker yields in evaluation."""
    counts = [0] * global_workers
    plan = owned_by(shard_samples, global_workers)
    for (owner, offset), samples in zip(plan, shard_samples):
        if owner >= 0:
            counts[owner] += samples
        else:
            for worker in range(global_workers):
                counts[worker] += len(range((worker - offset) % global_workers, samples, global_workers))
    return counts


class _Stream(IterableDataset):
    def __init__(self, sets: list[ShardSet], labels: LabelMap, view: ViewConfig, batch_size: int, counter: SkipCounter,
                 rank: int, world: int, seed: int, keep: SampleFilter | None = None) -> None:
        super().__init__()
        self.sets, self.labels, self.view, self.batch_size = sets, labels, view, batch_size
        self.counter, self.rank, self.world, self.seed = counter, rank, world, seed
        self.keep = keep
        self.state = StreamState()

    def _worker(self) -> tuple[int, int]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        self.counter.slot = worker
        return worker, workers

    def _decode(self, sample: Sample, rng: np.random.Generator) -> tuple[str, torch.Tensor, tuple] | None:
        key, members = sample
        if self.keep is not None and not self.keep.keeps(members, rng):
            return None
        try:
            return key, sample_pixels(members, self.view, rng), self.labels.labels(members["json"])
        except Exception as err:  # any failure to decode is a corrupt sample: counted, skipped, rate-limited warning
            self.counter.add("corrupt_sample", key, err)
            return None


class TrainStream(_Stream):
    """Fixed-size shuffled batches from resampled shards; each rank yields ``batches_per_epoch`` batches."""

    def __init__(self, *args: Any, batches_per_epoch: int, shuffle_buffer: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches_per_epoch, self.shuffle_buffer = batches_per_epoch, shuffle_buffer

    def _resampled(self, rng: np.random.Generator) -> Iterator[Sample]:
        # a set's weight is its share of samples: shards are drawn in proportion to their size, so a
        # draw from set s yields sum(n^2)/sum(n) samples on average; divide that out
        set_p = np.array([s.weight * s.num_samples / sum(n * n for n in s.samples) for s in self.sets], dtype=float)
        set_p /= set_p.sum()
        shard_p = [np.array(s.samples, dtype=float) / s.num_samples for s in self.sets]
        empty_in_a_row = 0
        while True:
            chosen = self.sets[rng.choice(len(self.sets), p=set_p)]
            path = chosen.paths[rng.choice(len(chosen.paths), p=shard_p[self.sets.index(chosen)])]
            read = 0
            for sample in read_shard(path, self.counter):
                read += 1
                yield sample
            empty_in_a_row = 0 if read else empty_in_a_row + 1
            if empty_in_a_row > 10 + 10 * sum(len(s.paths) for s in self.sets):
                raise RuntimeError(f"no readable sample in {empty_in_a_row} shard reads in a row; last: {path}")

    def __iter__(self) -> Iterator[Batch]:
        worker, workers = self._worker()
        remaining = self.batches_per_epoch - self.state.start_batch
        mine = remaining // workers + (worker < remaining % workers)
        rng = np.random.default_rng([self.seed, self.state.epoch, self.state.start_batch, self.rank * workers + worker])
        buffer: list[Sample] = []
        batch: list[tuple[str, torch.Tensor, tuple]] = []
        produced = misses = 0
        limit = 2 * sum(s.num_samples for s in self.sets) + 1000
        if mine <= 0:
            return
        for sample in self._resampled(rng):
            if len(buffer) < self.shuffle_buffer:
                buffer.append(sample)
                continue
            if buffer:
                slot = int(rng.integers(len(buffer)))
                sample, buffer[slot] = buffer[slot], sample
            decoded = self._decode(sample, rng)
            if decoded is None:
                misses += 1
                if misses > limit:
                    raise RuntimeError(f"no usable sample in {misses} draws: every sample was filtered out or corrupt ({self.counter.local()})")
                continue
            misses = 0
            batch.append(decoded)
            if len(batch) == self.batch_size:
                yield collate(batch)
                batch, produced = [], produced + 1
                if produced == mine:
                    return


class EvalStream(_Stream):
    """Every sample of every set exactly once across ranks and workers, in shard order; last batch partial."""

    def __iter__(self) -> Iterator[Batch]:
        worker, workers = self._worker()
        total_workers = self.world * workers
        me = self.rank * workers + worker
        rng = np.random.default_rng(self.seed)
        shards = [(path, samples) for s in self.sets for path, samples in zip(s.paths, s.samples)]
        plan = owned_by([samples for _, samples in shards], total_workers)
        batch: list[tuple[str, torch.Tensor, tuple]] = []
        for (path, _), (owner, offset) in zip(shards, plan):
            if owner >= 0 and owner != me:
                continue
            keep = (lambda j: True) if owner >= 0 else (lambda j, o=offset: (o + j) % total_workers == me)
            for sample in read_shard(path, self.counter, keep):
                decoded = self._decode(sample, rng)
                if decoded is None:
                    continue
                batch.append(decoded)
                if len(batch) == self.batch_size:
                    yield collate(batch)
                    batch = []
        if batch:
            yield collate(batch)
