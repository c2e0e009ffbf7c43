"""The two sample streams behind the loaders, each a webdataset pipeline per worker and epoch.

Both run inside DataLoader workers (or in the main process with no workers); a global worker is
``rank * workers + worker_id``. Each iteration builds one ``wds.DataPipeline``:

- training: shards drawn with replacement (:func:`resampled_shards`: the set by its share of
  samples, the shard by its size) -> :func:`~data_shards.tar_samples.read_shard` (webdataset's tar
  iteration and grouping; damage counted) -> ``wds.select`` (subject/class filter on the ``json``
  member, before any decode) -> ``wds.shuffle`` -> ``wds.map`` (decode and augment; a corrupt
  sample is counted by the rate-limited handler) -> ``wds.batched(partial=False)`` -> this
  worker's share of the epoch's batches. All randomness comes from generators seeded by (seed,
  epoch, start batch, global worker): the same configuration gives the same batches, and a resumed
  epoch draws its remaining batches afresh (webdataset has no resume position).
- evaluation: shards dealt round-robin to global workers, or samples by global index when shards
  are fewer than global workers (:func:`owned_by`), so every sample is read exactly once; the last
  batch of a worker may be partial. With several ranks every rank yields the same number of
  batches (:func:`eval_batch_plan`): a worker that runs out of samples before its planned count
  (its rank has fewer, or the subject filter and corrupt samples took some) yields one-row padding
  batches, a repeated sample marked ``valid = False``. webdataset's ``split_by_node``/``split_by_worker``
  deal only whole shards, by the rank they read from the environment, not the loader's.

An error that only the data reveals (every shard read unreadable, every sample filtered out or
corrupt) ends the worker's stream with a :class:`StreamFailure` batch; the loader raises it in the
main process as one clear error instead of DataLoader's re-raised worker traceback.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from data_shards.decode import LabelMap, ViewConfig, sample_pixels
from data_shards.shard_sets import ShardSet
from data_shards.tar_samples import TAR_DAMAGE, Sample, SkipCounter, members, read_shard, shard_samples
from plumbing.recipes import ConfigError

Batch = dict[str, Any]
Decoded = tuple[str, torch.Tensor, tuple]


@dataclass
class SampleFilter:
    """Which samples a stream keeps, judged from the ``json`` member before any pixel is decoded.

    ``subjects``: keep only these subjects (None = all). ``accept``: per expression class, the
    probability of keeping a sample (class balance); samples without expression are dropped.
    """

    subjects: frozenset[str] | None = None
    accept: tuple[float, ...] | None = None

    def keeps(self, sample: Mapping[str, Any], rng: np.random.Generator) -> bool:
        """Whether to keep the sample; unreadable labels are kept so that decoding counts them as corrupt."""
        try:
            record = json.loads(sample["json"])
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


@dataclass
class StreamFailure:
    """An error a worker met in the data, handed to the main process in place of a batch."""

    error: Exception


@dataclass
class Progress:
    """Samples a training stream read from shards, and how many it had read when a sample last decoded."""

    read: int = 0
    read_at_last_decode: int = 0


class CorruptSample(Exception):
    """A sample that failed to decode or label (raised from the cause, named by its key)."""


def collate(items: list[Decoded]) -> Batch:
    """Stack decoded samples into the batch contract (contiguous channels-first uint8 pixels, label tensors, ``valid`` all True)."""
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
        "valid": torch.ones(len(items), dtype=torch.bool),
    }


def padding_batch(batch: Batch) -> Batch:
    """A one-row batch repeating the first sample of ``batch``, marked ``valid = False`` (consumers ignore it)."""
    padded = {name: value[:1] if isinstance(value, (torch.Tensor, list)) else value for name, value in batch.items()}
    padded["valid"] = torch.zeros(1, dtype=torch.bool)
    return padded


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


def eval_batch_plan(shard_samples: list[int], batch_size: int, world: int, workers: int) -> list[list[int]]:
    """Batches each worker of each rank yields in evaluation, ``plan[rank][worker]``.

    A worker's own samples (:func:`eval_counts`) make ``ceil(n / batch_size)`` batches; the
    busiest worker of each rank adds padding batches until every rank yields as many as the rank
    with the most, so that collective operations inside evaluation steps (DDP, FSDP, DeepSpeed)
    are matched on every rank.
    """
    counts = eval_counts(shard_samples, world * workers)
    own = [[-(-counts[rank * workers + worker] // batch_size) for worker in range(workers)] for rank in range(world)]
    target = max(sum(batches) for batches in own)
    plan = []
    for batches in own:
        busiest = max(range(workers), key=lambda worker: batches[worker])
        plan.append([n + (target - sum(batches) if worker == busiest else 0) for worker, n in enumerate(batches)])
    return plan


def resampled_shards(sets: list[ShardSet], rng: np.random.Generator) -> Iterator[tuple[str, int]]:
    """Endless ``(path, samples)`` draws with replacement: a set by its weight as a share of samples, then a shard by its size.

    Shards are drawn in proportion to their size, so a draw from set s yields sum(n^2)/sum(n)
    samples on average; the set probabilities divide that out (webdataset's ``ResampledShards``
    draws shards uniformly, without weights).
    """
    set_p = np.array([s.weight * s.num_samples / sum(n * n for n in s.samples) for s in sets], dtype=float)
    set_p /= set_p.sum()
    shard_p = [np.array(s.samples, dtype=float) / s.num_samples for s in sets]
    while True:
        chosen = int(rng.choice(len(sets), p=set_p))
        shard = int(rng.choice(len(sets[chosen].paths), p=shard_p[chosen]))
        yield sets[chosen].paths[shard], sets[chosen].samples[shard]


class _Stream(IterableDataset):
    def __init__(self, sets: list[ShardSet], labels: LabelMap, view: ViewConfig, batch_size: int, counter: SkipCounter,
                 rank: int, world: int, seed: int, keep: SampleFilter | None = None) -> None:
        super().__init__()
        self.sets, self.labels, self.view, self.batch_size = sets, labels, view, batch_size
        self.counter, self.rank, self.world, self.seed = counter, rank, world, seed
        self.keep = keep
        self.state = StreamState()

    @property
    def names(self) -> str:
        """The manifests of the shard sets read, for error messages."""
        return ", ".join(s.manifest.path for s in self.sets)

    def _worker(self) -> tuple[int, int]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        self.counter.slot = worker
        return worker, workers

    def _decoder(self, rng: np.random.Generator) -> Callable[[Sample], Decoded]:
        def decode(sample: Sample) -> Decoded:
            key = sample["__key__"]
            try:
                parts = members(sample)
                return key, sample_pixels(parts, self.view, rng), self.labels.labels(parts["json"])
            except Exception as err:  # any failure to decode or label is a corrupt sample
                raise CorruptSample(f"{key}: {type(err).__name__}: {err}") from err

        return decode

    def _pipeline(self, samples: Callable[[], Iterator[Sample]], decode: Callable[[Sample], Decoded], filter_rng: np.random.Generator,
                  shuffle: Any = None, partial: bool = True) -> wds.DataPipeline:
        keep = self.keep
        return wds.DataPipeline(
            samples,
            wds.select(lambda sample: keep.keeps(sample, filter_rng)) if keep is not None else None,
            shuffle,
            wds.map(decode, handler=self.counter.handler("corrupt_sample")),
            wds.batched(self.batch_size, collation_fn=collate, partial=partial),
        )

    def _batches(self) -> Iterator[Batch]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Batch | StreamFailure]:
        try:
            yield from self._batches()
        except (ConfigError, FileNotFoundError) as err:
            yield StreamFailure(err)


class TrainStream(_Stream):
    """Fixed-size shuffled batches from resampled shards; each rank yields ``batches_per_epoch`` batches."""

    def __init__(self, *args: Any, batches_per_epoch: int, shuffle_buffer: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches_per_epoch, self.shuffle_buffer = batches_per_epoch, shuffle_buffer

    def _samples(self, rng: np.random.Generator, progress: Progress) -> Iterator[Sample]:
        """Samples of resampled shards; a ConfigError when no shard reads or no sample decodes for too long."""
        shards = sum(len(s.paths) for s in self.sets)
        limit = 2 * sum(s.num_samples for s in self.sets) + self.shuffle_buffer + 1000
        empty_in_a_row = 0
        for path, expected in resampled_shards(self.sets, rng):
            before = progress.read
            for sample in read_shard(path, expected, self.counter):
                progress.read += 1
                if progress.read - progress.read_at_last_decode > limit:
                    raise ConfigError(f"no usable sample in the last {limit} samples read from {self.names}: every one was "
                                      f"filtered out (subjects, balance_classes) or corrupt (counts: {self.counter.local()})")
                yield sample
            empty_in_a_row = 0 if progress.read > before else empty_in_a_row + 1
            if empty_in_a_row > 10 + 10 * shards:
                raise ConfigError(f"no readable shard in {self.names}: {empty_in_a_row} shard reads in a row found no whole "
                                  f"sample (last: {path}); check the set with `python -m data_shards verify`")

    def _batches(self) -> Iterator[Batch]:
        worker, workers = self._worker()
        remaining = self.batches_per_epoch - self.state.start_batch
        mine = remaining // workers + (worker < remaining % workers)
        if mine <= 0:
            return
        seeds = np.random.SeedSequence([self.seed, self.state.epoch, self.state.start_batch, self.rank * workers + worker]).spawn(4)
        shard_rng, filter_rng, augment_rng = (np.random.default_rng(seeds[i]) for i in (0, 1, 2))
        shuffle_rng = random.Random(int(seeds[3].generate_state(1)[0]))
        progress = Progress()
        decode = self._decoder(augment_rng)

        def decode_and_note(sample: Sample) -> Decoded:
            result = decode(sample)
            progress.read_at_last_decode = progress.read
            return result

        buffer = self.shuffle_buffer
        shuffle = wds.shuffle(buffer, initial=buffer, rng=shuffle_rng) if buffer > 1 else None
        pipeline = self._pipeline(lambda: self._samples(shard_rng, progress), decode_and_note, filter_rng, shuffle, partial=False)
        yield from islice(pipeline, mine)


class EvalStream(_Stream):
    """Every sample of every set exactly once across ranks and workers, in shard order; last batch partial.

    ``worker_batches`` (several ranks): this rank's batches per worker (:func:`eval_batch_plan`);
    a worker pads with one-row ``valid = False`` batches up to its count. None = no padding.
    """

    def __init__(self, *args: Any, worker_batches: list[int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.worker_batches = worker_batches

    def _samples(self, me: int, total_workers: int) -> Iterator[Sample]:
        shards = [(path, samples) for s in self.sets for path, samples in zip(s.paths, s.samples)]
        plan = owned_by([samples for _, samples in shards], total_workers)
        for (path, samples), (owner, offset) in zip(shards, plan):
            if owner >= 0 and owner != me:
                continue
            keep = (lambda j: True) if owner >= 0 else (lambda j, o=offset: (o + j) % total_workers == me)
            yield from read_shard(path, samples, self.counter, keep)

    def _any_sample(self, decode: Callable[[Sample], Decoded]) -> Decoded:
        """The first sample of the sets that decodes (whoever owns it, unfiltered, uncounted): what padding repeats."""
        for path in (path for s in self.sets for path in s.paths):
            try:
                for sample in shard_samples(path):
                    try:
                        return decode(sample)
                    except CorruptSample:
                        continue
            except TAR_DAMAGE:
                continue
        raise ConfigError(f"no readable sample in {self.names} to pad this rank's evaluation batches with; "
                          "check the sets with `python -m data_shards verify`")

    def _batches(self) -> Iterator[Batch]:
        worker, workers = self._worker()
        rng = np.random.default_rng(self.seed)
        decode = self._decoder(rng)
        pipeline = self._pipeline(lambda: self._samples(self.rank * workers + worker, self.world * workers), decode, rng)
        produced, first = 0, None
        for batch in pipeline:
            produced, first = produced + 1, first or batch
            yield batch
        missing = self.worker_batches[worker] - produced if self.worker_batches is not None else 0
        if missing > 0:
            pad = padding_batch(first or collate([self._any_sample(decode)]))
            for _ in range(missing):
                yield dict(pad)
