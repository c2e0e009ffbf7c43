"""The Lightning ``Trainer`` of every training stage, and the run set-up both stages share.

:func:`build_trainer` makes the Trainer the same way for pretraining and fine-tuning:
accelerator, precision and strategy resolved by :mod:`face_core.engine.strategies`, intra-op
threads on CPU, atomic checkpoint writes, no distributed sampler (the shard loaders split by
rank themselves), no sanity validation, and a progress bar only at an interactive terminal
(:mod:`face_core.engine.progress`; SLURM logs and pipes get the step lines of the training metrics).

:class:`TrainingRun` is the rest of a run's set-up: the run folder, the checkpoint to resume
from (``trainer.resume``), the global seed, the MLflow logger (the same MLflow run on resume),
the periodic ``last.ckpt`` and, once the Trainer exists, the resolved config written on rank 0
and the parameters logged to MLflow. Each stage adds its own callbacks and Trainer options.
:func:`effective_batch_size` (the lr scaling rule's batch) and :func:`fit_position` (where an
interleaved epoch resumes) are the same arithmetic for both stages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import nn

from face_core.engine.checkpointing import AtomicCheckpointIO, LastCheckpoint, check_resumable, checkpoint_dir, resolve_resume
from face_core.engine.config import OptimConfig, TrackingConfig, TrainerConfig
from face_core.engine.progress import progress_bar
from face_core.engine.strategies import build_strategy, resolve_accelerator, resolve_precision
from face_core.engine.tracking import make_mlflow_logger, resolve_tracking_uri, start_tracked_run
from plumbing.files import write_json_atomic
from plumbing.tracking_store import CONFIG_RECORD


def effective_batch_size(micro_batch: int, trainer: TrainerConfig, optim: OptimConfig) -> int:
    """Samples per optimiser step over all ranks: per-device micro-batch x devices x nodes x accumulation."""
    return micro_batch * trainer.devices * trainer.num_nodes * optim.accumulate_grad_batches


def fit_position(trainer: pl.Trainer) -> tuple[int, int]:
    """The current epoch and the batches of it trained so far (Lightning's progress counters)."""
    return trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed


def build_trainer(
    trainer_config: TrainerConfig,
    optim: OptimConfig,
    micro_batch: int,
    run_dir: Path,
    *,
    logger: Any,
    callbacks: list[Any],
    wrap_modules: frozenset[type[nn.Module]] = frozenset(),
    **options: Any,
) -> pl.Trainer:
    """A Trainer for ``trainer_config``; ``micro_batch`` sizes DeepSpeed, ``wrap_modules`` are FSDP's
    units (the transformer block class), ``options`` add Trainer arguments."""
    accelerator = resolve_accelerator(trainer_config)
    if accelerator == "cpu" and trainer_config.cpu_threads:
        torch.set_num_threads(trainer_config.cpu_threads)
    deepspeed = trainer_config.strategy.startswith("deepspeed")  # it writes its own sharded checkpoints
    bar = progress_bar()
    return pl.Trainer(
        accelerator=accelerator,
        devices=trainer_config.devices,
        num_nodes=trainer_config.num_nodes,
        strategy=build_strategy(trainer_config, accelerator, micro_batch, wrap_modules),
        precision=resolve_precision(trainer_config, accelerator),
        max_epochs=trainer_config.max_epochs,
        max_steps=trainer_config.max_steps,
        accumulate_grad_batches=optim.accumulate_grad_batches,
        gradient_clip_val=optim.grad_clip or None,
        logger=logger,
        callbacks=callbacks if bar is None else [*callbacks, bar],
        plugins=None if deepspeed else [AtomicCheckpointIO()],
        enable_progress_bar=bar is not None,
        log_every_n_steps=trainer_config.log_every_n_steps,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        default_root_dir=str(run_dir),
        **options,
    )


class TrainingRun:
    """The shared set-up of one training run, in the order a stage needs it.

    Creating it makes the run folder, finds the checkpoint to resume from and seeds everything;
    :meth:`trainer` then builds the MLflow logger and the Trainer (with ``last.ckpt`` refreshes
    in front of the stage's callbacks); :meth:`record` writes the resolved config and logs the
    run's parameters.
    """

    def __init__(self, trainer_config: TrainerConfig, tracking: TrackingConfig) -> None:
        self.trainer_config, self.tracking = trainer_config, tracking
        self.run_dir = Path(trainer_config.output_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.resume_from = resolve_resume(trainer_config.resume, self.run_dir)
        if self.resume_from is not None:
            check_resumable(self.resume_from, trainer_config.resume)  # one clear line now, not a traceback from inside fit
        self.logger: Any = None
        pl.seed_everything(trainer_config.seed, verbose=False)

    @property
    def accelerator(self) -> str:
        """``cpu`` or ``gpu``."""
        return resolve_accelerator(self.trainer_config)

    @property
    def precision(self) -> str:
        """Lightning's precision name for this run."""
        return resolve_precision(self.trainer_config, self.accelerator)

    def trainer(
        self, optim: OptimConfig, micro_batch: int, *, callbacks: list[Any], wrap_modules: frozenset[type[nn.Module]] = frozenset(), **options: Any
    ) -> pl.Trainer:
        """The MLflow logger (continuing the recorded MLflow run on resume; none with tracking off) and the Trainer."""
        config = self.trainer_config
        self.logger = make_mlflow_logger(self.tracking, self.run_dir, resume=self.resume_from is not None) if self.tracking.enabled else False
        last = LastCheckpoint(checkpoint_dir(self.run_dir), config.checkpoint_every_n_steps, config.seed)
        return build_trainer(config, optim, micro_batch, self.run_dir, logger=self.logger, callbacks=[last, *callbacks], wrap_modules=wrap_modules, **options)

    def record(
        self, config: Any, params: dict[str, Any], *, tags: Mapping[str, str] | None = None, input_model_ids: Sequence[str] = ()
    ) -> None:
        """Write the resolved ``config`` to ``<run_dir>/config.json`` (rank 0); log ``params`` and ``tags`` to MLflow.

        ``input_model_ids`` (MLflow logged models the run started from) are linked as the run's inputs.
        """
        if rank_zero_only.rank == 0:
            write_json_atomic(self.run_dir / CONFIG_RECORD, dataclasses.asdict(config))
        if self.tracking.enabled:
            start_tracked_run(self.logger, self.tracking_uri, params, self.run_dir, tags, input_model_ids)

    def prepare(self, module: pl.LightningModule) -> pl.LightningModule:
        """The stage's module as it should train: with ``trainer.compile``, its plain model (attribute
        ``model``, as both stages keep it) compiled in place, so parameter names and checkpoints stay."""
        if self.trainer_config.compile:
            module.model.compile()
        return module

    @property
    def tracking_uri(self) -> str:
        """The MLflow store this run logs to."""
        return resolve_tracking_uri(self.tracking, self.run_dir)
