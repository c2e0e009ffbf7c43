"""Run MAE pretraining with Lightning: ``run_pretraining(config) -> run folder``.

Builds the interleaved shard data module, the Lightning module, the strategy
(:mod:`pretrain.strategies`), MLflow tracking (:mod:`pretrain.tracking`), the ``last.ckpt``
callback (:mod:`pretrain.checkpointing`) and the metrics callback
(:mod:`pretrain.training_metrics`), then fits. ``trainer.resume="auto"`` continues from
``<output_dir>/checkpoints/last.ckpt`` when it exists. Launchers (SLURM requeue, Ray) add their
own callbacks through ``extra_callbacks``; nothing here knows about them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pretrain.tracking import restores_tracking_uri

if TYPE_CHECKING:
    from pretrain.cli import PretrainConfig


def effective_batch_size(config: "PretrainConfig") -> int:
    """Samples per optimiser step over all ranks: per-device batch x devices x nodes x accumulation.

    The image batch sets it when there are image shards (clip steps follow the same schedule);
    for clips only, the clip batch.
    """
    data, trainer = config.data, config.trainer
    per_device = data.image_batch_size if data.image_shards else data.clip_batch_size
    return per_device * trainer.devices * trainer.num_nodes * config.optim.accumulate_grad_batches


def write_config(config: "PretrainConfig", run_dir: Path) -> None:
    """Write the resolved config to ``<run_dir>/config.json`` (temp name, then rename)."""
    target = run_dir / "config.json"
    partial = target.with_name(f"config.json.tmp-{os.getpid()}")
    partial.write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    partial.replace(target)


@restores_tracking_uri
def run_pretraining(config: "PretrainConfig", extra_callbacks: list | None = None, datamodule: Any = None) -> str:
    """Pretrain the masked autoencoder as ``config`` says; return the run folder.

    Args:
        config: a validated :class:`pretrain.cli.PretrainConfig`.
        extra_callbacks: Lightning callbacks added by a launcher (e.g. requeue on preemption).
        datamodule: another source of batches (in-memory data, tests) with the interface of
            :class:`pretrain.data_module.PretrainDataModule`; default: the shards of ``config.data``.
    """
    import lightning.pytorch as pl
    from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

    from pretrain.checkpointing import LastCheckpoint, checkpoint_dir, resolve_resume
    from pretrain.data_module import PretrainDataModule
    from pretrain.lightning_module import MAEPretrainModule
    from pretrain.strategies import resolve_accelerator, resolve_precision
    from pretrain.trainer_factory import build_trainer
    from pretrain.tracking import make_mlflow_logger, resolve_tracking_uri, start_tracked_run
    from pretrain.training_metrics import TrainingMetrics

    trainer_config = config.trainer
    run_dir = Path(trainer_config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    resume_from = resolve_resume(trainer_config.resume, run_dir)
    accelerator = resolve_accelerator(trainer_config)
    precision = resolve_precision(trainer_config, accelerator)
    pl.seed_everything(trainer_config.seed, verbose=False)

    if datamodule is None:
        datamodule = PretrainDataModule(
            config.data, config.model.encoder, trainer_config.seed, trainer_config.devices * trainer_config.num_nodes
        )
    steps = datamodule.steps_per_epoch()  # reads the manifests: bad shard paths fail here, before training
    effective_batch = effective_batch_size(config)
    module = MAEPretrainModule.from_configs(config.model, config.optim, effective_batch)
    logger = make_mlflow_logger(config.tracking, run_dir, resume=resume_from is not None)
    micro_batch = config.data.image_batch_size if config.data.image_shards else config.data.clip_batch_size
    callbacks = [
        LastCheckpoint(checkpoint_dir(run_dir), trainer_config.checkpoint_every_n_steps, trainer_config.seed),
        TrainingMetrics(
            config.model, run_dir, trainer_config.log_every_n_steps, trainer_config.image_log_every_n_steps, datamodule.skipped_samples
        ),
        *(extra_callbacks or []),
    ]
    trainer = build_trainer(trainer_config, config.optim, micro_batch, run_dir, logger, callbacks, enable_checkpointing=False)
    params: dict[str, Any] = {
        **dataclasses.asdict(config),
        "derived": {"effective_batch": effective_batch, "lr": module.learning_rate, "world_size": trainer.world_size, **{f"{m}_steps_per_epoch": n for m, n in steps.items()}},
    }
    if rank_zero_only.rank == 0:
        write_config(config, run_dir)
    start_tracked_run(logger, resolve_tracking_uri(config.tracking, run_dir), params, run_dir)
    rank_zero_info(
        f"pretraining: {steps} steps per epoch, effective batch {effective_batch}, lr {module.learning_rate:.3g}, "
        f"{precision} on {accelerator}, strategy {trainer_config.strategy}"
        + (f", resuming from {resume_from}" if resume_from else "")
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    return str(run_dir)
