"""Training-step throughput of the MAE against the same model encoding all tokens.

    python benchmarks/mae_step.py                        # tiny / small / base on this CPU
    python benchmarks/mae_step.py --device cuda --batch 64 --steps 20

For each size it times full training steps (forward, backward, fused AdamW step) of the masked
autoencoder, whose encoder sees only the visible tokens, and of the same model with every
token through the encoder (masking only chooses which patches the loss counts). The ratio is
the MAE speed-up; "fwd+bwd speed-up" leaves out the optimiser step (the same for both, and a
large share of a small-batch CPU step); on CPU both ratios are also taken over process CPU
time, which other jobs on a shared machine do not inflate; "FLOP ratio" is the speed-up the
FLOP count predicts. With ``--device cuda`` it runs bf16 autocast and prints TFLOP/s and MFU
against the GPU's dense bf16 peak (FLOPs from :mod:`face_core.model.flops`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from face_core.engine.training_metrics import peak_flops
from face_core.model.config import MAEConfig, ViTConfig
from face_core.model.flops import mae_train_flops_per_sample
from face_core.model.mae import MaskedAutoencoder
from face_core.model.masking import keep_all


@dataclass
class StepTimes:
    """Median seconds of one variant's step: wall clock, process CPU time (all threads; on a
    shared CPU it does not count time taken by other jobs), and the forward+backward part
    (CPU time on CPU, wall clock on GPU)."""

    wall: float
    cpu: float
    compute: float


def time_interleaved(steps: dict[str, Callable[[], float]], device: torch.device, warmup: int, rounds: int) -> dict[str, StepTimes]:
    """Time each variant in alternation, so machine load hits all alike."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    spent: dict[str, list[tuple[float, float, float]]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            wall, cpu = time.perf_counter(), time.process_time()
            compute = step()
            spent[name].append((time.perf_counter() - wall, time.process_time() - cpu, compute))
    return {name: StepTimes(*(statistics.median(column) for column in zip(*times))) for name, times in spent.items()}


def matmul_gflops() -> float:
    """This machine's fp32 matmul rate right now (a calibration for the CPU figures)."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    return 10 * 2 * 1024**3 / (time.perf_counter() - start) / 1e9


def make_step(model: MaskedAutoencoder, batch: torch.Tensor, *, encode_all: bool, device: torch.device) -> Callable[[], float]:
    """One optimiser step on ``batch``, returning the seconds of its forward+backward part;
    ``encode_all`` runs every token through the encoder."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    clock = time.perf_counter if device.type == "cuda" else time.process_time

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step() -> float:
        sync()
        start = clock()
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            plan = model.mask_plan(batch)
            loss, _, _ = model.forward_with_plan(batch, keep_all(plan.mask) if encode_all else plan)
        loss.backward()
        sync()
        compute = clock() - start
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        return compute

    return step


def main() -> None:
    """Parse flags, time each size, print one table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="CPU threads (0 = torch's default); 1 by default: on a shared CPU, two OpenMP threads spin-wait at every op and hide the FLOP savings",
    )
    parser.add_argument("--sizes", default="tiny,small,base", help="comma-separated ViT sizes")
    parser.add_argument("--modality", default="image", choices=["image", "clip"])
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--frames", type=int, default=16, help="clip frames (with --modality clip)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed steps of each variant (the median is reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--decoder-dim", type=int, default=256, help="decoder width (light decoder = encoder-heavy config)")
    parser.add_argument("--decoder-depth", type=int, default=2)
    parser.add_argument("--decoder-heads", type=int, default=8)
    args = parser.parse_args()

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = peak_flops(device)
    torch.manual_seed(0)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{torch.get_num_threads()} threads, fp32 matmul {matmul_gflops():.0f} GFLOP/s, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"device={device} ({where}) "
        f"modality={args.modality} img_size={args.img_size} batch={args.batch} steps={args.steps} "
        f"decoder={args.decoder_dim}x{args.decoder_depth} precision={'bf16-autocast' if device.type == 'cuda' else 'fp32'}"
    )
    header = (
        f"{'size':<6} {'params':>8} {'ratio':>5} {'MAE samples/s':>14} {'all-tokens samples/s':>21} {'speed-up':>9} "
        f"{'speed-up (CPU-s)':>17} {'fwd+bwd speed-up':>17} {'FLOP ratio':>11} {'MAE TFLOP/s':>12} {'MFU':>6}"
    )
    print(header)
    for size in args.sizes.split(","):
        encoder = ViTConfig.preset(size, img_size=args.img_size, num_frames=args.frames)
        config = MAEConfig(encoder=encoder, decoder_embed_dim=args.decoder_dim, decoder_depth=args.decoder_depth, decoder_num_heads=args.decoder_heads)
        model = MaskedAutoencoder(config).to(device).train()
        shape = (args.batch, 3, args.img_size, args.img_size) if args.modality == "image" else (args.batch, 3, args.frames, args.img_size, args.img_size)
        batch = torch.randn(shape, device=device)
        steps = {"mae": make_step(model, batch, encode_all=False, device=device), "all": make_step(model, batch, encode_all=True, device=device)}
        seconds = time_interleaved(steps, device, args.warmup, args.steps)
        masked_rate, full_rate = args.batch / seconds["mae"].wall, args.batch / seconds["all"].wall
        cpu_speedup = f"{seconds['all'].cpu / seconds['mae'].cpu:>16.2f}x" if device.type == "cpu" else f"{'-':>17}"
        compute_speedup = seconds["all"].compute / seconds["mae"].compute
        per_sample = mae_train_flops_per_sample(config, args.modality)
        achieved = per_sample * masked_rate
        flop_ratio = mae_train_flops_per_sample(config, args.modality, encode_all=True) / per_sample
        mfu = f"{achieved / peak:6.1%}" if peak else "     -"
        ratio = config.image_mask_ratio if args.modality == "image" else config.clip_mask_ratio
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(
            f"{size:<6} {params:>7.1f}M {ratio:>5.2f} {masked_rate:>14.2f} {full_rate:>21.2f} {masked_rate / full_rate:>8.2f}x "
            f"{cpu_speedup} {compute_speedup:>16.2f}x {flop_ratio:>10.2f}x {achieved / 1e12:>12.3f} {mfu}"
        )
        del model, batch
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
