"""Typed configuration of the training engine shared by every stage: optimiser, trainer, tracking.

Plain dataclasses (nothing heavy imported), so ``--help`` stays fast. Each reports impossible
settings through ``problems()`` (see :func:`plumbing.recipes.validate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from plumbing.recipes import Problems


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
        compile: ``torch.compile`` the stage's model (``nn.Module.compile``: parameter names and checkpoints
            unchanged); off by default until ``benchmarks/gpu_check.py`` has measured it on your GPUs.
            Single device or DDP only.
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
    compile: bool = False
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
        if self.compile and self.strategy in ("fsdp", "deepspeed_stage_2", "deepspeed_stage_3"):
            found.append(("compile", f"is measured with strategy auto or ddp only, not {self.strategy!r}"))
        if self.deepspeed_config and not self.strategy.startswith("deepspeed"):
            found.append(("deepspeed_config", f"is only used with a deepspeed strategy, not strategy={self.strategy!r}"))
        return found


@dataclass
class TrackingConfig:
    """MLflow tracking.

    Args:
        enabled: log the run to MLflow; false = no tracking at all (``metrics.jsonl`` and the console
            only), e.g. on a machine without the mlflow package.
        tracking_uri: MLflow tracking URI; empty = ``$MLFLOW_TRACKING_URI`` or a SQLite store in the run folder.
        experiment: experiment name.
        run_name: run name; empty = generated.
    """

    enabled: bool = True
    tracking_uri: str = ""
    experiment: str = "face-mae-pretrain"
    run_name: str = ""
