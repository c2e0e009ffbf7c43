"""Reconstruction pictures of the masked autoencoder during pretraining, every M optimiser steps.

Masked input / reconstruction / original of the latest image batch and clip batch, saved as
``<run_dir>/reconstructions/step-<N>-<modality>.png`` and logged to MLflow when it is the logger.
The forward runs on every rank (ZeRO-3 gathers parameters collectively); only rank 0 writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import MLFlowLogger

from data_shards.loaders import normalize_pixels
from plumbing.files import write_png_atomic

PICTURE_SAMPLES = 4


class ReconstructionPictures(pl.Callback):
    """Keep a few samples of each modality's latest batch; draw them every ``every_n_steps`` optimiser steps."""

    def __init__(self, run_dir: str | Path, every_n_steps: int) -> None:
        self.run_dir = Path(run_dir)
        self.every_n_steps = every_n_steps
        self.latest_pixels: dict[str, torch.Tensor] = {}
        self._last_step = -1

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Remember the starting step (a resumed run does not redraw it)."""
        self._last_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Keep the batch's first samples; draw at the first micro-batch of a due step."""
        self.latest_pixels[batch["modality"]] = batch["pixels"][:PICTURE_SAMPLES].clone()
        step = trainer.global_step
        if step == self._last_step:
            return
        self._last_step = step
        if step % self.every_n_steps == 0:
            self.draw(trainer, pl_module)

    @torch.no_grad()
    def draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Reconstruct the kept samples of each modality; rank 0 saves PNGs (and MLflow artifacts)."""
        model = pl_module.model
        dtype = model.encoder.patch_embed.proj.weight.dtype
        was_training = model.training
        model.eval()
        try:
            for modality, pixels in sorted(self.latest_pixels.items()):
                x = normalize_pixels(pixels).to(dtype)
                with trainer.precision_plugin.forward_context():
                    _, pred, mask = model(x)
                picture = model.reconstruction_grid(x.float(), pred.float(), mask)
                if trainer.is_global_zero:
                    path = self.run_dir / "reconstructions" / f"step-{trainer.global_step:07d}-{modality}.png"
                    write_png_atomic(path, picture)
                    for logger in trainer.loggers:
                        if isinstance(logger, MLFlowLogger):
                            logger.experiment.log_artifact(logger.run_id, str(path), artifact_path="reconstructions")
        finally:
            model.train(was_training)
