"""Training metrics of every stage, every N optimiser steps: loss, learning rate, throughput, MFU, memory.

The stage's LightningModule keeps a :class:`StepWindow` at attribute ``window`` and adds each
step's detached loss to it (a sum on the device: no host sync per step) with the step's modality
and batch size. Every ``every_n_steps`` optimiser steps :class:`TrainingMetrics` all-reduces the
window together with the loaders' counts of skipped samples (one host sync per window) and
reports ``train/loss_<modality>``, ``train/lr``, ``perf/samples_per_s`` and ``perf/tokens_per_s``
(over all ranks), ``perf/tflops_per_device``, ``perf/mfu`` where the device's dense bf16 peak is
known, ``perf/peak_memory_gib`` (rank 0: the CUDA allocator's peak, else the process's peak RSS)
and ``data/skipped_<set>_<kind>``: to the loggers, to ``<run_dir>/metrics.jsonl`` and, on rank 0,
as one step line on stdout (skipped samples and truncated shards on it once there are any) or, at
an interactive terminal, on the progress bar (:attr:`TrainingMetrics.latest`). When training ends,
one summary line gives the skipped samples and truncated shards of the whole fit (all ranks).
FLOPs and tokens per sample come from the stage (it knows its model).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

MODALITIES = ("image", "clip")

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' datasheets, in FLOP/s; the first
# name fragment found in the device name wins (so "GH200" is tested before "H200").
DENSE_BF16_PEAKS: list[tuple[str, float]] = [
    ("GH200", 989e12),
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10", 125e12),
    ("V100", 125e12),  # fp16: V100 has no bf16
]


def peak_flops(device: torch.device | str) -> float | None:
    """Dense bf16 peak FLOP/s of a CUDA device from its name; None for CPU or an unknown GPU."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for fragment, peak in DENSE_BF16_PEAKS if fragment in name), None)


def peak_memory_gib(device: torch.device) -> float:
    """Peak allocated CUDA memory on ``device``, or this process's peak resident memory, in GiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


class StepWindow:
    """Per-modality sums since the last report: loss (float32, on the device), steps and samples (host)."""

    def __init__(self) -> None:
        self.loss_sums: torch.Tensor | None = None
        self.steps = [0] * len(MODALITIES)
        self.samples = [0] * len(MODALITIES)

    def add(self, modality: str, loss: torch.Tensor, samples: int) -> None:
        """Count one step of ``modality`` with ``samples`` samples and its (detached) loss."""
        index = MODALITIES.index(modality)
        if self.loss_sums is None:
            self.loss_sums = torch.zeros(len(MODALITIES), device=loss.device)
        self.loss_sums[index] += loss.detach().float()
        self.steps[index] += 1
        self.samples[index] += samples

    def take(self, device: torch.device) -> tuple[torch.Tensor, list[int], list[int]]:
        """The window's (loss sums, steps, samples), and a fresh window."""
        sums = self.loss_sums.clone() if self.loss_sums is not None else torch.zeros(len(MODALITIES), device=device)
        steps, samples = self.steps, self.samples
        if self.loss_sums is not None:
            self.loss_sums.zero_()
        self.steps, self.samples = [0] * len(MODALITIES), [0] * len(MODALITIES)
        return sums, steps, samples


class TrainingMetrics(pl.Callback):
    """Scalars every ``every_n_steps`` optimiser steps from the module's :class:`StepWindow`.

    Args:
        run_dir: where ``metrics.jsonl`` is appended.
        every_n_steps: report period in optimiser steps.
        flops_per_sample: training FLOPs (forward + backward) of one sample, by modality.
        tokens_per_sample: input tokens of one sample, by modality.
        skipped_samples: this rank's loader counts of skipped samples so far, by name.
    """

    def __init__(
        self,
        run_dir: str | Path,
        every_n_steps: int,
        flops_per_sample: Mapping[str, float],
        tokens_per_sample: Mapping[str, int],
        skipped_samples: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.every_n_steps = every_n_steps
        self.flops = dict(flops_per_sample)
        self.tokens = dict(tokens_per_sample)
        self.skipped_samples = skipped_samples
        self._window_start = 0.0
        self._last_step = -1
        self.latest: dict[str, float] = {}  # the last report, as the progress bar shows it

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the first timing window."""
        self._window_start = time.perf_counter()
        self._last_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Report at the first micro-batch after an optimiser step that is a multiple of the period."""
        step = trainer.global_step
        if step == self._last_step:
            return
        self._last_step = step
        if step % self.every_n_steps == 0:
            self.log_window(trainer, pl_module)

    def log_window(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """All-reduce the window's sums (every rank calls this), then report on rank 0."""
        device = pl_module.device
        sums, steps, samples = pl_module.window.take(device)
        skipped = self.skipped_samples() if self.skipped_samples is not None else {}
        skipped_names = sorted(skipped)  # the same names on every rank
        counts = [*steps, *samples, *(skipped[name] for name in skipped_names)]
        window = torch.cat([sums.double(), torch.tensor(counts, device=device, dtype=torch.float64)])
        if trainer.world_size > 1:
            window = trainer.strategy.reduce(window, reduce_op="sum")
        values = window.tolist()  # the one host sync of the window
        elapsed = max(time.perf_counter() - self._window_start, 1e-9)
        count = len(MODALITIES)
        loss_sums, steps_all, samples_all = values[:count], values[count : 2 * count], values[2 * count : 3 * count]
        peak_lr = max(group["lr"] for group in trainer.optimizers[0].param_groups)  # the top layer's under layer decay
        metrics: dict[str, float] = {"train/lr": peak_lr, "train/epoch": trainer.current_epoch}
        for index, modality in enumerate(MODALITIES):
            if steps_all[index]:
                metrics[f"train/loss_{modality}"] = loss_sums[index] / steps_all[index]
        metrics["perf/samples_per_s"] = sum(samples_all) / elapsed
        metrics["perf/tokens_per_s"] = sum(n * self.tokens.get(m, 0) for n, m in zip(samples_all, MODALITIES)) / elapsed
        flops_per_device = sum(n * self.flops.get(m, 0.0) for n, m in zip(samples_all, MODALITIES)) / elapsed / trainer.world_size
        metrics["perf/tflops_per_device"] = flops_per_device / 1e12
        peak = peak_flops(device)
        if peak:
            metrics["perf/mfu"] = flops_per_device / peak
        metrics["perf/peak_memory_gib"] = peak_memory_gib(device)
        for name, value in zip(skipped_names, values[3 * count :]):
            metrics[f"data/skipped_{name}"] = value
        self._window_start = time.perf_counter()
        if trainer.is_global_zero:
            self.report(trainer, metrics)

    def skipped_totals(self, trainer: pl.Trainer, device: torch.device) -> dict[str, int]:
        """This fit's skipped samples and truncated shards so far, summed over ranks (every rank calls this)."""
        skipped = self.skipped_samples() if self.skipped_samples is not None else {}
        names = sorted(skipped)  # the same names on every rank
        counts = torch.tensor([float(skipped[name]) for name in names], device=device, dtype=torch.float64)
        if trainer.world_size > 1 and names:
            counts = trainer.strategy.reduce(counts, reduce_op="sum")
        return {name: int(value) for name, value in zip(names, counts.tolist())}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """One summary line (rank 0): what the fit skipped, over every rank."""
        totals = self.skipped_totals(trainer, pl_module.device)
        if trainer.is_global_zero:
            found = skipped_text(totals)
            summary = f"skipped {found}" if found else "no corrupt samples or truncated shards skipped"
            print(f"fit ended at step {trainer.global_step}: {summary}", file=sys.stdout, flush=True)

    def report(self, trainer: pl.Trainer, metrics: dict[str, float]) -> None:
        """Send ``metrics`` to the loggers, ``metrics.jsonl`` and stdout (rank 0)."""
        step = trainer.global_step
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps({"step": step, **metrics}) + "\n")
        skipped = {k.removeprefix("data/skipped_"): int(v) for k, v in metrics.items() if k.startswith("data/skipped_")}
        self.latest = {k.replace("train/", ""): round(v, 4) for k, v in metrics.items() if k.startswith("train/loss_")}
        self.latest["samples/s"] = round(metrics["perf/samples_per_s"], 1)
        if any(skipped.values()):
            self.latest["skipped"] = sum(skipped.values())
        if trainer.progress_bar_callback is not None:
            return  # the bar shows them; a printed line would break it
        losses = " ".join(f"{k.split('_', 1)[1]}={v:.4f}" for k, v in metrics.items() if k.startswith("train/loss_"))
        found = skipped_text(skipped)
        print(
            f"step {step:>6} epoch {trainer.current_epoch} loss {losses} lr {metrics['train/lr']:.2e} "
            f"{metrics['perf/samples_per_s']:.1f} samples/s {metrics['perf/tflops_per_device']:.3f} TFLOP/s/device"
            + (f" MFU {metrics['perf/mfu']:.1%}" if "perf/mfu" in metrics else "")
            + f" peak mem {metrics['perf/peak_memory_gib']:.2f} GiB"
            + (f" skipped {found}" if found else ""),
            file=sys.stdout,
            flush=True,
        )


def skipped_text(skipped: Mapping[str, int]) -> str:
    """``image_corrupt_sample=3 clip_truncated_shard=1``: the non-zero counts; empty when nothing was skipped."""
    return " ".join(f"{name}={count}" for name, count in sorted(skipped.items()) if count)
