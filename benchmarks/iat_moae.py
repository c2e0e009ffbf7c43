"""Evidence for IAT and MoAE on the identity-confounded synthetic faces, on the README pipeline's encoder.

    bash scripts/pipeline.sh && python benchmarks/iat_moae.py      # about 35 min on 2 idle CPU cores
    python benchmarks/iat_moae.py --iat 1.0 --schedule constant --settings plain +IAT --out runs/bench/iat_strong

Data: the README pipeline's demo shards (``--shards``, default ``runs/demo/shards``; built here
with the pipeline's arguments when missing). Their train split is identity-confounded: each of
its 48 subjects shows a favourite expression and "habit" AUs far more often than chance
(``data_shards.synth.CONFOUND``), so identity predicts labels in training; validation (12
subjects) and test (16 other subjects) are clean and subject-exclusive.

Encoder: ``--init`` (default: the pipeline's MAE pretraining on the unlabelled pool,
``runs/demo/pretrain``); when that file does not exist the script pretrains one first with
``configs/pretrain/tiny.yaml``.

Settings: the README's fine-tuning recipe (``configs/finetune/tiny.yaml``: AU detection and
expression on images, AU-balanced BCE, 1500 steps) without IAT or MoAE, +IAT (identity head
behind gradient reversal, lambda ``--iat`` on the ``--schedule``), +MoAE (adapters in the top 2 of
4 blocks, 4 experts, top-2), +both; model selection on validation AU F1. Reported on the held-out
test subjects, mean and 95% t-interval over ``--seeds`` (``finetune.folds.interval95``, as the
fold summaries): AU F1 (mean over 12 AUs) at 0.5 and at thresholds chosen on validation, UAR,
and identity leakage: a linear probe trained on frozen pooled features of half of each test
subject's samples, accuracy on the other half (chance 1/16; see ``face_core/evaluation/identity_probe.py``
for why these subjects). The pretrained encoder's own features (no fine-tuning) are probed as a
reference.

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


def make_data(shards: Path) -> dict[str, str]:
    """The demo shards of the README pipeline under ``shards`` (built with its arguments when missing)."""
    from data_shards.synth import make_demo_shards

    sets = {name: str(shards / name / "manifest.json") for name in ("images-pretrain", "images-train", "images-val", "images-test")}
    if all(Path(path).is_file() for path in sets.values()):
        return sets
    print(f"[iat_moae] building the demo shards under {shards.parent}", flush=True)
    return make_demo_shards(str(shards.parent), images=3500, clips=0, pretrain_images=20000, img_size=64, seed=0, workers=2)


def ensure_encoder(init: str, sets: dict[str, str], out: Path) -> str:
    """``init`` if it exists, else the tiny recipe's encoder pretrained here on the unlabelled pool."""
    if Path(init).exists():
        return init
    from plumbing.recipes import load_recipe
    from pretrain.cli import fit
    from pretrain.config import PretrainConfig
    from pretrain.training import run_pretraining

    run = out / "pretrain"
    print(f"[iat_moae] {init} not found: pretraining the tiny encoder into {run}", flush=True)
    overrides = ["--data.images.train", f"[{sets['images-pretrain']}]", "--trainer.output_dir", str(run),
                 "--tracking.tracking_uri", f"sqlite:///{out.resolve() / 'mlflow.db'}"]
    run_pretraining(PretrainConfig(**load_recipe(fit, str(ROOT / "configs/pretrain/tiny.yaml"), overrides)))
    return str(run / "checkpoints" / "last.ckpt")


def finetune_config(sets: dict[str, str], init: str, out: Path, name: str, seed: int, iat: bool, moae: bool, args: argparse.Namespace):
    """The README's fine-tuning recipe (AU + expression on images), with or without IAT / MoAE."""
    from finetune.cli import fit
    from finetune.config import FinetuneConfig
    from plumbing.recipes import load_recipe, validate

    overrides = [
        "--model.init", init,
        "--iat.strength", str(args.iat if iat else 0.0), "--iat.schedule", args.schedule, "--model.moae.top_blocks", "2" if moae else "0",
        "--data.images.train", f"[{sets['images-train']}]", "--data.images.val", f"[{sets['images-val']}]",
        "--data.images.test", f"[{sets['images-test']}]", "--data.num_workers", "0", "--trainer.seed", str(seed),
        "--trainer.output_dir", str(out / "runs" / f"{name.replace(' ', '').replace('+', '_')}-seed{seed}"),
        "--trainer.resume", "never", "--tracking.tracking_uri", f"sqlite:///{out.resolve() / 'mlflow.db'}",
        "--tracking.experiment", "iat-moae-benchmark", "--tracking.run_name", f"{name} seed {seed}",
    ]  # fmt: skip
    return validate(FinetuneConfig(**load_recipe(fit, str(ROOT / "configs/finetune/tiny.yaml"), overrides)))


def pretrained_probe(init: str, test_set: str) -> float:
    """Identity-probe accuracy on the pretrained encoder's pooled features (mean of patch tokens, LayerNorm)."""
    from data_shards.loaders import LoaderConfig, eval_loader, normalize_pixels
    from face_core.evaluation.identity_probe import hashes_of, identity_probe
    from face_core.release.loading import load_model

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
    from face_core.model.config import MoAEConfig
    from face_core.model.task_model import TaskSpec, build_task_model
    from face_core.release.loading import load_model
    from finetune.config import FinetuneConfig

    torch.manual_seed(0)
    spec = TaskSpec(["image"], ["au"], au_ids=[str(i) for i in range(12)], subjects=[f"s{i}" for i in range(48)])
    pixels = torch.randn(batch, 3, 64, 64)
    steps = {}
    for name, moae in (("plain", MoAEConfig()), ("MoAE sparse", MoAEConfig(top_blocks=2, num_experts=4)),
                       ("MoAE dense", MoAEConfig(top_blocks=2, num_experts=4, dispatch="dense"))):
        config = FinetuneConfig()
        config.model.moae, config.iat.strength = moae, 0.5
        encoder = load_model(init, encoder_only=True)
        model = build_task_model(dataclasses.replace(encoder.config, drop_path_rate=0.05), config.model, spec, identity_head=config.iat.enabled, encoder=encoder)
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


def mean_interval(values: list[float]) -> str:
    """``mean [low, high]`` in percent: the 95% t-interval of the mean over seeds."""
    from finetune.folds import interval95

    mean, _, low, high = interval95(values)
    return f"{100 * mean:.1f}" + (f" [{100 * low:.1f}, {100 * high:.1f}]" if len(values) > 1 else "")


def main() -> None:
    """Run the settings, print the tables, write ``<out>/iat_moae.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/bench/iat_moae", help="working folder (runs, results)")
    parser.add_argument("--shards", default="runs/demo/shards", help="the demo shards (built when missing)")
    parser.add_argument("--init", default="runs/demo/pretrain/checkpoints/last.ckpt", help="the pipeline's pretrained encoder")
    parser.add_argument("--iat", type=float, default=0.1, help="IAT lambda (the recipe's 0.1)")
    parser.add_argument("--schedule", default="dann", choices=["constant", "dann"], help="IAT lambda schedule (the recipe's dann ramp)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS), help="which settings to run")
    parser.add_argument("--batch", type=int, default=32, help="batch of the step-time measurement")
    parser.add_argument("--rounds", type=int, default=30, help="timed steps per model")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the recipe's one intra-op thread (cpu_threads)
    from finetune.training import run_finetuning

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    sets = make_data(Path(args.shards))
    init = ensure_encoder(args.init, sets, out)
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in args.settings}
    for seed in args.seeds:
        for name in args.settings:
            iat, moae = SETTINGS[name]
            test = run_finetuning(finetune_config(sets, init, out, name, seed, iat, moae, args)).test
            rows[name].append({"f1": test["test/au_f1_image"], "f1_val_thr": test["test/au_f1_valthr_image"], "uar": test["test/uar_image"],
                               "probe": test["test/identity_probe_accuracy_image"], "chance": test["test/identity_probe_chance_image"]})
            print(f"[iat_moae] {name} seed {seed}: {rows[name][-1]}", flush=True)
    reference = pretrained_probe(init, sets["images-test"])
    times = step_times(init, args.batch, args.rounds)

    print(f"\nHeld-out test subjects; mean [95% t-interval] over seeds {args.seeds}; IAT lambda {args.iat} ({args.schedule})")
    print("| setting | AU F1 @0.5 (%) | AU F1 @val thresholds (%) | UAR (%) | identity probe acc. (%) |")
    print("|---|---|---|---|---|")
    print(f"| pretrained encoder, no fine-tuning | - | - | - | {100 * reference:.1f} |")
    for name, runs in rows.items():
        cells = [mean_interval([r[key] for r in runs]) for key in ("f1", "f1_val_thr", "uar", "probe")]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"chance level of the probe: {100 * next(iter(rows.values()))[0]['chance']:.1f}%")
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
