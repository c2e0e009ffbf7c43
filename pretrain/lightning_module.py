"""The Lightning wiring of the masked autoencoder: one modality per step, AdamW, warmup-cosine.

The plain-PyTorch MAE lives at attribute ``model`` (checkpoint keys ``model.*``). The
checkpoint's hyper-parameters are plain dicts (``model_config`` = ``dataclasses.asdict`` of the
:class:`MAEConfig`, ``optim`` of the :class:`OptimConfig`), so checkpoints load with
``torch.load(weights_only=True)`` and :func:`plumbing.recipes.config_from_dict` rebuilds
the model.

No host sync per step: the step adds its detached loss to a
:class:`~face_core.engine.training_metrics.StepWindow` that
:class:`~face_core.engine.training_metrics.TrainingMetrics` reads (and all-reduces) every N steps.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import lightning.pytorch as pl
import torch

from data_shards.loaders import normalize_pixels
from face_core.engine.config import OptimConfig
from face_core.engine.optim import build_adamw, build_param_groups, scaled_lr
from face_core.engine.training_metrics import StepWindow
from face_core.model.config import MAEConfig
from face_core.model.mae import MaskedAutoencoder
from plumbing.recipes import config_from_dict


class MAEPretrainModule(pl.LightningModule):
    """Masked-autoencoder pretraining step, optimiser and schedule.

    ``effective_batch`` is the samples per optimiser step over all ranks (image batch x devices x
    accumulation), used by the linear scaling rule ``lr = base_lr * effective_batch / 256``.
    """

    def __init__(self, model_config: dict[str, Any], optim: dict[str, Any], effective_batch: int) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = MaskedAutoencoder(config_from_dict(MAEConfig, model_config))
        self.optim = OptimConfig(**{**optim, "betas": tuple(optim["betas"])})
        self.effective_batch = effective_batch
        # Read and reset by TrainingMetrics; not a buffer, so DDP does not broadcast it and
        # DeepSpeed does not cast it.
        self.window = StepWindow()

    @classmethod
    def from_configs(cls, model: MAEConfig, optim: OptimConfig, effective_batch: int) -> "MAEPretrainModule":
        """Build from the typed configs (stored as plain dicts)."""
        return cls(dataclasses.asdict(model), dataclasses.asdict(optim), effective_batch)

    @property
    def learning_rate(self) -> float:
        """Peak learning rate after the linear scaling rule."""
        return scaled_lr(self.optim.base_lr, self.effective_batch)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Normalise the uint8 pixels on the device, mask, reconstruct; return the loss.

        A batch may carry ``noise`` (see ``MaskedAutoencoder.noise_shape``) to fix its masking.
        """
        modality = batch["modality"]
        # float32 under autocast (DDP/FSDP mixed precision); bf16/fp16 when DeepSpeed holds low-precision weights.
        pixels = normalize_pixels(batch["pixels"]).to(self.model.encoder.patch_embed.proj.weight.dtype)
        loss, _, _ = self.model(pixels, noise=batch.get("noise"))
        self.window.add(modality, loss, pixels.shape[0])
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW (no decay on biases/norms/tokens/positions) and a per-step warmup-cosine schedule."""
        total = int(self.trainer.estimated_stepping_batches)
        warmup = int(self.optim.warmup_fraction * total)
        groups = build_param_groups(self.model, self.optim.weight_decay)
        optimizer, scheduler = build_adamw(groups, self.learning_rate, self.optim.betas, total, warmup, self.optim.min_lr)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
