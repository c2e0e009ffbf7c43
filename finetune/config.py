"""Typed configuration of fine-tuning: encoder start point, tasks, IAT, MoAE, data, optimiser, evaluation.

Imports nothing heavy, so ``python -m finetune --help`` is fast. Each dataclass reports
impossible settings through ``problems()``; :func:`plumbing.recipes.validate` names
the dotted key. The model section is the task model's own (:class:`face_core.model.config.TaskModelConfig`);
optimiser, trainer and tracking sections are the engine's (:mod:`face_core.engine.config`).
Recipes live under ``configs/finetune/``; a test loads every one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from data_shards.sections import AugmentConfig, ClipSection, DataSections, ImageSection
from face_core.engine.config import OptimConfig, TrackingConfig, TrainerConfig
from face_core.model.config import TaskModelConfig
from plumbing.recipes import Problems

Task = Literal["au", "expression"]
Split = Literal["train", "val", "test"]
DEFAULT_TRAINER = TrainerConfig(output_dir="runs/finetune", max_epochs=20)
DEFAULT_TRACKING = TrackingConfig(experiment="face-finetune")


@dataclass
class TasksConfig:
    """What is learned: each task gets one head per modality whose shards carry its labels.

    Args:
        tasks: ``au`` (multi-label AU detection) and/or ``expression`` (multi-class).
        au_pos_weight: per-AU weight of positives in the BCE (in manifest AU order); empty = 1.
        au_balance: weigh each AU's positives by its negatives / positives in the training
            manifests (replaces ``au_pos_weight``; the weights used are stored with the run). F1
            at threshold 0.5 rewards recall that an unweighted BCE does not.
        label_smoothing: expression label smoothing.
    """

    tasks: list[Task] = field(default_factory=lambda: ["au"])
    au_pos_weight: list[float] = field(default_factory=list)
    au_balance: bool = False
    label_smoothing: float = 0.1

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found: Problems = []
        if not self.tasks:
            found.append(("tasks", "name at least one of 'au', 'expression'"))
        if len(set(self.tasks)) != len(self.tasks):
            found.append(("tasks", "lists a task twice"))
        if any(w <= 0 for w in self.au_pos_weight):
            found.append(("au_pos_weight", "weights must be > 0"))
        if not 0.0 <= self.label_smoothing < 1.0:
            found.append(("label_smoothing", "must be in [0, 1)"))
        return found


@dataclass
class IATConfig:
    """Identity-Adversarial Training: an identity head behind a gradient reversal layer.

    The identity loss is FMAE-IAT's by default: ``BCEWithLogitsLoss`` on one-hot identities,
    averaged over batch x subjects. Its lambda values (2 / 1 / 0.5) are tuned for that loss:
    cross-entropy sends back a gradient about ``2 * sqrt(S)`` times larger at S subjects (~12x at
    BP4D's 41), so with ``loss: cross_entropy`` lambda must be scaled down to mean the same.

    Args:
        strength: lambda, the reversed gradient's scale (BP4D 2, BP4D+ 1, DISFA 0.5); 0 = off.
        schedule: ``constant`` (the reference) or ``dann`` (ramp from 0 to ``strength``).
        loss: ``bce`` (FMAE-IAT: one-hot BCE, mean over batch x subjects) or ``cross_entropy``.
        loss_weight: weight of the identity loss in the total loss.
    """

    strength: float = 0.0
    schedule: Literal["constant", "dann"] = "constant"
    loss: Literal["bce", "cross_entropy"] = "bce"
    loss_weight: float = 1.0

    @property
    def enabled(self) -> bool:
        """IAT is on (the model gets an identity head) when ``strength > 0``."""
        return self.strength > 0

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found: Problems = []
        if self.strength < 0:
            found.append(("strength", "must be >= 0 (0 = off)"))
        if self.loss_weight <= 0:
            found.append(("loss_weight", "must be > 0"))
        return found


def timm_augment() -> AugmentConfig:
    """The references' image augmentation, timm's ``create_transform`` as they call it.

    Random resized crop (bicubic, scale (0.08, 1)), flip, RandAugment ``rand-m9-mstd0.5-inc1``
    and random erasing 0.25 (per-pixel normal noise on the normalised pixels, on the device).
    """
    return AugmentConfig(crop_scale=(0.08, 1.0), interpolation="bicubic", rand_augment="rand-m9-mstd0.5-inc1", random_erase=0.25)


def videomae_augment() -> AugmentConfig:
    """VideoMAE/S4D's clip augmentation: as :func:`timm_augment`, with bilinear crops and ``rand-m7-n4-mstd0.5-inc1``."""
    return dataclasses.replace(timm_augment(), interpolation="bilinear", rand_augment="rand-m7-n4-mstd0.5-inc1")


@dataclass
class LabelledSplits:
    """What fine-tuning adds to a modality's training shards: its labelled evaluation splits and class balancing.

    Args:
        val: shard sets for validation (model selection, AU thresholds).
        test: shard sets for the final test; empty = no test.
        class_balanced: draw the expression classes equally often in training (by manifest counts;
            samples without an expression label are dropped).
    """

    val: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    class_balanced: bool = False


@dataclass
class FinetuneImages(ImageSection, LabelledSplits):
    """Labelled images per split; training augmentation as timm's ``create_transform`` (FMAE-IAT).

    Args:
        batch_size: images per device per step.
        augment: augmentation of training images.
    """

    batch_size: int = 32
    augment: AugmentConfig = field(default_factory=timm_augment)


@dataclass
class FinetuneClips(ClipSection, LabelledSplits):
    """Labelled clips per split; training augmentation as VideoMAE/S4D's; 16 frames at stride 4 for DFEW and MAFW.

    Args:
        augment: augmentation of training clips (one draw for all the frames of a clip).
    """

    augment: AugmentConfig = field(default_factory=videomae_augment)


@dataclass
class FinetuneDataConfig(DataSections):
    """Labelled shard sets (manifest paths or brace patterns) per modality and split, epoch make-up and augmentation.

    An epoch holds ``images.passes`` passes over the image training set and ``clips.passes`` over
    the clip training set, one modality per step in a seeded order (S4D's joint training:
    ``images.passes`` 0.5, its ``sfer_data_rate``). The test cuts each clip into ``test_clips``
    windows at ``clips.frame_stride`` spaced over the whole clip, times ``test_crops`` crops along the
    long side, and averages their probabilities (VideoMAE/S4D).

    Args:
        images: image shard sets per split, batch, passes, augmentation, class balancing.
        clips: clip shard sets per split, batch, passes, repeats, frame stride, augmentation, class balancing.
        train_subjects: keep only these subjects in training; empty = all (k-fold runs set them).
        val_subjects: keep only these subjects in validation; empty = all.
        test_subjects: keep only these subjects in the test; empty = all.
        mixup_alpha: Beta parameter of mixup; 0 = off.
        cutmix_alpha: Beta parameter of cutmix; 0 = off.
        mix_prob: probability that a batch is mixed.
        mix_switch_prob: probability of cutmix rather than mixup when both are on.
        test_clips: temporal windows per test clip, spaced over the whole clip, averaged.
        test_crops: spatial crops per test window along the long side (short side resized), averaged.
        num_workers: loader worker processes per device.
        shuffle_buffer: samples in the shuffle buffer (``FACE_SHUFFLE_BUFFER`` overrides).
        samples_per_epoch: samples in one pass over each training set (images and clips) across ranks; 0 = its manifest count.
    """

    images: FinetuneImages = field(default_factory=FinetuneImages)
    clips: FinetuneClips = field(default_factory=FinetuneClips)
    train_subjects: list[str] = field(default_factory=list)
    val_subjects: list[str] = field(default_factory=list)
    test_subjects: list[str] = field(default_factory=list)
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0
    mix_switch_prob: float = 0.5
    test_clips: int = 1
    test_crops: int = 1
    num_workers: int = 2
    shuffle_buffer: int = 2000
    samples_per_epoch: int = 0

    def shards(self, modality: str, split: Split) -> list[str]:
        """The shard sets of ``modality``'s ``split`` (``train``, ``val`` or ``test``)."""
        section = self.section(modality)
        return {"train": section.train, "val": section.val, "test": section.test}[split]  # type: ignore[attr-defined]

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found = super().problems()
        for name in ("test_clips", "test_crops"):
            if getattr(self, name) < 1:
                found.append((name, "must be >= 1"))
        for name in ("mix_prob", "mix_switch_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                found.append((name, "is a probability in [0, 1]"))
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            found.append(("mixup_alpha", "mixup_alpha and cutmix_alpha must be >= 0"))
        if self.num_workers < 0 or self.shuffle_buffer < 0 or self.samples_per_epoch < 0:
            found.append(("num_workers", "num_workers, shuffle_buffer and samples_per_epoch must be >= 0"))
        overlap = (set(self.train_subjects) & set(self.test_subjects)) | (set(self.val_subjects) & set(self.test_subjects))
        if overlap:
            found.append(("test_subjects", f"subjects {sorted(overlap)[:5]} are also in training or validation"))
        return found


@dataclass
class FinetuneOptimConfig(OptimConfig):
    """AdamW (same parameter grouping as pretraining) with layer-wise lr decay, warmup then cosine.

    The other fields are :class:`~face_core.engine.config.OptimConfig`'s (fine-tuning defaults).

    Args:
        layer_decay: lr multiplier per block going down (0.75); 1 = off.
    """

    base_lr: float = 1e-3
    min_lr: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.999)
    layer_decay: float = 0.75

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found = super().problems()
        if not 0.0 < self.layer_decay <= 1.0:
            found.append(("layer_decay", "must be in (0, 1]"))
        return found


@dataclass
class EvalConfig:
    """Model selection and the final evaluation.

    Args:
        monitor: validation metric that selects the best checkpoint; ``auto`` = ``val/au_f1_<m>``
            for AU runs, else ``val/war_<m>`` (``m`` = image when images train, else clip).
        test: evaluate the best checkpoint on the test split after training.
        identity_probe: measure identity leakage on the test split's features (linear probe).
        probe_epochs: full-batch optimisation steps of the identity probe.
    """

    monitor: str = "auto"
    test: bool = True
    identity_probe: bool = True
    probe_epochs: int = 300

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found: Problems = []
        if self.monitor != "auto" and not self.monitor.startswith("val/"):
            found.append(("monitor", "must be 'auto' or a validation metric such as val/au_f1_image (never test)"))
        if self.probe_epochs < 1:
            found.append(("probe_epochs", "must be >= 1"))
        return found


@dataclass
class FinetuneConfig:
    """A whole fine-tuning run, as a recipe under ``configs/finetune/`` describes it."""

    model: TaskModelConfig = field(default_factory=TaskModelConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    iat: IATConfig = field(default_factory=IATConfig)
    data: FinetuneDataConfig = field(default_factory=FinetuneDataConfig)
    optim: FinetuneOptimConfig = field(default_factory=FinetuneOptimConfig)
    trainer: TrainerConfig = field(default_factory=lambda: DEFAULT_TRAINER)
    tracking: TrackingConfig = field(default_factory=lambda: DEFAULT_TRACKING)
    eval: EvalConfig = field(default_factory=EvalConfig)
