"""Training metrics every N optimiser steps and reconstruction pictures every M steps.

Every ``every_n_steps``: mean loss per modality over the window (summed on the devices by the
module and all-reduced here, one host sync per window), learning rate, samples/s and tokens/s
over all ranks, TFLOP/s per device and MFU where the device's peak is known
(:mod:`pretrain.flops`), peak memory of rank 0 (CUDA allocator, else the process's peak RSS)
and the corrupt samples and truncated shards the loaders skipped so far (summed over ranks).
They go to the logger, to ``<run_dir>/metrics.jsonl`` and as one line to stdout (rank 0).

Every ``picture_every_n_steps``: masked input / reconstruction / original of the latest image
batch and clip batch, saved as ``<run_dir>/reconstructions/step-<N>-<modality>.png`` and logged
to MLflow when it is the logger. The forward runs on every rank (ZeRO-3 gathers parameters
collectively); only rank 0 writes.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import MLFlowLogger

from data_shards.streaming import normalize_pixels
from pretrain.config import MAEConfig
from pretrain.flops import mae_train_flops_per_sample, peak_flops
from pretrain.lightning_module import MODALITIES

PICTURE_SAMPLES = 4


def tokens_per_sample(config: MAEConfig, modality: str) -> int:
    """Patch tokens of one input sample (before masking)."""
    enc = config.encoder
    spatial = (enc.img_size // enc.patch_size) ** 2
    return spatial if modality == "image" else spatial * enc.num_frames // enc.tubelet_size


def peak_memory_gib(device: torch.device) -> float:
    """Peak allocated CUDA memory on ``device``, or this process's peak resident memory, in GiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def save_png(picture: Any, path: Path) -> None:
    """Write a uint8 (rows, cols, 3) array as a PNG (temp name, then rename)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    Image.fromarray(picture).save(partial, format="PNG")
    partial.replace(path)


class TrainingMetrics(pl.Callback):
    """Scalars every ``every_n_steps`` optimiser steps, pictures every ``picture_every_n_steps`` (0 = off).

    ``skipped_samples`` returns this rank's loader counts of skipped samples so far, by name.
    """

    def __init__(
        self,
        model_config: MAEConfig,
        run_dir: str | Path,
        every_n_steps: int,
        picture_every_n_steps: int,
        skipped_samples: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.config = model_config
        self.run_dir = Path(run_dir)
        self.every_n_steps = every_n_steps
        self.picture_every_n_steps = picture_every_n_steps
        self.skipped_samples = skipped_samples
        self.flops = {m: mae_train_flops_per_sample(model_config, m) for m in MODALITIES}
        self.tokens = {m: tokens_per_sample(model_config, m) for m in MODALITIES}
        self.latest_pixels: dict[str, torch.Tensor] = {}
        self._window_start = 0.0
        self._last_step = -1

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the first timing window."""
        self._window_start = time.perf_counter()
        self._last_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Keep a few samples of each modality; log and draw at the first micro-batch of a due step."""
        if self.picture_every_n_steps:
            self.latest_pixels[batch["modality"]] = batch["pixels"][:PICTURE_SAMPLES].clone()
        step = trainer.global_step
        if step == self._last_step:
            return
        self._last_step = step
        if step % self.every_n_steps == 0:
            self.log_window(trainer, pl_module)
        if self.picture_every_n_steps and step % self.picture_every_n_steps == 0:
            self.draw_reconstructions(trainer, pl_module)

    def log_window(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """All-reduce the window's sums (every rank calls this), then log on rank 0 and reset."""
        device = pl_module.device
        sums = pl_module.loss_sums if pl_module.loss_sums is not None else torch.zeros(len(MODALITIES), device=device)
        skipped = self.skipped_samples() if self.skipped_samples is not None else {}
        skipped_names = sorted(skipped)  # the same names on every rank
        counts = [*pl_module.step_counts, *pl_module.sample_counts, *(skipped[name] for name in skipped_names)]
        window = torch.cat([sums.double(), torch.tensor(counts, device=device, dtype=torch.float64)])
        if trainer.world_size > 1:
            window = trainer.strategy.reduce(window, reduce_op="sum")
        values = window.tolist()  # the one host sync of the window
        elapsed = max(time.perf_counter() - self._window_start, 1e-9)
        loss_sums, steps, samples = values[:2], values[2:4], values[4:6]
        metrics: dict[str, float] = {"train/lr": trainer.optimizers[0].param_groups[0]["lr"], "train/epoch": trainer.current_epoch}
        for index, modality in enumerate(MODALITIES):
            if steps[index]:
                metrics[f"train/loss_{modality}"] = loss_sums[index] / steps[index]
        total_samples = sum(samples)
        metrics["perf/samples_per_s"] = total_samples / elapsed
        metrics["perf/tokens_per_s"] = sum(n * self.tokens[m] for n, m in zip(samples, MODALITIES)) / elapsed
        flops_per_device = sum(n * self.flops[m] for n, m in zip(samples, MODALITIES)) / elapsed / trainer.world_size
        metrics["perf/tflops_per_device"] = flops_per_device / 1e12
        peak = peak_flops(device)
        if peak:
            metrics["perf/mfu"] = flops_per_device / peak
        metrics["perf/peak_memory_gib"] = peak_memory_gib(device)
        for name, count in zip(skipped_names, values[6:]):
            metrics[f"data/skipped_{name}"] = count
        if pl_module.loss_sums is not None:
            pl_module.loss_sums.zero_()
        pl_module.step_counts = [0] * len(MODALITIES)
        pl_module.sample_counts = [0] * len(MODALITIES)
        self._window_start = time.perf_counter()
        if trainer.is_global_zero:
            self.report(trainer, metrics)

    def report(self, trainer: pl.Trainer, metrics: dict[str, float]) -> None:
        """Send ``metrics`` to the loggers, ``metrics.jsonl`` and stdout (rank 0)."""
        step = trainer.global_step
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps({"step": step, **metrics}) + "\n")
        losses = " ".join(f"{k.split('_', 1)[1]}={v:.4f}" for k, v in metrics.items() if k.startswith("train/loss_"))
        print(
            f"step {step:>6} epoch {trainer.current_epoch} loss {losses} lr {metrics['train/lr']:.2e} "
            f"{metrics['perf/samples_per_s']:.1f} samples/s {metrics['perf/tflops_per_device']:.3f} TFLOP/s/device"
            + (f" MFU {metrics['perf/mfu']:.1%}" if "perf/mfu" in metrics else "")
            + f" peak mem {metrics['perf/peak_memory_gib']:.2f} GiB",
            file=sys.stdout,
            flush=True,
        )

    @torch.no_grad()
    def draw_reconstructions(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
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
                    save_png(picture, path)
                    for logger in trainer.loggers:
                        if isinstance(logger, MLFlowLogger):
                            logger.experiment.log_artifact(logger.run_id, str(path), artifact_path="reconstructions")
        finally:
            model.train(was_training)
