"""The Lightning strategy, accelerator and precision named by a :class:`TrainerConfig`.

* ``ddp``: one process per device; gradients all-reduced once per optimiser step (Lightning
  skips the all-reduce on accumulation micro-steps with ``no_sync``). Gloo on CPU, NCCL on GPU.
* ``deepspeed_stage_2`` / ``deepspeed_stage_3``: ZeRO through Lightning's ``DeepSpeedStrategy``,
  from a shipped JSON (``configs/deepspeed/``) or Lightning's stage defaults. Lightning refuses
  DeepSpeed without CUDA; :class:`CPUDeepSpeedStrategy` lifts that (gloo), which is how the
  tests run ZeRO-2 on CPU ranks. Both save their sharded checkpoint directories atomically.
* ``fsdp``: Lightning's FSDP with one unit per transformer block (CUDA only).
* ``auto``: DDP when there is more than one process, else a single device.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy, Strategy
from torch import nn

from face_core.engine.checkpointing import swap_in_directory
from face_core.engine.config import TrainerConfig
from plumbing.recipes import ConfigError


def resolve_accelerator(trainer: TrainerConfig) -> str:
    """``cpu`` or ``gpu``: ``auto`` picks the GPU when CUDA is available."""
    if trainer.accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if trainer.accelerator == "gpu" and not torch.cuda.is_available():
        raise ConfigError("trainer.accelerator='gpu' but no CUDA device is visible; use 'cpu' or 'auto'")
    return trainer.accelerator


def resolve_precision(trainer: TrainerConfig, accelerator: str) -> str:
    """Lightning precision: ``auto`` = ``bf16-mixed`` on GPU, ``32-true`` on CPU (bf16 is slow there)."""
    if trainer.precision == "auto":
        return "bf16-mixed" if accelerator == "gpu" else "32-true"
    return "32-true" if trainer.precision == "32" else trainer.precision


class AtomicDeepSpeedStrategy(DeepSpeedStrategy):
    """DeepSpeed whose sharded checkpoint directory appears whole or not at all.

    Every rank writes its shards to ``<path>.tmp``; once all have finished, rank 0 swaps it in.
    """

    def save_checkpoint(self, checkpoint: dict, filepath: Any, storage_options: Any | None = None) -> None:
        """Write the ZeRO checkpoint to a temporary directory, then rename it to ``filepath``."""
        target = Path(self.broadcast(str(filepath)))
        written = target.with_name(target.name + ".tmp")
        if self.is_global_zero and written.exists():
            shutil.rmtree(written)
        self.barrier("deepspeed_checkpoint_clean")
        super().save_checkpoint(checkpoint, written, storage_options)
        self.barrier("deepspeed_checkpoint_written")
        if self.is_global_zero:
            swap_in_directory(written, target)
        self.barrier("deepspeed_checkpoint_swapped")


class CPUDeepSpeedStrategy(AtomicDeepSpeedStrategy):
    """DeepSpeed ZeRO on CPU processes (gloo), for tests and debugging without a GPU.

    Lightning's strategy insists on CUDA; this one sets up the environment as DDP does, skips
    the CUDA device-index check and keeps the model on the CPU.
    """

    def setup_environment(self) -> None:
        """Set up processes as DDP does (no CUDA check)."""
        DDPStrategy.setup_environment(self)

    def setup_distributed(self) -> None:
        """Initialise DeepSpeed's process group without checking CUDA device indices."""
        reset_seed()
        self.set_world_ranks()
        self._init_deepspeed_distributed()

    @property
    def root_device(self) -> torch.device:
        """The CPU, indexed by local rank (DeepSpeed reads the index as its device rank)."""
        return torch.device("cpu", self.local_rank)


def deepspeed_config(trainer: TrainerConfig, micro_batch_size: int) -> dict[str, Any]:
    """The DeepSpeed config: ``trainer.deepspeed_config``'s JSON, or a minimal one for the stage.

    The per-device batch is filled in here (Lightning would otherwise build the train loader an
    extra time to guess it); accumulation, clipping and precision come from the trainer.
    """
    stage = int(trainer.strategy.rsplit("_", 1)[1])
    if trainer.deepspeed_config:
        path = Path(trainer.deepspeed_config)
        if not path.is_file():
            raise FileNotFoundError(f"trainer.deepspeed_config={trainer.deepspeed_config!r}: file not found")
        try:
            config = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"trainer.deepspeed_config={trainer.deepspeed_config!r}: not valid JSON ({err})") from err
        found = config.get("zero_optimization", {}).get("stage")
        if found != stage:
            raise ConfigError(
                f"trainer.deepspeed_config={trainer.deepspeed_config!r} sets ZeRO stage {found}, "
                f"but trainer.strategy={trainer.strategy!r}"
            )
    else:
        config = {"zero_allow_untested_optimizer": True, "zero_optimization": {"stage": stage}}
    config.setdefault("train_micro_batch_size_per_gpu", micro_batch_size)
    return config


def build_strategy(
    trainer: TrainerConfig, accelerator: str, micro_batch_size: int, wrap_modules: frozenset[type[nn.Module]] = frozenset()
) -> Strategy | str:
    """The Lightning strategy for ``trainer.strategy`` on ``accelerator`` (``cpu`` or ``gpu``).

    ``wrap_modules``: FSDP's units, one per instance of these classes (the transformer block).
    """
    processes = trainer.devices * trainer.num_nodes
    if trainer.strategy == "auto":
        return DDPStrategy(find_unused_parameters=False) if processes > 1 else "auto"
    if trainer.strategy == "ddp":
        return DDPStrategy(find_unused_parameters=False)
    if trainer.strategy.startswith("deepspeed"):
        kind = AtomicDeepSpeedStrategy if accelerator == "gpu" else CPUDeepSpeedStrategy
        return kind(config=deepspeed_config(trainer, micro_batch_size))
    if accelerator != "gpu":
        raise ConfigError("trainer.strategy='fsdp' needs CUDA GPUs; on CPU use 'ddp' or 'deepspeed_stage_2'")
    if not wrap_modules:
        raise ConfigError("trainer.strategy='fsdp' needs the model's block class to wrap (wrap_modules)")
    return FSDPStrategy(auto_wrap_policy=set(wrap_modules), sharding_strategy="FULL_SHARD", state_dict_type="full")
