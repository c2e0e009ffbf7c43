"""The bridge from one Lightning fine-tune to Ray Tune: report each validation, nest the MLflow run.

:class:`TuneReportCallback` runs inside a Tune trial. After every validation it reports the
monitored metric (and the epoch) to Tune together with a Lightning checkpoint of that moment,
so the scheduler can stop the trial (ASHA), copy it into another (PBT), and the sweep can hand
out the best checkpoint. At fit start it tags the trial's MLflow run as a child of the sweep's
run (``mlflow.parentRunId``), which is all MLflow needs to nest runs.

:class:`KeepTrialHyperparameters` makes PBT's hand-over mean what PBT intends: the weights and
optimiser moments of the stronger trial, with *this* trial's (perturbed) learning rate, weight
decay and betas. A plain Lightning resume would restore the old trial's settings with its
optimiser and scheduler state.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import MLFlowLogger
from torch.optim.lr_scheduler import LambdaLR

CHECKPOINT_FILE = "checkpoint.ckpt"


class TuneReportCallback(pl.Callback):
    """Report ``metric`` to Ray Tune after each validation, with a checkpoint; nest the MLflow run.

    Args:
        metric: key of ``trainer.callback_metrics`` to report (``val/au_f1``...).
        parent_run_id: MLflow run id of the sweep; the trial's run becomes its child.
        trial_tags: extra MLflow tags for the trial's run (trial id and name).
    """

    def __init__(self, metric: str, parent_run_id: str, trial_tags: dict[str, str] | None = None) -> None:
        self.metric = metric
        self.parent_run_id = parent_run_id
        self.trial_tags = dict(trial_tags or {})

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Tag the trial's MLflow run as a child of the sweep's run."""
        loggers = [logger for logger in trainer.loggers if isinstance(logger, MLFlowLogger)]
        if not loggers:
            raise RuntimeError("a sweep trial needs the MLflow logger (its run becomes a child of the sweep's run)")
        logger = loggers[0]
        tags = {"mlflow.parentRunId": self.parent_run_id, **self.trial_tags}
        for key, value in tags.items():
            logger.experiment.set_tag(logger.run_id, key, value)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Report the metric and a checkpoint; Tune may stop the trial at this call."""
        if trainer.sanity_checking:
            return
        from ray import tune

        metrics = self.reported_metrics(trainer)
        with tempfile.TemporaryDirectory(prefix="tune-ckpt-") as folder:
            trainer.save_checkpoint(Path(folder) / CHECKPOINT_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    def reported_metrics(self, trainer: pl.Trainer) -> dict[str, Any]:
        """The monitored metric as a float, plus the epoch; a missing metric is an error naming the keys."""
        if self.metric not in trainer.callback_metrics:
            raise KeyError(f"sweep metric {self.metric!r} was not logged in validation; logged: {sorted(trainer.callback_metrics)}")
        value = float(trainer.callback_metrics[self.metric])
        return {self.metric: value if math.isfinite(value) else math.nan, "epoch": trainer.current_epoch + 1}


class KeepTrialHyperparameters(pl.Callback):
    """On resuming another trial's checkpoint, put back this trial's optimiser settings.

    The optimisers are built from this trial's config before the checkpoint's state is restored
    (``on_fit_start``); once restored (``on_train_start``), every param group gets this trial's
    settings back (``lr``, ``initial_lr``, ``weight_decay``, ``betas``...: all but the parameters)
    and each scheduler this trial's base rates, with the current rate recomputed at the restored
    step for ``LambdaLR`` schedules (warmup-cosine). Moments and step counts stay restored.
    """

    def __init__(self) -> None:
        self.groups: list[list[dict[str, Any]]] = []
        self.base_lrs: list[list[float]] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Remember the freshly configured settings, before the checkpoint overwrites them."""
        self.groups = [[{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups] for opt in trainer.optimizers]
        self.base_lrs = [list(getattr(config.scheduler, "base_lrs", [])) for config in trainer.lr_scheduler_configs]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Apply the remembered settings to the restored optimisers and schedulers."""
        for optimizer, groups in zip(trainer.optimizers, self.groups):
            for group, fresh in zip(optimizer.param_groups, groups):
                group.update(fresh)
        for config, base_lrs in zip(trainer.lr_scheduler_configs, self.base_lrs):
            scheduler = config.scheduler
            scheduler.base_lrs = list(base_lrs)
            if isinstance(scheduler, LambdaLR):
                for group, base, factor in zip(scheduler.optimizer.param_groups, base_lrs, scheduler.lr_lambdas):
                    group["lr"] = base * factor(scheduler.last_epoch)
