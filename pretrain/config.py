"""Typed configuration of a whole MAE pretraining run: model, data, optimisation, trainer, tracking.

These dataclasses import nothing heavy, so ``python -m pretrain --help`` is fast. Each one
reports impossible settings through ``problems()``; :func:`plumbing.recipes.validate` turns
them into one error naming every dotted key (``model.encoder.img_size=100: ...``). Named
recipes under ``configs/pretrain/`` fill them in; a test loads every recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from face_core.engine.config import OptimConfig, TrackingConfig, TrainerConfig
from face_core.model.config import MAEConfig
from plumbing.recipes import Problems


@dataclass
class PretrainDataConfig:
    """Shard streams feeding pretraining (see docs/shards.md for the format).

    An epoch holds ``image_passes`` passes over the image set and ``clip_passes`` over the clip
    set, one modality per step in a seeded order. A clip step reads ``clip_batch_size`` clips and
    crops each ``clip_repeats`` times, so it trains on ``clip_batch_size * clip_repeats`` samples
    (S4D: 48 clips x 4 = 192 samples, as many as an image step, and a quarter of the clips per
    epoch: ``clip_passes`` 0.25, the ``repeat_factor`` of its video loader).

    Args:
        image_shards: image shard sets: manifest paths or brace patterns (``dir/shard-{000000..000099}.tar``).
        image_weights: sampling weight per entry of ``image_shards`` (mixing sources); empty = equal.
        clip_shards: clip shard sets, as ``image_shards``; empty = images only.
        clip_weights: sampling weight per entry of ``clip_shards``.
        image_passes: passes over the image set in one epoch (a pass is ``samples_per_epoch`` or the manifest count).
        clip_passes: passes over the clip set in one epoch (S4D: 0.25).
        clip_repeats: views cropped from each clip read, each its own sample (S4D: 4; 1 = off).
        image_batch_size: images per device per step.
        clip_batch_size: clips read per device per step (each gives ``clip_repeats`` samples).
        clip_stride: frame stride when sampling ``model.encoder.num_frames`` frames from a clip.
        crop_scale: min and max area fraction of the images' random resized crop (1, 1 = resize only).
        clip_crop_scale: the same for clips (the box is shared by the frames of a clip).
        interpolation: resizing of image crops, ``bilinear`` or ``bicubic`` (S4D); clip crops are bilinear.
        hflip: random horizontal flip probability.
        num_workers: loader worker processes per device.
        shuffle_buffer: samples in the shuffle buffer (``FACE_SHUFFLE_BUFFER`` overrides).
        samples_per_epoch: image samples in one pass across all ranks; 0 = the manifest count.
    """

    image_shards: list[str] = field(default_factory=list)
    image_weights: list[float] = field(default_factory=list)
    clip_shards: list[str] = field(default_factory=list)
    clip_weights: list[float] = field(default_factory=list)
    image_passes: float = 1.0
    clip_passes: float = 1.0
    clip_repeats: int = 1
    image_batch_size: int = 64
    clip_batch_size: int = 8
    clip_stride: int = 4
    crop_scale: tuple[float, float] = (1.0, 1.0)
    clip_crop_scale: tuple[float, float] = (1.0, 1.0)
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    hflip: float = 0.5
    num_workers: int = 4
    shuffle_buffer: int = 5000
    samples_per_epoch: int = 0

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found: Problems = []
        if not self.image_shards and not self.clip_shards:
            found.append(("image_shards", "give image_shards, clip_shards or both"))
        for shards, weights in (("image_shards", "image_weights"), ("clip_shards", "clip_weights")):
            given = getattr(self, weights)
            if given and len(given) != len(getattr(self, shards)):
                found.append((weights, f"needs one weight per entry of {shards}"))
            if any(w <= 0 for w in given):
                found.append((weights, "weights must be positive"))
        for name in ("image_passes", "clip_passes"):
            if getattr(self, name) <= 0:
                found.append((name, "must be > 0 (leave the shards out to train without that modality)"))
        for name in ("image_batch_size", "clip_batch_size", "clip_stride", "clip_repeats"):
            if getattr(self, name) < 1:
                found.append((name, "must be >= 1"))
        for name in ("crop_scale", "clip_crop_scale"):
            low, high = getattr(self, name)
            if not 0.0 < low <= high <= 1.0:
                found.append((name, "needs 0 < min <= max <= 1"))
        if not 0.0 <= self.hflip <= 1.0:
            found.append(("hflip", "is a probability in [0, 1]"))
        if self.num_workers < 0 or self.shuffle_buffer < 0 or self.samples_per_epoch < 0:
            found.append(("num_workers", "num_workers, shuffle_buffer and samples_per_epoch must be >= 0"))
        return found


@dataclass
class RepresentationProbeConfig:
    """An online linear probe of the encoder during pretraining (off while ``train_shards`` is empty).

    At step 0, every ``every_n_steps`` optimiser steps and at the end of training, logistic regressions are
    fitted on the encoder's frozen pooled features of a small labelled image set and scored on
    another (``probe/au_f1``, ``probe/au_f1_valthr``, ``probe/uar``, ``probe/war``), logged
    beside the loss: a curve of representation quality (see :mod:`pretrain.representation_probe`).

    Args:
        train_shards: labelled image shard sets the probe is fitted on (manifest paths or brace patterns); empty = no probe.
        val_shards: labelled image shard sets that choose its L2 strength and AU thresholds and are reported on.
        every_n_steps: probe period in optimiser steps.
        max_samples: at most this many samples of each of the two sets (the first in shard order), kept decoded in memory.
        batch_size: images per forward pass of the encoder.
    """

    train_shards: list[str] = field(default_factory=list)
    val_shards: list[str] = field(default_factory=list)
    every_n_steps: int = 500
    max_samples: int = 2000
    batch_size: int = 256

    @property
    def enabled(self) -> bool:
        """True when a probe set is given."""
        return bool(self.train_shards)

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found: Problems = []
        if bool(self.train_shards) != bool(self.val_shards):
            missing = "val_shards" if self.train_shards else "train_shards"
            found.append((missing, "give both train_shards and val_shards for the probe, or neither (no probe)"))
        for name in ("every_n_steps", "max_samples", "batch_size"):
            if getattr(self, name) < 1:
                found.append((name, "must be >= 1"))
        return found


@dataclass
class PretrainConfig:
    """A whole pretraining run, as a recipe under ``configs/pretrain/`` describes it."""

    model: MAEConfig = field(default_factory=MAEConfig)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    probe: RepresentationProbeConfig = field(default_factory=RepresentationProbeConfig)
