"""Typed configuration of a whole MAE pretraining run: model, data, optimisation, trainer, tracking.

These dataclasses import nothing heavy, so ``python -m pretrain --help`` is fast. Each one
reports impossible settings through ``problems()``; :func:`plumbing.recipes.validate` turns
them into one error naming every dotted key (``model.encoder.img_size=100: ...``). Named
recipes under ``configs/pretrain/`` fill them in; a test loads every recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from data_shards.sections import DataSections
from face_core.engine.config import OptimConfig, TrackingConfig, TrainerConfig
from face_core.model.config import MAEConfig
from plumbing.recipes import Problems


@dataclass
class PretrainDataConfig(DataSections):
    """Shard streams feeding pretraining (see docs/shards.md for the format), one section per modality.

    An epoch holds ``images.passes`` passes over the image set and ``clips.passes`` over the clip
    set, one modality per step in a seeded order. A clip step reads ``clips.batch_size`` clips and
    crops each ``clips.repeats`` times, so it trains on ``clips.batch_size * clips.repeats`` samples
    (S4D: 48 clips x 4 = 192 samples, as many as an image step, and a quarter of the clips per
    epoch: ``clips.passes`` 0.25, the ``repeat_factor`` of its video loader). Pretraining resizes
    whole samples by default (``augment.crop_scale`` (1, 1), bilinear) and erases nothing.

    Args:
        images: image shard sets, batch, passes and augmentation.
        clips: clip shard sets (empty = images only), batch, passes, repeats, frame stride (``model.encoder.num_frames`` frames) and augmentation.
        num_workers: loader worker processes per device.
        shuffle_buffer: samples in the shuffle buffer (``FACE_SHUFFLE_BUFFER`` overrides).
        samples_per_epoch: image samples in one pass across all ranks; 0 = the manifest count (a pass over the clips is always their manifest count).
    """

    num_workers: int = 4
    shuffle_buffer: int = 5000
    samples_per_epoch: int = 0

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found = super().problems()
        for section in (self.images, self.clips):
            if section.augment.random_erase:
                found.append((f"{section.key}.augment.random_erase", "must be 0: pretraining erases nothing (MAE masks patches)"))
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
