"""One prepared device check of the CUDA path: MAE step throughput and MFU, compile, attention backend,
memory, strategies, the data feed and the real entry points; a table on stdout and JSON on disk.

    python benchmarks/gpu_check.py --out gpu_check.json           # on a GPU machine (about 8 minutes on an H100)
    python benchmarks/gpu_check.py --smoke --out smoke.json        # tiny sizes on the CPU (the test suite runs this)

Without an installed checkout (the borrowed GPU machine), run it from the repository root with
``PYTHONPATH=.``; benchmarks/README.md lists the few wheels to carry there.

Sections, each recorded in the JSON as soon as it ends (a section that fails records its error and
the next one runs; a section that would pass ``--budget-s`` is skipped and says so):

1. ``steps``: MAE training steps (forward, backward, fused AdamW) of ViT-B and ViT-L on 224 px
   images at mask 0.75 and 16-frame clips at 0.9, bf16 autocast: samples/s, tokens/s, TFLOP/s, MFU
   against the card's dense bf16 peak, peak memory; eager, then ``torch.compile`` where the budget
   allows. Host synchronisations per step are counted with ``torch.cuda.set_sync_debug_mode``.
2. ``attention``: the kernels a ViT-L forward actually launches (profiler), so the SDPA backend
   (flash, cuDNN, memory-efficient or math) is read, not assumed.
3. ``largest_batch``: the largest ViT-L image MAE batch whose training step fits in memory.
4. ``strategies``: the same ViT-B image step through Lightning (``bf16-mixed``) with DDP on one GPU
   and with FSDP, through the real pretraining entry point (``run_pretraining``, tracking off),
   against the raw step of section 1; DeepSpeed when it imports.
5. ``finetune_sync``: host synchronisations per fine-tuning step of the task model with MoAE
   (dispatch chosen by device) and IAT.
6. ``data_feed``: the shard loader's images/s with 1, 4, 8 and 14 workers on 224 px shards built
   here, beside the GPU's consumption at ViT-B, and the workers one GPU needs.
7. ``entry_points``: ``python -m data_shards demo``, ``python -m pretrain fit`` and
   ``python -m finetune fit`` with the tiny recipes on this device for a few dozen steps, tracking
   off; the loss must be finite and falling.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from data_shards.loaders import LoaderConfig, train_loader
from data_shards.sections import ImageSection
from data_shards.synth import make_demo_shards
from face_core.engine.config import OptimConfig, TrackingConfig, TrainerConfig
from face_core.engine.training_metrics import peak_flops
from face_core.model.config import MAEConfig, MoAEConfig, ViTConfig
from face_core.model.flops import mae_train_flops_per_sample, tokens_per_sample
from face_core.model.mae import MaskedAutoencoder
from face_core.model.task_model import TaskSpec, build_task_model
from finetune.config import FinetuneConfig
from plumbing.files import write_json_atomic
from pretrain.config import PretrainConfig, PretrainDataConfig
from pretrain.training import run_pretraining

ROOT = Path(__file__).resolve().parents[1]
# (size, modality, batch) of the step benchmarks; the smoke mode scales them down.
STEP_CASES = [("base", "image", 256), ("base", "clip", 32), ("large", "image", 128), ("large", "clip", 16)]
COMPILE_CASES = [("large", "image"), ("base", "clip")]
LOADER_WORKERS = [1, 4, 8, 14]


class Check:
    """The results so far, written to ``out`` after every section, and the time budget."""

    def __init__(self, out: Path, budget_s: float, smoke: bool) -> None:
        self.out, self.budget_s, self.smoke = out, budget_s, smoke
        self.start = time.perf_counter()
        self.results: dict[str, Any] = {"mode": "smoke" if smoke else "gpu", "sections": {}}

    def elapsed(self) -> float:
        """Seconds since the check started."""
        return time.perf_counter() - self.start

    def left(self) -> float:
        """Seconds of the budget left."""
        return self.budget_s - self.elapsed()

    def section(self, name: str, run: Callable[[], Any], needs_s: float = 0.0) -> None:
        """Run one section, record its result (or error, or skip), save the JSON."""
        if self.left() < needs_s:
            self.results["sections"][name] = {"skipped": f"time budget: {self.left():.0f} s left, needs ~{needs_s:.0f} s"}
        else:
            began = time.perf_counter()
            try:
                self.results["sections"][name] = {"result": run(), "seconds": round(time.perf_counter() - began, 1)}
            except Exception as err:  # a section that breaks is a finding; the next section still runs
                self.results["sections"][name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:]}
        self.results["elapsed_s"] = round(self.elapsed(), 1)
        write_json_atomic(self.out, self.results)
        print(f"[gpu_check] {name}: {json.dumps(self.results['sections'][name], default=str)[:600]}", flush=True)


def environment(device: torch.device) -> dict[str, Any]:
    """What ran: versions, the card, its peak, the processor count."""
    info: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(), "device": str(device),
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
    }  # fmt: skip
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1), "sms": props.multi_processor_count,
                 "dense_bf16_peak_tflops": (peak_flops(device) or 0) / 1e12}
    for package in ("lightning", "timm", "webdataset", "deepspeed", "transformers"):
        try:
            info[package] = __import__(package).__version__
        except Exception as err:  # absent on the machine: recorded, not fatal
            info[package] = f"absent ({type(err).__name__})"
    return info


def mae_config(size: str, *, smoke: bool) -> MAEConfig:
    """The MAE of a step case: 224 px, 16 frames, the MAE decoder (512 x 8); tiny sizes in smoke mode."""
    if smoke:
        encoder = ViTConfig.preset("tiny", img_size=32, patch_size=16, num_frames=4, depth=2)
        return MAEConfig(encoder=encoder, decoder_embed_dim=64, decoder_depth=1, decoder_num_heads=2)
    return MAEConfig(encoder=ViTConfig.preset(size, img_size=224, num_frames=16), decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16)


def batch_of(config: MAEConfig, modality: str, batch: int, device: torch.device) -> torch.Tensor:
    """Normalised random pixels of one batch on the device."""
    enc = config.encoder
    shape = (batch, 3, enc.img_size, enc.img_size) if modality == "image" else (batch, 3, enc.num_frames, enc.img_size, enc.img_size)
    return torch.randn(shape, device=device)


def autocast(device: torch.device) -> Any:
    """bf16 autocast on CUDA; nothing on CPU (bf16 is slow there)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)


@contextmanager
def counting_syncs(device: torch.device) -> Iterator[list[warnings.WarningMessage]]:
    """Record the host synchronisations CUDA reports inside the block (``set_sync_debug_mode("warn")``)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("warn")
        try:
            yield caught
        finally:
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("default")


def sync_count(caught: list[warnings.WarningMessage]) -> int:
    """How many of the recorded warnings are CUDA synchronisations."""
    return sum("synchroniz" in str(w.message) for w in caught)


def time_steps(step: Callable[[], None], device: torch.device, warmup: int, steps: int) -> tuple[float, int]:
    """Seconds per step (mean of ``steps`` after ``warmup``) and host syncs counted in the timed steps."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    with counting_syncs(device) as caught:
        began = time.perf_counter()
        for _ in range(steps):
            step()
        syncs = sync_count(caught)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - began) / steps, syncs


def training_step(model: torch.nn.Module, x: torch.Tensor, device: torch.device) -> Callable[[], None]:
    """One MAE step: bf16 autocast forward and backward, fused AdamW (no host sync anywhere)."""
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=fused)

    def step() -> None:
        with autocast(device):
            loss = model(x)[0]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def step_figures(config: MAEConfig, modality: str, batch: int, seconds: float, device: torch.device) -> dict[str, float]:
    """samples/s, tokens/s, TFLOP/s and MFU of a step time."""
    rate = batch / seconds
    flops = mae_train_flops_per_sample(config, modality) * rate
    peak = peak_flops(device)
    return {
        "batch": batch, "ms_per_step": round(1000 * seconds, 2), "samples_per_s": round(rate, 1),
        "tokens_per_s": round(rate * tokens_per_sample(config.encoder, modality)), "tflops": round(flops / 1e12, 2),
        "mfu": round(flops / peak, 4) if peak else None,
    }  # fmt: skip


def measure_steps(check: Check, device: torch.device) -> dict[str, Any]:
    """Section 1: eager steps of every case, then compiled steps of the compile cases within budget."""
    results: dict[str, Any] = {}
    warmup, steps = (1, 2) if check.smoke else (3, 10)
    for size, modality, batch in STEP_CASES:
        config = mae_config(size, smoke=check.smoke)
        batch = 2 if check.smoke else batch
        model = MaskedAutoencoder(config).to(device)
        x = batch_of(config, modality, batch, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds, syncs = time_steps(training_step(model, x, device), device, warmup, steps)
        figures = step_figures(config, modality, batch, seconds, device)
        figures["host_syncs_per_step"] = syncs / steps
        if device.type == "cuda":
            figures["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        results[f"{size}/{modality}/eager"] = figures
        del model, x
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if check.smoke:
        results["compile"] = "not run in smoke mode (torch.compile gives nothing on this CPU and takes about a minute)"
        return results
    for size, modality in COMPILE_CASES:
        if check.left() < 150:
            results[f"{size}/{modality}/compiled"] = {"skipped": f"time budget ({check.left():.0f} s left)"}
            continue
        batch = next(b for s, m, b in STEP_CASES if (s, m) == (size, modality))
        config = mae_config(size, smoke=False)
        model = MaskedAutoencoder(config).to(device)
        compiled = torch.compile(model)
        x = batch_of(config, modality, batch, device)
        began = time.perf_counter()
        step = training_step(compiled, x, device)
        step()
        torch.cuda.synchronize()
        compile_s = time.perf_counter() - began
        seconds, syncs = time_steps(step, device, 2, steps)
        figures = step_figures(config, modality, batch, seconds, device) | {"compile_s": round(compile_s, 1), "host_syncs_per_step": syncs / steps}
        eager = results[f"{size}/{modality}/eager"]["ms_per_step"]
        figures["speedup_vs_eager"] = round(eager / figures["ms_per_step"], 3)
        results[f"{size}/{modality}/compiled"] = figures
        del model, compiled, x
        torch.cuda.empty_cache()
    return results


def attention_backend(check: Check, device: torch.device) -> dict[str, Any]:
    """Section 2: the kernels of one encoder forward, and the SDPA backend they show."""
    config = mae_config("large", smoke=check.smoke)
    model = MaskedAutoencoder(config).to(device).eval()
    x = batch_of(config, "image", 2 if check.smoke else 32, device)
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.no_grad(), autocast(device), torch.profiler.profile(activities=activities) as profile:
        model.encoder.forward_features(x)
    names = sorted({event.key for event in profile.key_averages()})
    lowered = [name.lower() for name in names]
    backends = {
        "flash": any("flash" in n for n in lowered),
        "cudnn": any("cudnn" in n and ("attention" in n or "sdpa" in n or "fmha" in n) for n in lowered),
        "memory_efficient": any("efficient_attention" in n or "fmha_cutlass" in n or "mem_eff" in n for n in lowered),
        "math": any(n in ("aten::_softmax", "aten::softmax") for n in lowered) and not any("flash" in n or "efficient" in n or "cudnn" in n for n in lowered),
    }  # fmt: skip
    attention = [n for n in names if any(word in n.lower() for word in ("attention", "flash", "fmha", "sdpa", "softmax"))]
    return {"backends_seen": [k for k, v in backends.items() if v], "attention_ops": attention[:20]}


def largest_batch(check: Check, device: torch.device) -> dict[str, Any]:
    """Section 3: the largest ViT-L image MAE batch whose training step fits (doubling, then bisection)."""
    if device.type != "cuda":
        return {"skipped": "needs CUDA memory"}
    config = mae_config("large", smoke=False)
    model = MaskedAutoencoder(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def fits(batch: int) -> bool:
        try:
            x = batch_of(config, "image", batch, device)
            with autocast(device):
                loss = model(x)[0]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            return True
        except torch.cuda.OutOfMemoryError:
            return False
        finally:
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()

    low, high = 0, 128
    while fits(high) and high < 16384 and check.left() > 60:
        low, high = high, high * 2
    while high - low > max(8, low // 16) and check.left() > 60:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return {"largest_fitting_batch": low, "first_failing_batch": high, "note": "ViT-L/16, 224 px, mask 0.75, bf16 autocast, fused AdamW"}


class SyntheticImages(pl.LightningDataModule):
    """The interface of pretrain's data module over one batch of random uint8 images, repeated."""

    def __init__(self, batch: int, img_size: int, steps: int) -> None:
        super().__init__()
        self.pixels = torch.randint(0, 256, (batch, 3, img_size, img_size), dtype=torch.uint8)
        self.steps = steps

    def steps_per_epoch(self) -> dict[str, int]:
        """Image steps per epoch; no clips."""
        return {"image": self.steps, "clip": 0}

    def skipped_samples(self) -> dict[str, int]:
        """Nothing is ever skipped here."""
        return {}

    def train_dataloader(self) -> "RepeatedBatch":
        """The same batch ``steps`` times."""
        return RepeatedBatch({"pixels": self.pixels, "modality": "image"}, self.steps)


class RepeatedBatch:
    """An iterable of one batch ``times`` times (a list would read as several loaders to Lightning)."""

    def __init__(self, batch: dict[str, Any], times: int) -> None:
        self.batch, self.times = batch, times

    def __len__(self) -> int:
        return self.times

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter([self.batch] * self.times)


def strategies(check: Check, device: torch.device, raw: dict[str, Any]) -> dict[str, Any]:
    """Section 4: the ViT-B image step through the pretraining entry point with DDP, FSDP and DeepSpeed."""
    smoke = check.smoke
    config = mae_config("base", smoke=smoke)
    batch = 2 if smoke else next(b for s, m, b in STEP_CASES if (s, m) == ("base", "image"))
    steps = 3 if smoke else 40
    kinds = ["ddp"] if device.type == "cpu" else ["ddp", "fsdp", "deepspeed_stage_2"]
    results: dict[str, Any] = {}
    for strategy in kinds:
        if check.left() < 60:
            results[strategy] = {"skipped": "time budget"}
            continue
        if strategy.startswith("deepspeed"):
            try:
                import deepspeed  # noqa: F401
            except ImportError as err:
                results[strategy] = {"skipped": f"deepspeed does not import here ({err}); no wheel was carried"}
                continue
        with tempfile.TemporaryDirectory(prefix=f"gpu-check-{strategy}-") as folder:
            trainer = TrainerConfig(
                output_dir=folder, max_epochs=1, max_steps=steps, accelerator="gpu" if device.type == "cuda" else "cpu",
                devices=1, strategy=strategy, precision="bf16-mixed" if device.type == "cuda" else "32",
                log_every_n_steps=max(1, steps // 4), image_log_every_n_steps=0, checkpoint_every_n_steps=10_000, resume="never",
            )  # fmt: skip
            run = PretrainConfig(
                model=config, data=PretrainDataConfig(images=ImageSection(train=["synthetic"], batch_size=batch)), optim=OptimConfig(),
                trainer=trainer, tracking=TrackingConfig(enabled=False),
            )  # fmt: skip
            pl.seed_everything(0, verbose=False)
            with counting_syncs(device) as caught:
                run_pretraining(run, datamodule=SyntheticImages(batch, config.encoder.img_size, steps))
                syncs = sync_count(caught)
            lines = [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()]
            rate = lines[-1]["perf/samples_per_s"]
            figures = {"samples_per_s": round(rate, 1), "tflops": round(lines[-1]["perf/tflops_per_device"], 2), "mfu": lines[-1].get("perf/mfu"),
                       "host_syncs_per_step": round(syncs / steps, 2), "loss_first_last": [lines[0].get("train/loss_image"), lines[-1].get("train/loss_image")]}
            eager = raw.get("result", {}).get("base/image/eager", {}).get("samples_per_s")
            if eager:
                figures["overhead_vs_raw_step"] = round(1 - rate / eager, 3)
            results[strategy] = figures
    return results


def finetune_sync(check: Check, device: torch.device) -> dict[str, Any]:
    """Section 5: host syncs per fine-tuning step of the task model with MoAE (dispatch by device) and IAT."""
    encoder = mae_config("base", smoke=check.smoke).encoder
    config = FinetuneConfig()
    config.model.moae = MoAEConfig(top_blocks=2, num_experts=4, top_k=2)
    config.iat.strength = 1.0
    spec = TaskSpec(["image"], ["au", "expression"], au_ids=[str(i) for i in range(12)], class_names=[str(i) for i in range(7)], subjects=[str(i) for i in range(40)])
    model = build_task_model(encoder, config.model, spec, identity_head=config.iat.enabled).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    batch = 2 if check.smoke else 64
    x = torch.randn(batch, 3, encoder.img_size, encoder.img_size, device=device)
    aus = torch.randint(0, 2, (batch, 12), device=device).float()
    expression = torch.randint(0, 7, (batch,), device=device)
    subject = torch.randint(0, 40, (batch,), device=device)

    def step() -> None:
        with autocast(device):
            out = model(x, ["au_image", "expression_image"], 1.0)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out["au_image"].float(), aus)
            loss = loss + torch.nn.functional.cross_entropy(out["expression_image"].float(), expression)
            loss = loss + torch.nn.functional.cross_entropy(out["identity"].float(), subject)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds, syncs = time_steps(step, device, 1 if check.smoke else 3, 2 if check.smoke else 10)
    dispatch = sorted({m.resolved_dispatch(device) for m in model.modules() if hasattr(m, "resolved_dispatch")})
    return {"ms_per_step": round(1000 * seconds, 2), "host_syncs_per_step": syncs / (2 if check.smoke else 10), "moae_dispatch": dispatch}


def data_feed(check: Check, device: torch.device, raw: dict[str, Any]) -> dict[str, Any]:
    """Section 6: loader images/s per worker count on 224 px shards, and the workers one GPU needs at ViT-B."""
    size, images = (32, 320) if check.smoke else (224, 2000)  # smoke: two train shards, several batches per worker
    workers = [1, 2] if check.smoke else [w for w in LOADER_WORKERS if w <= (os.cpu_count() or 1)]
    with tempfile.TemporaryDirectory(prefix="gpu-check-shards-") as folder:
        began = time.perf_counter()
        sets = make_demo_shards(folder, images=images, clips=0, img_size=size, workers=max(workers))
        build_s = time.perf_counter() - began
        rates = {}
        for count in workers:
            config = LoaderConfig(shards=[sets["images-train"]], batch_size=32 if check.smoke else 128, img_size=size, num_workers=count,
                                  crop_scale=(0.35, 1.0), shuffle_buffer=64, samples_per_epoch=0, rank=0, world_size=1)
            loader = train_loader(config)
            iterator, seen = iter(loader), 0
            next(iterator)  # workers started
            began = time.perf_counter()
            for batch in iterator:
                seen += batch["pixels"].shape[0]
            rates[count] = round(seen / max(time.perf_counter() - began, 1e-9), 1)
    result: dict[str, Any] = {"images_per_s_by_workers": rates, "shard_build_s": round(build_s, 1), "img_size": size}
    consumption = raw.get("result", {}).get("base/image/eager", {}).get("samples_per_s")
    if consumption:
        per_worker = max(rates.values()) / max(rates, key=rates.get)
        result["vit_b_consumes_images_per_s"] = consumption
        result["workers_needed_per_gpu"] = math.ceil(consumption / per_worker)
    return result


def run_command(args: list[str], cwd: Path, timeout: float) -> str:
    """Run one CLI command of ours; its output, or an error with its tail."""
    done = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
    if done.returncode:
        raise RuntimeError(f"{' '.join(args[:3])} exited {done.returncode}: {(done.stdout + done.stderr)[-2000:]}")
    return done.stdout


def losses(run_dir: Path) -> list[float]:
    """The image training loss of each logged window of a run (clip steps start later, so a sum over modalities would jump)."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line["train/loss_image"] for line in lines if "train/loss_image" in line]


def entry_points(check: Check, device: torch.device) -> dict[str, Any]:
    """Section 7: the tiny recipes through the real command lines on this device, tracking off."""
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    steps = 10 if check.smoke else 40  # enough steps past the warm-up for a falling loss
    with tempfile.TemporaryDirectory(prefix="gpu-check-tiny-") as folder:
        work = Path(folder)
        demo = work / "demo"
        run_command(["-m", "data_shards", "demo", "--out", str(demo), "--images", "600",
                     "--clips", "24" if check.smoke else "64", "--img_size", "64", "--frames", "8", "--workers", "2"], ROOT, 300)
        shards = demo / "shards"
        common = ["--trainer.accelerator", accelerator, "--trainer.precision", "bf16-mixed" if device.type == "cuda" else "32",
                  "--trainer.max_steps", str(steps), "--trainer.log_every_n_steps", "2", "--tracking.enabled", "false", "--trainer.resume", "never"]
        pretrain_dir = work / "pretrain"
        run_command(["-m", "pretrain", "fit", "--config", "configs/pretrain/tiny.yaml", *common, "--trainer.output_dir", str(pretrain_dir),
                     "--data.images.train", f"[{shards / 'images-train' / 'manifest.json'}]",
                     "--data.clips.train", f"[{shards / 'clips-train' / 'manifest.json'}]"], ROOT, 600)
        finetune_dir = work / "finetune"
        data = []
        for modality in ("image", "clip"):
            for split in ("train", "val", "test"):
                data += [f"--data.{modality}s.{split}", f"[{shards / f'{modality}s-{split}' / 'manifest.json'}]"]
        run_command(["-m", "finetune", "fit", "--config", "configs/finetune/tiny.yaml", *common, "--trainer.output_dir", str(finetune_dir),
                     "--model.init", str(pretrain_dir / "checkpoints" / "last.ckpt"), *data, "--data.samples_per_epoch", "256"], ROOT, 600)
        result = {}
        for name, run_dir in (("pretrain", pretrain_dir), ("finetune", finetune_dir)):
            values = losses(run_dir)
            result[name] = {"losses": [round(v, 4) for v in values], "finite": all(math.isfinite(v) for v in values),
                            "falling": len(values) > 1 and values[-1] < values[0]}
        return result


def print_table(results: dict[str, Any]) -> None:
    """The figures as one table per section."""
    print("\n=== gpu_check ===")
    for name, section in results["sections"].items():
        if "result" not in section:
            print(f"{name}: {section.get('skipped') or section.get('error')}")
            continue
        value = section["result"]
        if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
            print(f"{name}:")
            for key, row in value.items():
                print(f"  {key:<28} " + "  ".join(f"{k}={v}" for k, v in row.items()))
        else:
            print(f"{name}: {json.dumps(value, default=str)}")
    print(f"elapsed {results['elapsed_s']} s; JSON: {results.get('out')}")


def main() -> None:
    """Run every section in order within the budget; print the table; exit 1 if a section failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check.json", help="JSON results file (rewritten after every section)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, a few steps (what the test suite runs)")
    parser.add_argument("--budget-s", type=float, default=450.0, help="skip sections that would run past this many seconds")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if not args.smoke and device.type != "cuda":
        raise SystemExit("error: no CUDA device is visible; run with --smoke on a CPU machine")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    check = Check(Path(args.out), args.budget_s, args.smoke)
    check.results["out"] = str(Path(args.out).resolve())
    check.section("environment", lambda: environment(device))
    check.section("steps", lambda: measure_steps(check, device), needs_s=30)
    check.section("attention", lambda: attention_backend(check, device), needs_s=10)
    check.section("largest_batch", lambda: largest_batch(check, device), needs_s=60)
    check.section("finetune_sync", lambda: finetune_sync(check, device), needs_s=15)
    check.section("data_feed", lambda: data_feed(check, device, check.results["sections"].get("steps", {})), needs_s=60)
    check.section("strategies", lambda: strategies(check, device, check.results["sections"].get("steps", {})), needs_s=60)
    check.section("entry_points", lambda: entry_points(check, device), needs_s=90)
    print_table(check.results)
    if any("error" in section for section in check.results["sections"].values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
