"""The data sections of a training recipe, one per modality, in the same words for both training stages.

Both training stages describe their training data with the same words: ``data.images`` and
``data.clips``, each with its shard sets (``train``), their sampling ``weights``, the
``batch_size``, the ``passes`` per epoch and the ``augment`` of training samples; clips add the
views cropped from each clip read (``repeats``) and the ``frame_stride``. Each stage subclasses
them for its own defaults (and fine-tuning adds its evaluation splits). The defaults here are the
loader's: no random crop, bilinear resizing, flips, no RandAugment, no erasing.
:func:`data_shards.loaders.loader_config` is the one place a section becomes a loader's config.
Plain dataclasses (nothing heavy imported), so ``--help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from plumbing.recipes import Problems


@dataclass
class AugmentConfig:
    """Training augmentation of one modality: random resized crop, flip, RandAugment, random erasing.

    A clip gets one crop box, one flip, one RandAugment draw and one erased box for all its frames
    (VideoMAE/S4D). With ``rand_augment`` empty the loader stays on uint8 tensors (fast).

    Args:
        crop_scale: min and max area fraction of the random resized crop; (1, 1) = resize only.
        crop_ratio: min and max aspect ratio of the crop.
        interpolation: resizing of the crops: ``bilinear`` (VideoMAE's clip crops) or ``bicubic`` (timm's training transform).
        hflip: horizontal flip probability.
        rand_augment: timm RandAugment config (``rand-m9-mstd0.5-inc1``); empty = off.
        random_erase: probability of erasing one random box of a sample (timm ``RandomErasing``, mode pixel,
            on the device; fine-tuning only); 0 = off.
    """

    crop_scale: tuple[float, float] = (1.0, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    hflip: float = 0.5
    rand_augment: str = ""
    random_erase: float = 0.0

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found: Problems = []
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            found.append(("crop_scale", "needs 0 < min <= max <= 1"))
        if not 0.0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            found.append(("crop_ratio", "needs 0 < min <= max"))
        for name in ("hflip", "random_erase"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                found.append((name, "is a probability in [0, 1]"))
        if self.rand_augment and not self.rand_augment.startswith("rand"):
            found.append(("rand_augment", "must be a timm RandAugment config such as 'rand-m9-mstd0.5-inc1', or empty"))
        return found


@dataclass
class ImageSection:
    """The training images of a stage.

    Args:
        train: shard sets to train on: manifest paths, shard-set folders or brace patterns
            (``dir/shard-{000000..000099}.tar``); empty = no images.
        weights: sampling weight per entry of ``train`` (mixing sources); empty = equal.
        batch_size: samples read per device per step.
        passes: passes over ``train`` in one epoch (a pass: ``samples_per_epoch`` or the manifest count).
        augment: augmentation of training samples.
    """

    modality: ClassVar[str] = "image"
    key: ClassVar[str] = "images"  # its key in a recipe's ``data``

    train: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    batch_size: int = 64
    passes: float = 1.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found: Problems = []
        if self.weights and len(self.weights) != len(self.train):
            found.append(("weights", "needs one weight per entry of train"))
        if any(w <= 0 for w in self.weights):
            found.append(("weights", "weights must be positive"))
        if self.batch_size < 1:
            found.append(("batch_size", "must be >= 1"))
        if self.passes <= 0:
            found.append(("passes", "must be > 0 (leave train empty to train without this modality)"))
        return found


@dataclass
class ClipSection(ImageSection):
    """The training clips of a stage: as images, and each clip read gives ``repeats`` samples.

    Args:
        train: shard sets to train on: manifest paths, shard-set folders or brace patterns; empty = no clips.
        batch_size: clips read per device per step (each gives ``repeats`` samples).
        passes: passes over ``train`` in one epoch (a pass: the stage's ``samples_per_epoch`` where it sizes clips, else the manifest count).
        augment: augmentation of training clips (one draw for all the frames of a clip).
        repeats: views cropped from each clip read, each its own sample (VideoMAE ``num_sample``, S4D ``Replicate``; 1 = off).
        frame_stride: stored frames between two sampled frames, in training and evaluation alike.
    """

    modality: ClassVar[str] = "clip"
    key: ClassVar[str] = "clips"

    batch_size: int = 8
    repeats: int = 1
    frame_stride: int = 4

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found = super().problems()
        for name in ("repeats", "frame_stride"):
            if getattr(self, name) < 1:
                found.append((name, "must be >= 1"))
        return found


SECTION_KEYS = {section.modality: section.key for section in (ImageSection, ClipSection)}


@dataclass
class DataSections:
    """The ``images`` and ``clips`` sections of a stage's data config, looked up by modality.

    Args:
        images: training images.
        clips: training clips.
    """

    images: ImageSection = field(default_factory=ImageSection)
    clips: ClipSection = field(default_factory=ClipSection)

    def section(self, modality: str) -> ImageSection:
        """The section of ``modality`` (``image`` or ``clip``)."""
        return {"image": self.images, "clip": self.clips}[modality]

    def training(self) -> list[str]:
        """The modalities with training shards, images first."""
        return [s.modality for s in (self.images, self.clips) if s.train]

    def micro_batch(self) -> int:
        """Samples per device that size an optimiser step: the image batch when images train, else the clip batch."""
        return self.images.batch_size if self.images.train else self.clips.batch_size

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        if not self.images.train and not self.clips.train:
            return [("images.train", "give images.train, clips.train or both")]
        return []

