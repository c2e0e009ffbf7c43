"""PBT's hand-over: another trial's weights and moments, this trial's optimiser settings (real Lightning)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from finetune.sweep.report import KeepTrialHyperparameters

STEPS_PER_EPOCH = 4


class Regressor(pl.LightningModule):
    """A linear model with AdamW and a per-step LambdaLR, like the fine-tuning module."""

    def __init__(self, lr: float, weight_decay: float) -> None:
        super().__init__()
        self.lr, self.weight_decay = lr, weight_decay
        self.net = nn.Linear(4, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class SeeOptimizerAtStart(pl.Callback):
    """Record the optimiser as training (re)starts, after any restore and after the callbacks before it."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizer = trainer.optimizers[0]
        self.group = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
        self.base_lrs = list(trainer.lr_scheduler_configs[0].scheduler.base_lrs)
        self.moment = optimizer.state[pl_module.net.weight]["exp_avg"].clone()


def loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(STEPS_PER_EPOCH * 2, 4, generator=generator)
    return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=2)


def fit(module: Regressor, epochs: int, root: Path, callbacks: list[pl.Callback], ckpt_path: str | None = None) -> pl.Trainer:
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=callbacks, default_root_dir=str(root),
    )  # fmt: skip
    trainer.fit(module, loader(), ckpt_path=ckpt_path)
    return trainer


@pytest.mark.parametrize("keep", [True, False], ids=["kept", "plain-resume"])
def test_resuming_another_trial_keeps_this_trials_settings_and_the_restored_moments(tmp_path: Path, keep: bool) -> None:
    torch.manual_seed(0)
    donor = fit(Regressor(lr=0.1, weight_decay=0.0), 1, tmp_path, [])
    checkpoint = tmp_path / "donor.ckpt"
    donor.save_checkpoint(checkpoint)
    saved_moment = torch.load(checkpoint, weights_only=True)["optimizer_states"][0]["state"][0]["exp_avg"]

    seen = SeeOptimizerAtStart()
    fit(Regressor(lr=0.01, weight_decay=0.2), 2, tmp_path, [*([KeepTrialHyperparameters()] if keep else []), seen], str(checkpoint))

    assert torch.equal(seen.moment, saved_moment)  # the donor's moments always come back
    restored_steps = STEPS_PER_EPOCH
    if keep:
        assert seen.base_lrs == [0.01] and seen.group["initial_lr"] == 0.01 and seen.group["weight_decay"] == 0.2
        assert seen.group["lr"] == pytest.approx(0.01 / (1 + restored_steps))
    else:  # what PBT would silently get without the callback: the donor's settings
        assert seen.base_lrs == [0.1] and seen.group["weight_decay"] == 0.0
        assert seen.group["lr"] == pytest.approx(0.1 / (1 + restored_steps))
