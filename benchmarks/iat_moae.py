"""Evidence for IAT and MoAE on the identity-confounded synthetic faces, on the tiny encoder.

    python benchmarks/iat_moae.py                         # about 10 min on 2 idle CPU cores
    python benchmarks/iat_moae.py --init runs/demo/pretrain/checkpoints/last.ckpt --seeds 0 1 2

Data: ``data_shards.synth.make_demo_shards`` (64 px). Its train split is identity-confounded:
each of its 24 subjects has "habit" AUs active in most of its images, so identity predicts AUs;
validation (8 subjects) and test (8 other subjects) are clean and subject-exclusive.

Encoder: ``--init`` (default: the README pipeline's tiny pretraining, ``runs/demo/pretrain``);
when that file does not exist the script pretrains one first with ``configs/pretrain/tiny.yaml``
on the benchmark's train images.

Settings: plain fine-tuning, +IAT (identity head behind gradient reversal, lambda ``--iat``),
+MoAE (adapters in the top 2 of 4 blocks, 4 experts, top-2), +both; AU detection on images,
the tiny recipe's optimiser, ``--epochs`` epochs of ``--samples-per-epoch`` training images,
model selection on validation. Reported on
the held-out test subjects: AU F1 (mean over 12 AUs) at 0.5 and at thresholds chosen on
validation, and identity leakage: a linear probe trained on frozen pooled features of half of
each test subject's samples, accuracy on the other half (chance 1/8; see
``finetune/identity_probe.py`` for why these subjects). The pretrained encoder's own features
(no fine-tuning) are probed as a reference.

Step time: one training step (forward, backward, AdamW) of the fine-tuning model on a batch of
``--batch`` 64 px images, plain vs MoAE (sparse and dense dispatch), timed in alternation (the
machine may be shared) with one thread; medians.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"plain": (False, False), "+IAT": (True, False), "+MoAE": (False, True), "+IAT +MoAE": (True, True)}


def make_data(out: Path, images: int) -> dict[str, str]:
    """The benchmark's shards (reused when present)."""
    from data_shards.synth import make_demo_shards

    folder = out / f"data-{images}"
    record = folder / "sets.json"
    if record.is_file():
        return json.loads(record.read_text())
    sets = make_demo_shards(str(folder), images=images, clips=0, img_size=64, seed=0, workers=2)
    record.write_text(json.dumps(sets))
    return sets


def ensure_encoder(init: str, sets: dict[str, str], out: Path) -> str:
    """``init`` if it exists, else a tiny encoder pretrained here on the train images."""
    if Path(init).exists():
        return init
    from plumbing.recipes import load_recipe
    from pretrain.cli import fit
    from pretrain.config import PretrainConfig
    from pretrain.training import run_pretraining

    run = out / "pretrain"
    print(f"[iat_moae] {init} not found: pretraining the tiny encoder into {run}", flush=True)
    overrides = ["--data.image_shards", f"[{sets['images-train']}]", "--data.clip_shards", "[]", "--trainer.output_dir", str(run),
                 "--tracking.tracking_uri", f"sqlite:///{out / 'mlflow.db'}", "--trainer.max_epochs", "8"]
    run_pretraining(PretrainConfig(**load_recipe(fit, str(ROOT / "configs/pretrain/tiny.yaml"), overrides)))
    return str(run / "checkpoints" / "last.ckpt")


def finetune_config(sets: dict[str, str], init: str, out: Path, name: str, seed: int, iat: bool, moae: bool, args: argparse.Namespace):
    """The tiny fine-tuning recipe, AU detection on images, with or without IAT / MoAE."""
    from finetune.cli import fit
    from finetune.config import FinetuneConfig
    from plumbing.recipes import load_recipe, validate

    overrides = [
        "--model.init", init, "--tasks.tasks", "[au]",
        "--iat.strength", str(args.iat if iat else 0.0), "--model.moae.top_blocks", "2" if moae else "0",
        "--data.image_train", f"[{sets['images-train']}]", "--data.image_val", f"[{sets['images-val']}]",
        "--data.image_test", f"[{sets['images-test']}]",
        "--data.clip_train", "[]", "--data.clip_val", "[]", "--data.clip_test", "[]", "--data.test_crops", "1",
        "--data.num_workers", "0", "--data.samples_per_epoch", str(args.samples_per_epoch),
        "--trainer.max_epochs", str(args.epochs), "--trainer.seed", str(seed),
        "--trainer.output_dir", str(out / "runs" / f"{name.replace(' ', '').replace('+', '_')}-seed{seed}"),
        "--trainer.resume", "never", "--tracking.tracking_uri", f"sqlite:///{out / 'mlflow.db'}",
        "--tracking.experiment", "iat-moae-benchmark", "--tracking.run_name", f"{name} seed {seed}",
    ]  # fmt: skip
    return validate(FinetuneConfig(**load_recipe(fit, str(ROOT / "configs/finetune/tiny.yaml"), overrides)))


def pretrained_probe(init: str, test_set: str) -> float:
    """Identity-probe accuracy on the pretrained encoder's pooled features (mean of patch tokens, LayerNorm)."""
    from data_shards.loaders import LoaderConfig, eval_loader, normalize_pixels
    from finetune.identity_probe import hashes_of, identity_probe
    from pretrain.release.loading import load_model

    encoder = load_model(init, encoder_only=True).eval()
    features, subjects, hashes = [], [], []
    with torch.no_grad():
        for batch in eval_loader(LoaderConfig(shards=[test_set], batch_size=64, num_workers=0)):
            tokens = encoder.forward_features(normalize_pixels(batch["pixels"]))[:, encoder.num_prefix_tokens :]
            features.append(torch.nn.functional.layer_norm(tokens.mean(dim=1), tokens.shape[-1:]))
            subjects.append(batch["subject"])
            hashes.append(hashes_of(batch["key"]))
    return identity_probe(torch.cat(features), torch.cat(subjects), torch.cat(hashes)).accuracy


def time_interleaved(steps: dict[str, Callable[[], None]], warmup: int, rounds: int) -> dict[str, float]:
    """Median seconds per call of each callable, called in alternation so machine load hits all alike."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    spent: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            spent[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in spent.items()}


def step_times(init: str, batch: int, rounds: int) -> dict[str, float]:
    """Median ms per training step of the fine-tuning model without and with MoAE (sparse, dense)."""
    from finetune.config import FinetuneConfig, MoAEConfig
    from finetune.task_model import TaskSpec, build_task_model
    from pretrain.release.loading import load_model

    torch.manual_seed(0)
    spec = TaskSpec(["image"], ["au"], au_ids=[str(i) for i in range(12)], subjects=[f"s{i}" for i in range(24)])
    pixels = torch.randn(batch, 3, 64, 64)
    steps = {}
    for name, moae in (("plain", MoAEConfig()), ("MoAE sparse", MoAEConfig(top_blocks=2, num_experts=4)),
                       ("MoAE dense", MoAEConfig(top_blocks=2, num_experts=4, dispatch="dense"))):
        config = FinetuneConfig()
        config.model.moae, config.iat.strength = moae, 0.5
        encoder = load_model(init, encoder_only=True)
        model = build_task_model(dataclasses.replace(encoder.config, drop_path_rate=0.05), config, spec, encoder)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        mixtures = [m for m in model.modules() if hasattr(m, "balance_loss")]

        def step(model=model, optimizer=optimizer, mixtures=mixtures) -> None:
            out = model(pixels, ["au_image"])
            loss = out["au_image"].square().mean() + out["identity"].logsumexp(-1).mean()
            if mixtures:
                loss = loss + 1e-3 * sum(m.balance_loss for m in mixtures)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        steps[name] = step
    medians = time_interleaved(steps, warmup=3, rounds=rounds)
    return {name: 1000 * seconds for name, seconds in medians.items()}


def main() -> None:
    """Run the settings, print the tables, write ``<out>/iat_moae.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/bench/iat_moae", help="working folder (shards, runs, results)")
    parser.add_argument("--init", default="runs/demo/pretrain/checkpoints/last.ckpt", help="tiny pretrained encoder")
    parser.add_argument("--images", type=int, default=1500, help="synthetic images over train/val/test (70/15/15)")
    parser.add_argument("--samples-per-epoch", type=int, default=512, help="training images per epoch (a larger --images only grows val/test)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--iat", type=float, default=1.0, help="IAT lambda")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--batch", type=int, default=32, help="batch of the step-time measurement")
    parser.add_argument("--rounds", type=int, default=30, help="timed steps per model")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for fine-tuning; 0 = torch's default (1 is faster on a busy machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from finetune.training import run_finetuning

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    sets = make_data(out, args.images)
    init = ensure_encoder(args.init, sets, out)
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in SETTINGS}
    for seed in args.seeds:
        for name, (iat, moae) in SETTINGS.items():
            result = run_finetuning(finetune_config(sets, init, out, name, seed, iat, moae, args))
            rows[name].append({"f1": result.test["test/au_f1_image"], "f1_val_thr": result.test["test/au_f1_valthr_image"],
                               "probe": result.test["test/identity_probe_accuracy_image"],
                               "chance": result.test["test/identity_probe_chance_image"], "val_f1": result.best_score or 0.0})
            print(f"[iat_moae] {name} seed {seed}: {rows[name][-1]}", flush=True)
    reference = pretrained_probe(init, sets["images-test"])
    torch.set_num_threads(1)
    times = step_times(init, args.batch, args.rounds)

    def mean_sd(values: list[float]) -> str:
        spread = f" ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else ""
        return f"{100 * statistics.fmean(values):.1f}{spread}"

    print(f"\nHeld-out test subjects; mean ± sd over seeds {args.seeds}; {args.epochs} epochs; IAT lambda {args.iat}")
    print("| setting | AU F1 @0.5 (%) | AU F1 @val thresholds (%) | identity probe acc. (%) |")
    print("|---|---|---|---|")
    print(f"| pretrained encoder, no fine-tuning | - | - | {100 * reference:.1f} |")
    for name, runs in rows.items():
        print(f"| {name} | {mean_sd([r['f1'] for r in runs])} | {mean_sd([r['f1_val_thr'] for r in runs])} | {mean_sd([r['probe'] for r in runs])} |")
    print(f"chance level of the probe: {100 * rows['plain'][0]['chance']:.1f}%")
    plain = times["plain"]
    print(f"\nTraining step, batch {args.batch} x 64 px, 1 thread, median of {args.rounds} (alternating):")
    print("| model | ms/step | overhead vs plain |")
    print("|---|---|---|")
    for name, ms in times.items():
        print(f"| {name} | {ms:.1f} | {100 * (ms / plain - 1):+.1f}% |")
    print(f"\ntotal {time.monotonic() - started:.0f} s; machine load average {os.getloadavg()[0]:.1f}")
    summary = {"args": vars(args), "init": init, "settings": rows, "pretrained_probe": reference, "step_ms": times}
    (out / "iat_moae.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
