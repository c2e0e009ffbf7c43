"""Typed configuration of MAE pretraining: model, data, optimisation, trainer and tracking.

These dataclasses import nothing heavy, so ``python -m pretrain --help`` is fast. Each one
reports impossible settings through ``problems()``; :func:`data_shards.config_checks.validate`
turns them into one error naming every dotted key (``model.encoder.img_size=100: ...``).
Named recipes under ``configs/pretrain/`` fill them in; a test loads every recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Problems = list[tuple[str, str]]

VIT_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"embed_dim": 192, "depth": 12, "num_heads": 3},
    "small": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "base": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "large": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
    "huge": {"embed_dim": 1280, "depth": 32, "num_heads": 16},
}


@dataclass
class ViTConfig:
    """The shared image/clip ViT encoder (S4D: an image is a static clip).

    Args:
        img_size: input height and width in pixels; a multiple of ``patch_size``.
        patch_size: spatial side of a patch.
        num_frames: frames of a clip; a multiple of ``tubelet_size``. Images use one tubelet.
        tubelet_size: frames per temporal patch of the Conv3d patch embedding.
        in_chans: input channels.
        embed_dim: token width; a multiple of ``num_heads``.
        depth: number of transformer blocks.
        num_heads: attention heads per block.
        mlp_ratio: MLP hidden width over ``embed_dim``.
        qkv_bias: bias on the query/key/value projection.
        cls_token: prepend a learned CLS token (public MAE layout) or not (VideoMAE layout).
        drop_path_rate: stochastic depth at the last block (linear from 0).
        activation_checkpointing: recompute block activations in backward to save memory.
    """

    img_size: int = 224
    patch_size: int = 16
    num_frames: int = 16
    tubelet_size: int = 2
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    cls_token: bool = True
    drop_path_rate: float = 0.0
    activation_checkpointing: bool = False

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found: Problems = []
        for name in ("img_size", "patch_size", "num_frames", "tubelet_size", "in_chans", "embed_dim", "depth", "num_heads"):
            if getattr(self, name) < 1:
                found.append((name, "must be a positive integer"))
        if self.patch_size > 0 and self.img_size % self.patch_size:
            found.append(("img_size", f"must be divisible by patch_size={self.patch_size}"))
        if self.tubelet_size > 0 and self.num_frames % self.tubelet_size:
            found.append(("num_frames", f"must be divisible by tubelet_size={self.tubelet_size}"))
        if self.num_heads > 0 and self.embed_dim % self.num_heads:
            found.append(("embed_dim", f"must be divisible by num_heads={self.num_heads}"))
        if self.embed_dim % 4:
            found.append(("embed_dim", "must be a multiple of 4 (2-D sin-cos position table)"))
        if self.mlp_ratio <= 0:
            found.append(("mlp_ratio", "must be > 0"))
        if not 0.0 <= self.drop_path_rate < 1.0:
            found.append(("drop_path_rate", "must be in [0, 1)"))
        return found

    @classmethod
    def preset(cls, size: str, **overrides: object) -> "ViTConfig":
        """A standard size (``tiny``, ``small``, ``base``, ``large``, ``huge``) with overrides."""
        if size not in VIT_SIZES:
            raise KeyError(f"unknown ViT size {size!r}; expected one of {sorted(VIT_SIZES)}")
        return cls(**{**VIT_SIZES[size], **overrides})  # type: ignore[arg-type]


@dataclass
class MAEConfig:
    """Masked autoencoder: the encoder plus a light decoder and the masking policy.

    Args:
        encoder: the ViT encoder.
        decoder_embed_dim: decoder width.
        decoder_depth: decoder blocks.
        decoder_num_heads: decoder attention heads; divides ``decoder_embed_dim``.
        image_mask_ratio: fraction of image tokens removed, in (0, 1).
        clip_mask_ratio: fraction of clip tokens removed, in (0, 1).
        clip_masking: ``tube`` (one spatial mask repeated over time, VideoMAE) or ``random``.
        norm_pix_loss: regress patches normalised by their own mean and variance.
    """

    encoder: ViTConfig = field(default_factory=ViTConfig)
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    image_mask_ratio: float = 0.75
    clip_mask_ratio: float = 0.9
    clip_masking: Literal["tube", "random"] = "tube"
    norm_pix_loss: bool = True

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found: Problems = []
        for name in ("image_mask_ratio", "clip_mask_ratio"):
            if not 0.0 < getattr(self, name) < 1.0:
                found.append((name, "must be strictly between 0 and 1"))
        if min(self.decoder_embed_dim, self.decoder_depth, self.decoder_num_heads) < 1:
            found.append(("decoder_embed_dim", "decoder width, depth and heads must be positive"))
        elif self.decoder_embed_dim % self.decoder_num_heads:
            found.append(("decoder_embed_dim", f"must be divisible by decoder_num_heads={self.decoder_num_heads}"))
        if self.decoder_embed_dim % 4:
            found.append(("decoder_embed_dim", "must be a multiple of 4 (2-D sin-cos position table)"))
        return found


@dataclass
class PretrainDataConfig:
    """Shard streams feeding pretraining (see docs/shards.md for the format).

    Args:
        image_shards: image shard sets: manifest paths or brace patterns (``dir/shard-{000000..000099}.tar``).
        image_weights: sampling weight per entry of ``image_shards`` (mixing sources); empty = equal.
        clip_shards: clip shard sets, as ``image_shards``; empty = images only.
        clip_weights: sampling weight per entry of ``clip_shards``.
        clip_step_ratio: clip steps per image step within an epoch (S4D: 0.25).
        image_batch_size: images per device per step.
        clip_batch_size: clips per device per step.
        clip_stride: frame stride when sampling ``model.encoder.num_frames`` frames from a clip.
        crop_scale: min and max area fraction of the random resized crop (1, 1 = resize only).
        hflip: random horizontal flip probability.
        num_workers: loader worker processes per device.
        shuffle_buffer: samples in the shuffle buffer (``FACE_SHUFFLE_BUFFER`` overrides).
        samples_per_epoch: image samples in one epoch across all ranks; 0 = the manifest count.
    """

    image_shards: list[str] = field(default_factory=list)
    image_weights: list[float] = field(default_factory=list)
    clip_shards: list[str] = field(default_factory=list)
    clip_weights: list[float] = field(default_factory=list)
    clip_step_ratio: float = 0.25
    image_batch_size: int = 64
    clip_batch_size: int = 8
    clip_stride: int = 4
    crop_scale: tuple[float, float] = (1.0, 1.0)
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
        if self.clip_step_ratio < 0:
            found.append(("clip_step_ratio", "must be >= 0"))
        for name in ("image_batch_size", "clip_batch_size", "clip_stride"):
            if getattr(self, name) < 1:
                found.append((name, "must be >= 1"))
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            found.append(("crop_scale", "needs 0 < min <= max <= 1"))
        if not 0.0 <= self.hflip <= 1.0:
            found.append(("hflip", "is a probability in [0, 1]"))
        if self.num_workers < 0 or self.shuffle_buffer < 0 or self.samples_per_epoch < 0:
            found.append(("num_workers", "num_workers, shuffle_buffer and samples_per_epoch must be >= 0"))
        return found


@dataclass
class OptimConfig:
    """AdamW with linear warmup then half-cycle cosine, stepped per optimiser step.

    Args:
        base_lr: learning rate per 256 samples: lr = base_lr * effective_batch / 256.
        min_lr: floor of the cosine schedule.
        weight_decay: decoupled weight decay (never on biases, norms, tokens, position embeddings).
        betas: AdamW betas.
        warmup_fraction: fraction of all optimiser steps spent warming up.
        grad_clip: clip the global gradient norm to this value; 0 = off.
        accumulate_grad_batches: micro-batches per optimiser step.
    """

    base_lr: float = 1.5e-4
    min_lr: float = 0.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_fraction: float = 0.05
    grad_clip: float = 0.0
    accumulate_grad_batches: int = 1

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found: Problems = []
        if self.base_lr <= 0:
            found.append(("base_lr", "must be > 0"))
        if not 0 <= self.min_lr <= self.base_lr:
            found.append(("min_lr", "must be in [0, base_lr]"))
        if self.weight_decay < 0:
            found.append(("weight_decay", "must be >= 0"))
        if not all(0.0 <= b < 1.0 for b in self.betas):
            found.append(("betas", "each beta must be in [0, 1)"))
        if not 0.0 <= self.warmup_fraction < 1.0:
            found.append(("warmup_fraction", "must be in [0, 1)"))
        if self.grad_clip < 0:
            found.append(("grad_clip", "must be >= 0"))
        if self.accumulate_grad_batches < 1:
            found.append(("accumulate_grad_batches", "must be >= 1"))
        return found


@dataclass
class TrainerConfig:
    """Where and how long to train; passed to Lightning's Trainer by the training module.

    Args:
        output_dir: run folder for checkpoints, pictures and the local MLflow store.
        max_epochs: epochs to train.
        max_steps: stop after this many optimiser steps; -1 = run ``max_epochs``.
        accelerator: ``auto``, ``cpu`` or ``gpu``.
        devices: devices per node (one process each).
        num_nodes: nodes.
        strategy: ``auto``, ``ddp``, ``deepspeed_stage_2``, ``deepspeed_stage_3`` or ``fsdp`` (GPU only).
        deepspeed_config: DeepSpeed JSON config (e.g. ``configs/deepspeed/zero2.json``); empty = Lightning's defaults for the stage.
        precision: ``auto`` (bf16-mixed on GPU, 32 on CPU), ``32``, ``bf16-mixed`` or ``16-mixed``.
        cpu_threads: torch intra-op threads per process when training on CPU; 0 = torch's default (1 avoids OpenMP spin-waits on a shared machine).
        seed: global seed of weights, masking and data order.
        log_every_n_steps: scalar logging period.
        image_log_every_n_steps: reconstruction picture period; 0 = off.
        checkpoint_every_n_steps: period of ``last.ckpt`` refreshes (also saved at each epoch end).
        resume: ``auto`` (from ``output_dir/checkpoints/last.ckpt`` when present), ``never``, or a path.
    """

    output_dir: str = "runs/pretrain"
    max_epochs: int = 50
    max_steps: int = -1
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: Literal["auto", "ddp", "deepspeed_stage_2", "deepspeed_stage_3", "fsdp"] = "auto"
    deepspeed_config: str = ""
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = "auto"
    cpu_threads: int = 0
    seed: int = 0
    log_every_n_steps: int = 50
    image_log_every_n_steps: int = 1000
    checkpoint_every_n_steps: int = 1000
    resume: str = "auto"

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found: Problems = []
        if self.max_epochs < 1:
            found.append(("max_epochs", "must be >= 1"))
        if self.max_steps == 0 or self.max_steps < -1:
            found.append(("max_steps", "must be -1 (off) or >= 1"))
        for name in ("devices", "num_nodes", "log_every_n_steps", "checkpoint_every_n_steps"):
            if getattr(self, name) < 1:
                found.append((name, "must be >= 1"))
        if self.image_log_every_n_steps < 0:
            found.append(("image_log_every_n_steps", "must be >= 0"))
        if self.cpu_threads < 0:
            found.append(("cpu_threads", "must be >= 0 (0 = torch's default)"))
        if self.deepspeed_config and not self.strategy.startswith("deepspeed"):
            found.append(("deepspeed_config", f"is only used with a deepspeed strategy, not strategy={self.strategy!r}"))
        return found


@dataclass
class TrackingConfig:
    """MLflow tracking.

    Args:
        tracking_uri: MLflow tracking URI; empty = ``$MLFLOW_TRACKING_URI`` or a SQLite store in the run folder.
        experiment: experiment name.
        run_name: run name; empty = generated.
    """

    tracking_uri: str = ""
    experiment: str = "face-mae-pretrain"
    run_name: str = ""
