"""Representation quality while pretraining: a linear probe of the encoder every N optimiser steps.

The reconstruction loss is a weak proxy for what the encoder learns. At step 0 (the initial
encoder: the baseline of the curve), every ``probe.every_n_steps`` optimiser steps and once more
when training ends, the callback takes
the MAE's encoder as it is, computes its pooled features (eval mode, no gradients; the mean of
the patch tokens after the final norm) of two small labelled image sets, fits the project's
linear probe (:func:`face_core.evaluation.linear_probe.fit_linear_probe`: AU binaries and an expression
multinomial) on the first and scores it on the second. It logs ``probe/au_f1``,
``probe/au_f1_valthr``, ``probe/uar``, ``probe/war`` and ``probe/seconds`` to the trainer's
loggers at the global step (beside ``train/loss_*`` in the MLflow run) and prints one step line.

This is a monitoring curve, not a held-out result: the probe's L2 strength and AU thresholds
are chosen on the same validation set it is reported on. The README's results table (probes
scored on held-out test subjects) gives the honest figure.

Both sets are read once (at most ``max_samples`` each, the first in shard order) and kept in
memory as decoded uint8 images at the encoder's size, so a probe costs one forward pass over
them plus the L-BFGS fits. Images only: a clip set is refused up front (the encoder takes clips,
but the probe's labelled sets are image sets). Every rank runs the forward pass (the parameters
of ZeRO-3/FSDP are gathered collectively); global rank 0 alone fits and reports while the other
ranks wait at a barrier.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning.pytorch as pl

from data_shards.loaders import LoaderConfig, ShardLoader, eval_loader
from face_core.evaluation.linear_probe import LabelledPixels, fit_linear_probe, read_labelled
from plumbing.recipes import ConfigError
from pretrain.config import RepresentationProbeConfig

REPORTED = ("au_f1", "au_f1_valthr", "uar", "war")


def probe_loader(config: RepresentationProbeConfig, key: str, img_size: int) -> ShardLoader:
    """The image loader over ``config.<key>`` (every sample, this process alone); errors name ``probe.<key>``."""
    shards = list(getattr(config, key))
    try:
        return eval_loader(LoaderConfig(shards=shards, modality="image", batch_size=config.batch_size, img_size=img_size,
                                        num_workers=0, pin_memory=False, rank=0, world_size=1))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"probe.{key}: {err}") from err
    except ConfigError as err:
        raise ConfigError(f"probe.{key}: {err} (the probe reads labelled image sets)") from err


class RepresentationProbe(pl.Callback):
    """Fit and report a linear probe of ``pl_module.model.encoder`` every ``config.every_n_steps`` optimiser steps.

    The shard sets are resolved when built (a missing manifest or a clip set fails before
    training); their images are read at the first probe.
    """

    def __init__(self, config: RepresentationProbeConfig, img_size: int) -> None:
        self.config = config
        self.loaders = {key: probe_loader(config, key, img_size) for key in ("train_shards", "val_shards")}
        train, val = self.loaders["train_shards"], self.loaders["val_shards"]
        if train.au_ids != val.au_ids or train.class_names != val.class_names:
            raise ConfigError(f"probe.val_shards: its AUs {val.au_ids} / classes {val.class_names} differ from "
                              f"probe.train_shards' {train.au_ids} / {train.class_names}")
        self.sets: dict[str, LabelledPixels] = {}
        self._last_step = -1
        self._probed_step = -1

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Probe the initial encoder at step 0 (the baseline of the curve); a resumed run does not probe its starting step again."""
        self._last_step = trainer.global_step
        if trainer.global_step == 0:
            self.probe(trainer, pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Probe at the first micro-batch after an optimiser step that is a multiple of the period."""
        step = trainer.global_step
        if step == self._last_step:
            return
        self._last_step = step
        if step % self.config.every_n_steps == 0:
            self.probe(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Probe the final encoder unless the last step was just probed."""
        if trainer.global_step != self._probed_step:
            self.probe(trainer, pl_module)

    def probe(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        """Features on every rank; rank 0 fits, logs and prints; all ranks meet at a barrier. Returns rank 0's metrics."""
        started = time.perf_counter()
        self._probed_step = trainer.global_step
        if not self.sets:
            self.sets = {key: read_labelled(loader, self.config.max_samples) for key, loader in self.loaders.items()}
        encoder = pl_module.model.encoder
        with trainer.precision_plugin.forward_context():
            train, val = (self.sets[key].features(encoder, pl_module.device, self.config.batch_size) for key in ("train_shards", "val_shards"))
        metrics: dict[str, float] = {}
        if trainer.is_global_zero:
            scores = fit_linear_probe(train, val).evaluate(val)
            metrics = {f"probe/{name}": scores[name] for name in REPORTED if scores[name] == scores[name]}  # NaN: no such labels
            metrics["probe/seconds"] = time.perf_counter() - started
            self.report(trainer, metrics, len(train), len(val))
        trainer.strategy.barrier("representation_probe")
        return metrics

    def report(self, trainer: pl.Trainer, metrics: dict[str, float], train: int, val: int) -> None:
        """Send ``metrics`` to the loggers at the global step and print one step line (above the bar, if any)."""
        step = trainer.global_step
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        shown = " ".join(f"{name.removeprefix('probe/')} {value:.3f}" for name, value in metrics.items() if name != "probe/seconds")
        line = f"step {step:>6} probe {shown} (fit on {train}, scored on {val} val images, {metrics['probe/seconds']:.1f} s)"
        bar = trainer.progress_bar_callback
        if bar is not None and hasattr(bar, "print"):
            bar.print(line)
        else:
            print(line, file=sys.stdout, flush=True)
