"""The Lightning ``Trainer`` of every training stage, built from the typed trainer config.

Pretraining and fine-tuning run the same way: accelerator, precision and strategy resolved by
:mod:`pretrain.strategies`, intra-op threads on CPU, atomic checkpoint writes, no distributed
sampler (the shard loaders split by rank themselves), no progress bar (logged metrics instead)
and no sanity validation. Each stage adds its own callbacks and Trainer options.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pretrain.config import OptimConfig, TrainerConfig

if TYPE_CHECKING:
    import lightning.pytorch as pl


def build_trainer(
    trainer_config: TrainerConfig,
    optim: OptimConfig,
    micro_batch: int,
    run_dir: Path,
    logger: Any,
    callbacks: list[Any],
    **options: Any,
) -> pl.Trainer:
    """A Trainer for ``trainer_config``; ``micro_batch`` sizes DeepSpeed, ``options`` add Trainer arguments."""
    import lightning.pytorch as pl

    from pretrain.checkpointing import AtomicCheckpointIO
    from pretrain.strategies import build_strategy, resolve_accelerator, resolve_precision

    accelerator = resolve_accelerator(trainer_config)
    if accelerator == "cpu" and trainer_config.cpu_threads:
        import torch

        torch.set_num_threads(trainer_config.cpu_threads)
    deepspeed = trainer_config.strategy.startswith("deepspeed")  # it writes its own sharded checkpoints
    return pl.Trainer(
        accelerator=accelerator,
        devices=trainer_config.devices,
        num_nodes=trainer_config.num_nodes,
        strategy=build_strategy(trainer_config, accelerator, micro_batch),
        precision=resolve_precision(trainer_config, accelerator),
        max_epochs=trainer_config.max_epochs,
        max_steps=trainer_config.max_steps,
        accumulate_grad_batches=optim.accumulate_grad_batches,
        gradient_clip_val=optim.grad_clip or None,
        logger=logger,
        callbacks=callbacks,
        plugins=None if deepspeed else [AtomicCheckpointIO()],
        enable_progress_bar=False,
        log_every_n_steps=trainer_config.log_every_n_steps,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        default_root_dir=str(run_dir),
        **options,
    )
