"""The progress bar of a training run at a terminal, showing the loss and samples/s of the last report.

:func:`progress_bar` gives Lightning's TQDM bar when stdout is a terminal outside SLURM
(:func:`plumbing.console.interactive_console`), else None: SLURM logs and pipes keep the step
lines of :class:`~face_core.engine.training_metrics.TrainingMetrics` instead.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import TQDMProgressBar

from face_core.engine.training_metrics import TrainingMetrics
from plumbing.console import interactive_console


class StageProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar with the latest report of :class:`TrainingMetrics` (loss per modality,
    samples/s, skipped samples) in place of the logger's version number."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        """What the bar shows after its counters."""
        shown = {key: value for key, value in super().get_metrics(trainer, pl_module).items() if key != "v_num"}
        for callback in trainer.callbacks:
            if isinstance(callback, TrainingMetrics):
                shown.update(callback.latest)
        return shown


def progress_bar() -> StageProgressBar | None:
    """A bar for an interactive terminal; None for logs and pipes (SLURM, redirected output)."""
    return StageProgressBar() if interactive_console() else None
