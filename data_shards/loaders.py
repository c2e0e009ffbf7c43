"""The training input: loaders over WebDataset shard sets that follow the batch contract.

``train_loader(config)`` and ``eval_loader(config)`` return a :class:`ShardLoader`: iterate it for
batches (see docs/architecture.md), ``len()`` is the batches per epoch on this rank (identical on
every rank, for evaluation too: padded with ``valid = False`` rows), ``set_epoch(epoch)`` reseeds, ``skipped`` counts corrupt samples and
truncated shards, and ``state_dict()``/``load_state_dict()`` resume mid-epoch without re-reading
what was consumed. Pixels arrive as uint8; :func:`normalize_pixels` normalises on the device.
:func:`loader_config` is the loader config of a recipe's data section (:mod:`data_shards.sections`).
Shards are read by webdataset pipelines (:mod:`data_shards.sample_streams`). Data that cannot
train at all (no readable shard, no usable sample) ends the iteration with one ConfigError that
names the shard sets, raised here in the main process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch

from data_shards.decode import LabelMap, ViewConfig, ViewOptions
from data_shards.sample_streams import Batch, EvalStream, SampleFilter, StreamFailure, TrainStream, eval_batch_plan
from data_shards.sections import ClipSection, ImageSection
from data_shards.shard_sets import ShardSet, resolve_sets
from data_shards.tar_samples import SkipCounter
from plumbing.recipes import ConfigError, validate

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Problems = list[tuple[str, str]]


@dataclass
class LoaderConfig:
    """One loader over one modality.

    Args:
        shards: shard sets: manifest paths, shard-set folders or brace patterns of shard files.
        weights: sampling weight per shard set (training); empty = equal.
        modality: ``image`` or ``clip``.
        batch_size: samples per batch on each rank.
        img_size: output side in pixels; 0 = the manifest's image size.
        num_frames: frames per clip in a batch.
        frame_stride: stored frames between two sampled frames.
        crop_scale: area fraction range of the random resized crop (training); (1, 1) = no crop.
        crop_ratio: aspect ratio range of the random resized crop.
        hflip: horizontal flip probability (training).
        num_workers: DataLoader worker processes per rank; 0 = read in the main process.
        shuffle_buffer: samples in the shuffle buffer (training); ``FACE_SHUFFLE_BUFFER`` overrides.
        samples_per_epoch: training samples per epoch over all ranks; 0 = the sets' manifest counts.
        seed: seed of shard draws, shuffling and augmentation (combined with the epoch).
        subjects: keep only samples of these subjects (subject-exclusive folds); empty = all.
        balance_classes: training: keep a sample of expression class c with probability min_count / count_c
            (manifest counts), so every class is drawn equally often; samples without expression are dropped.
        pin_memory: pin batches in page-locked memory when CUDA is available (faster, asynchronous copies to the GPU).
        rank: this process's rank; -1 = torch.distributed when initialised, else ``$RANK`` (0).
        world_size: number of ranks; -1 = torch.distributed when initialised, else ``$WORLD_SIZE`` (1).
        view_options: interpolation, RandAugment, repeated sampling and multi-view test of each view.
    """

    shards: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    modality: Literal["image", "clip"] = "image"
    batch_size: int = 64
    img_size: int = 0
    num_frames: int = 16
    frame_stride: int = 1
    crop_scale: tuple[float, float] = (1.0, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    num_workers: int = 2
    shuffle_buffer: int = 2000
    samples_per_epoch: int = 0
    seed: int = 0
    subjects: list[str] = field(default_factory=list)
    balance_classes: bool = False
    pin_memory: bool = True
    rank: int = -1
    world_size: int = -1
    view_options: ViewOptions = field(default_factory=ViewOptions)

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found: Problems = []
        if not self.shards:
            found.append(("shards", "give at least one manifest path or brace pattern"))
        for name in ("batch_size", "num_frames", "frame_stride"):
            if getattr(self, name) < 1:
                found.append((name, "must be >= 1"))
        for name in ("img_size", "num_workers", "shuffle_buffer", "samples_per_epoch"):
            if getattr(self, name) < 0:
                found.append((name, "must be >= 0"))
        if not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0:
            found.append(("crop_scale", "needs 0 < min <= max <= 1"))
        if not 0.0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            found.append(("crop_ratio", "needs 0 < min <= max"))
        if not 0.0 <= self.hflip <= 1.0:
            found.append(("hflip", "is a probability in [0, 1]"))
        return found


def loader_config(section: ImageSection, *, img_size: int, num_frames: int, seed: int, **stage: Any) -> LoaderConfig:
    """The loader of ``section``'s training shards: its batch, augmentation and views, the encoder's input size.

    ``stage`` sets the loader fields a stage decides itself (``num_workers``, ``shuffle_buffer``,
    ``samples_per_epoch``, ``rank``, ``world_size``). Evaluation loaders are this loader with other
    ``shards`` and ``view_options`` (they neither augment nor repeat).
    """
    augment, clip = section.augment, isinstance(section, ClipSection)
    return LoaderConfig(
        shards=list(section.train), weights=list(section.weights), modality=section.modality,  # type: ignore[arg-type]
        batch_size=section.batch_size, img_size=img_size, num_frames=num_frames,
        frame_stride=section.frame_stride if clip else 1,
        crop_scale=tuple(augment.crop_scale), crop_ratio=tuple(augment.crop_ratio), hflip=augment.hflip,  # type: ignore[arg-type]
        seed=seed, view_options=ViewOptions(augment.interpolation, augment.rand_augment, section.repeats if clip else 1), **stage,
    )


def rank_and_world(config: LoaderConfig) -> tuple[int, int]:
    """This process's rank and the world size: the config, else torch.distributed, else RANK/WORLD_SIZE."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    else:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    rank = rank if config.rank < 0 else config.rank
    world = world if config.world_size < 0 else config.world_size
    if not 0 <= rank < world:
        raise ConfigError(f"rank={rank} is outside [0, world_size={world})")
    return rank, world


def _set_worker_threads(_: int) -> None:
    torch.set_num_threads(1)


class ShardLoader:
    """Batches of one epoch per iteration; resumable mid-epoch; counts skipped samples across workers."""

    def __init__(self, stream: TrainStream | EvalStream, num_workers: int, length: int, pin_memory: bool = False) -> None:
        self.stream, self.num_workers, self.length, self.pin_memory = stream, num_workers, length, pin_memory
        self._consumed = 0

    @property
    def subjects(self) -> list[str]:
        """Vocabulary that ``batch["subject"]`` indexes."""
        return self.stream.labels.subjects

    @property
    def au_ids(self) -> list[str]:
        """AU id of each column of ``batch["aus"]``."""
        return self.stream.labels.au_ids

    @property
    def class_names(self) -> list[str]:
        """Name of each ``batch["expression"]`` class."""
        return self.stream.labels.class_names

    @property
    def skipped(self) -> dict[str, int]:
        """Corrupt samples and truncated shards skipped so far (all workers of this rank)."""
        return self.stream.counter.totals()

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch, unless ``load_state_dict`` just positioned it inside that epoch."""
        if epoch != self.stream.state.epoch:
            self.stream.state.epoch, self.stream.state.start_batch = epoch, 0

    def state_dict(self) -> dict[str, int]:
        """The epoch and the batches of it consumed on this rank."""
        return {"epoch": self.stream.state.epoch, "batches_done": self.stream.state.start_batch + self._consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue ``state["epoch"]`` after ``state["batches_done"]`` batches (training: a fresh draw of the rest)."""
        self.stream.state.epoch, self.stream.state.start_batch = int(state["epoch"]), int(state["batches_done"])

    def __iter__(self) -> Iterator[Batch]:
        from torch.utils.data import DataLoader

        self._consumed = 0
        damaged_before = self.skipped["truncated_shard"]
        real = False  # a sample read, not padding
        import multiprocessing

        # fork starts workers in milliseconds; spawned ranks (mp.spawn, ddp_spawn) would otherwise
        # spawn workers too, each re-importing torch (seconds per worker, every epoch)
        context = "fork" if self.num_workers and "fork" in multiprocessing.get_all_start_methods() else None
        loader = DataLoader(self.stream, batch_size=None, num_workers=self.num_workers, multiprocessing_context=context,
                            worker_init_fn=_set_worker_threads if self.num_workers else None,
                            pin_memory=self.pin_memory and torch.cuda.is_available())
        for batch in loader:
            if isinstance(batch, StreamFailure):
                raise batch.error
            self._consumed += 1
            real = real or bool(batch["valid"].any())
            yield batch
        if isinstance(self.stream, EvalStream) and not real and self.skipped["truncated_shard"] > damaged_before:
            raise ConfigError(f"no readable sample in {self.stream.names}: this rank read none, and its shards were damaged "
                              f"({self.skipped}); check the set with `python -m data_shards verify`")
        if isinstance(self.stream, TrainStream):
            self.stream.state.start_batch, self._consumed = 0, 0
            self.stream.state.epoch += 1


def _build(config: LoaderConfig, train: bool) -> tuple[list[ShardSet], LabelMap, ViewConfig, int, int]:
    validate(config)
    sets = resolve_sets(config.shards, config.weights, config.modality)
    labels = LabelMap([s.manifest for s in sets])
    img_size = config.img_size or sets[0].manifest.img_size
    view = ViewConfig(config.modality, img_size, config.num_frames if config.modality == "clip" else 1, config.frame_stride,
                      config.crop_scale, config.crop_ratio, config.hflip, train, config.view_options)
    rank, world = rank_and_world(config)
    return sets, labels, view, rank, world


def _sample_filter(config: LoaderConfig, sets: list[ShardSet], labels: LabelMap, train: bool) -> tuple[SampleFilter | None, float]:
    """The filter ``config`` asks for and the fraction of samples it is expected to keep (from manifest counts)."""
    balance = train and config.balance_classes
    if not config.subjects and not balance:
        return None, 1.0
    kept = 1.0
    if config.subjects:
        wanted = set(config.subjects)
        if not wanted & set(labels.subjects):
            raise ConfigError(f"subjects: none of {sorted(wanted)[:5]}... is in the subjects of {[s.manifest.path for s in sets]}")
        if not any(s.manifest.counts.subject for s in sets):
            raise ConfigError(f"subjects: {sets[0].manifest.path} records no per-subject counts; rebuild the set or give samples_per_epoch")
        selected = sum(s.num_samples * sum(n for subject, n in s.manifest.counts.subject.items() if subject in wanted)
                       / max(1, s.manifest.counts.samples) for s in sets)
        kept = selected / sum(s.num_samples for s in sets)
    accept = None
    if balance:
        classes = len(sets[0].manifest.class_names) if sets[0].manifest.class_names else 0
        counts = [sum(s.manifest.counts.expression.get(str(c), 0) for s in sets) for c in range(classes)]
        present = [n for n in counts if n > 0]
        if not present:
            raise ConfigError(f"balance_classes: {sets[0].manifest.path} records no expression counts")
        accept = tuple(min(present) / n if n else 0.0 for n in counts)
        kept *= len(present) * min(present) / sum(s.manifest.counts.samples for s in sets)
    return SampleFilter(frozenset(config.subjects) if config.subjects else None, accept), kept


def train_loader(config: LoaderConfig, **overrides: Any) -> ShardLoader:
    """Resampled, shuffled, fixed-size training batches; ``len()`` is the same on every rank."""
    config = replace(config, **overrides)
    sets, labels, view, rank, world = _build(config, train=True)
    keep, kept = _sample_filter(config, sets, labels, train=True)
    samples = config.samples_per_epoch or int(sum(s.num_samples for s in sets) * kept)
    batches = samples // (config.batch_size * world)
    if batches < 1:
        raise ConfigError(f"samples_per_epoch={samples} gives no full batch of batch_size={config.batch_size} on {world} ranks")
    buffer = int(os.environ.get("FACE_SHUFFLE_BUFFER", config.shuffle_buffer))
    counter = SkipCounter(max(1, config.num_workers))
    stream = TrainStream(sets, labels, view, config.batch_size, counter, rank, world, config.seed, keep,
                         batches_per_epoch=batches, shuffle_buffer=buffer)
    return ShardLoader(stream, config.num_workers, batches, config.pin_memory)


def eval_loader(config: LoaderConfig, **overrides: Any) -> ShardLoader:
    """Every (kept) sample once across ranks and workers, no augmentation; the last batch of a worker may be partial.

    With several ranks, every rank yields the same number of batches (``len()``, exact): the
    ranks with fewer samples, and workers whose samples the subject filter or damage reduced, end
    with one-row padding batches whose ``valid`` is False; consumers must ignore those rows. With
    one rank nothing is padded and ``len()`` is an upper bound under ``subjects`` (the filter reads
    labels as it goes).
    """
    config = replace(config, **overrides)
    sets, labels, view, rank, world = _build(config, train=False)
    keep, _ = _sample_filter(config, sets, labels, train=False)
    workers = max(1, config.num_workers)
    mine = eval_batch_plan([n for s in sets for n in s.samples], config.batch_size, world, workers)[rank]
    stream = EvalStream(sets, labels, view, config.batch_size, SkipCounter(workers), rank, world, config.seed, keep,
                        worker_batches=mine if world > 1 else None)
    return ShardLoader(stream, config.num_workers, sum(mine), config.pin_memory)


def normalize_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """Float32 ImageNet-normalised pixels from uint8 ``(B, 3, H, W)`` or ``(B, 3, T, H, W)``, on their device."""
    shape = (1, 3) + (1,) * (pixels.dim() - 2)
    mean = torch.tensor(IMAGENET_MEAN, device=pixels.device).view(shape) * 255.0
    std = torch.tensor(IMAGENET_STD, device=pixels.device).view(shape) * 255.0
    return (pixels.float() - mean) / std
