"""Run MAE pretraining with Lightning: ``run_pretraining(config) -> run folder``.

Builds the interleaved shard data module, the Lightning module and, through the engine's
:class:`~face_core.engine.trainer.TrainingRun`, the strategy, MLflow tracking and ``last.ckpt``
refreshes; adds the training metrics (:mod:`face_core.engine.training_metrics`), the
reconstruction pictures (:mod:`pretrain.reconstructions`) and, when ``probe`` names labelled
sets, the online linear probe (:mod:`pretrain.representation_probe`), then fits. ``trainer.resume="auto"``
continues from ``<output_dir>/checkpoints/last.ckpt`` when it exists. Launchers (SLURM requeue,
Ray) add their own callbacks through ``extra_callbacks``; nothing here knows about them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lightning.pytorch.utilities import rank_zero_info

from face_core.engine.tracking import restores_tracking_uri
from face_core.engine.trainer import TrainingRun, effective_batch_size
from face_core.engine.training_metrics import MODALITIES, TrainingMetrics
from face_core.model.flops import mae_train_flops_per_sample, tokens_per_sample
from face_core.model.vit import Block
from pretrain.config import PretrainConfig
from pretrain.data_module import PretrainDataModule
from pretrain.lightning_module import MAEPretrainModule
from pretrain.reconstructions import ReconstructionPictures
from pretrain.representation_probe import RepresentationProbe


@restores_tracking_uri
def run_pretraining(config: PretrainConfig, extra_callbacks: list | None = None, datamodule: Any = None) -> str:
    """Pretrain the masked autoencoder as ``config`` says; return the run folder.

    Args:
        config: a validated :class:`pretrain.config.PretrainConfig`.
        extra_callbacks: Lightning callbacks added by a launcher (e.g. requeue on preemption).
        datamodule: another source of batches (in-memory data, tests) with the interface of
            :class:`pretrain.data_module.PretrainDataModule`; default: the shards of ``config.data``.
    """
    trainer_config = config.trainer
    run = TrainingRun(trainer_config, config.tracking)
    if datamodule is None:
        datamodule = PretrainDataModule(
            config.data, config.model.encoder, trainer_config.seed, trainer_config.devices * trainer_config.num_nodes
        )
    steps = datamodule.steps_per_epoch()  # reads the manifests: bad shard paths fail here, before training
    micro_batch = config.data.micro_batch()
    effective_batch = effective_batch_size(micro_batch, trainer_config, config.optim)
    module = MAEPretrainModule.from_configs(config.model, config.optim, effective_batch)
    metrics = TrainingMetrics(
        run.run_dir,
        trainer_config.log_every_n_steps,
        {m: mae_train_flops_per_sample(config.model, m) for m in MODALITIES},
        {m: tokens_per_sample(config.model.encoder, m) for m in MODALITIES},
        datamodule.skipped_samples,
    )
    callbacks: list[Any] = [metrics, *(extra_callbacks or [])]
    if trainer_config.image_log_every_n_steps:
        callbacks.insert(1, ReconstructionPictures(run.run_dir, trainer_config.image_log_every_n_steps))
    if config.probe.enabled:  # resolves the probe's shard sets: bad paths fail here, before training
        # first: its step-0 probe runs before the metrics' first timing window starts
        callbacks.insert(0, RepresentationProbe(config.probe, config.model.encoder.img_size))
    trainer = run.trainer(config.optim, micro_batch, callbacks=callbacks, wrap_modules=frozenset({Block}), enable_checkpointing=False)
    derived = {
        "effective_batch": effective_batch, "lr": module.learning_rate, "world_size": trainer.world_size,
        **{f"{m}_steps_per_epoch": n for m, n in steps.items()},
    }  # fmt: skip
    run.record(config, {**dataclasses.asdict(config), "derived": derived})
    rank_zero_info(
        f"pretraining: {steps} steps per epoch, effective batch {effective_batch}, lr {module.learning_rate:.3g}, "
        f"{run.precision} on {run.accelerator}, strategy {trainer_config.strategy}"
        + (f", resuming from {run.resume_from}" if run.resume_from else "")
    )
    trainer.fit(run.prepare(module), datamodule=datamodule, ckpt_path=run.resume_from)
    return str(run.run_dir)
