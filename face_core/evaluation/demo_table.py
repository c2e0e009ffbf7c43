"""The README pipeline's results table: baselines, linear probes and fine-tuned models on the held-out subjects.

    python -m face_core.evaluation.demo_table baselines --shards runs/demo/shards --recipe configs/pretrain/tiny.yaml \\
        --out runs/demo/table/baselines.json
    python -m face_core.evaluation.demo_table probe --shards runs/demo/shards --encoder runs/demo/pretrain/checkpoints/last.ckpt \\
        --out runs/demo/table/mae_probe.json
    python -m face_core.evaluation.demo_table table --rows runs/demo/table/baselines.json runs/demo/table/mae_probe.json \\
        --finetuned "fine-tuned from a random initialisation=runs/demo/finetune-scratch" \\
        --finetuned "fine-tuned from our MAE encoder=runs/demo/finetune" --released runs/demo/released_model_metrics.json

Every row is measured on the same test split (``images-test``: subjects seen by no training
stage) with the same metrics, all computed by :mod:`face_core.evaluation.metrics` (by the
linear probe for its rows, by fine-tuning's test and ``finetune score`` for theirs; this module
only reads them): AU F1 of the positive class at probability 0.5 and at
per-AU thresholds chosen on the validation split (mean over AUs), WAR (accuracy), UAR (mean
recall over all classes) and identity leakage (``face_core.evaluation.identity_probe``: a linear
classifier of who the face is, fitted on half of each test subject's samples, accuracy on the
other half; chance 1 / subjects). Linear rows are :mod:`face_core.evaluation.linear_probe` (logistic
regressions on standardised inputs fitted on the labelled train split, AU positives weighted
by negatives / positives as the fine-tuning recipe's ``tasks.au_balance``; L2 strength and
AU thresholds chosen on the validation split, never on test).

* ``baselines``: chance, logistic regression on the raw pixels, and the linear probe on the
  pooled features of a randomly initialised encoder of the pretraining recipe's architecture
  (it needs no checkpoint, so it runs beside pretraining).
* ``probe``: the linear probe on the frozen pooled features of ``--encoder``.
* ``table``: one markdown table from those rows, the ``result.json`` of fine-tuning runs (test
  metrics of the best validation checkpoint) and the metrics ``finetune score`` printed for
  the released model loaded back by URI.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from data_shards.loaders import LoaderConfig, eval_loader
from face_core.evaluation.identity_probe import hashes_of, identity_probe
from face_core.evaluation.linear_probe import LabelledPixels, encode_pixels, fit_linear_probe, read_labelled
from face_core.model.config import ViTConfig
from face_core.model.vit import VisionTransformer
from face_core.release.loading import load_model

SPLITS = ("train", "val", "test")
COLUMNS = {"au_f1": "AU F1 @0.5", "au_f1_valthr": "AU F1 @val thresholds", "war": "WAR", "uar": "UAR",
           "identity_probe": "identity-probe acc."}
RANDOM_PROBE = "linear probe on random-init encoder features"
MAE_PROBE = "linear probe on frozen MAE features"


def read_split(shards: str, split: str) -> LabelledPixels:
    """Every sample of ``<shards>/images-<split>`` (one pass, in order)."""
    return read_labelled(eval_loader(LoaderConfig(shards=[str(Path(shards) / f"images-{split}" / "manifest.json")], batch_size=256, num_workers=0)))


def feature_row(splits: dict[str, LabelledPixels], features: dict[str, torch.Tensor]) -> dict[str, float]:
    """Linear probe metrics on the test split, and the identity probe on the test features."""
    probe = fit_linear_probe(splits["train"].labelled(features["train"]), splits["val"].labelled(features["val"]))
    row = probe.evaluate(splits["test"].labelled(features["test"]))
    test = splits["test"]
    identity = identity_probe(features["test"], test.subjects, hashes_of(test.keys))
    return {**row, "identity_probe": identity.accuracy, "identity_chance": identity.chance}


def random_encoder(recipe: str, seed: int) -> VisionTransformer:
    """A freshly initialised encoder with the architecture of pretraining recipe ``recipe`` (``model.encoder``)."""
    torch.manual_seed(seed)
    return VisionTransformer(ViTConfig(**yaml.safe_load(Path(recipe).read_text())["model"]["encoder"])).eval()


def encoder_row(splits: dict[str, LabelledPixels], encoder: torch.nn.Module) -> dict[str, float]:
    """:func:`feature_row` on ``encoder``'s pooled features."""
    return feature_row(splits, {name: encode_pixels(encoder, split.pixels, "cpu") for name, split in splits.items()})


def baseline_rows(shards: str, recipe: str, seed: int) -> dict[str, dict[str, float]]:
    """Chance, logistic regression on raw pixels, linear probe on a random-init encoder."""
    splits = {name: read_split(shards, name) for name in SPLITS}
    test = splits["test"]
    prevalence = test.aus.nanmean(dim=0)
    pixels = feature_row(splits, {name: split.pixels.float().flatten(1) / 255.0 for name, split in splits.items()})
    rows = {"chance": {"au_f1": float("nan"), "au_f1_valthr": float("nan"), "war": 1 / test.num_classes, "uar": 1 / test.num_classes,
                       "identity_probe": pixels["identity_chance"],
                       "coin_flip_au_f1": float((prevalence / (prevalence + 0.5)).mean()),
                       "all_active_au_f1": float((2 * prevalence / (1 + prevalence)).mean())}}
    rows["logistic regression on raw pixels"] = pixels
    rows[RANDOM_PROBE] = encoder_row(splits, random_encoder(recipe, seed))
    return rows


def finetuned_row(run_dir: str) -> dict[str, float]:
    """Test metrics of a fine-tuning run (its best validation checkpoint), from ``result.json``."""
    test = json.loads((Path(run_dir) / "result.json").read_text())["test"]
    return {"au_f1": test["test/au_f1_image"], "au_f1_valthr": test["test/au_f1_valthr_image"], "war": test["test/war_image"],
            "uar": test["test/uar_image"], "identity_probe": test.get("test/identity_probe_accuracy_image", float("nan"))}


def released_row(printed: str, run_dir: str) -> dict[str, float]:
    """The metrics ``finetune score`` printed (JSON after its log lines); identity leakage from the run it released."""
    scored = json.loads(printed[printed.index("{"):])
    return {"au_f1": scored["test/au_f1_image"], "au_f1_valthr": scored["test/au_f1_valthr_image"], "war": scored["test/war_image"],
            "uar": scored["test/uar_image"], "identity_probe": finetuned_row(run_dir)["identity_probe"]}


def markdown(rows: dict[str, dict[str, float]]) -> str:
    """The table, chance and baselines first, then the fine-tuned models, then the probes."""
    order = ["chance", "logistic regression on raw pixels"] + [n for n in rows if "fine-tuned" in n] + [RANDOM_PROBE, MAE_PROBE]

    def cell(value: float) -> str:
        return "-" if value != value else f"{value:.3f}"

    lines = ["| held-out test subjects | " + " | ".join(COLUMNS.values()) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cell(rows[name].get(key, float("nan"))) for key in COLUMNS) + " |" for name in order if name in rows]
    chance = rows.get("chance", {})
    if "coin_flip_au_f1" in chance:
        lines.append(f"\nAU F1 has no chance level; degenerate predictors score: a coin flip per AU {chance['coin_flip_au_f1']:.3f}, "
                     f"every AU active {chance['all_active_au_f1']:.3f}.")
    return "\n".join(lines)


def main() -> None:
    """Compute rows or print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["baselines", "probe", "table"])
    parser.add_argument("--shards", default="runs/demo/shards")
    parser.add_argument("--encoder", default="runs/demo/pretrain/checkpoints/last.ckpt", help="pretrained encoder (probe)")
    parser.add_argument("--recipe", default="configs/pretrain/tiny.yaml", help="pretraining recipe whose encoder is drawn at random (baselines)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-init encoder")
    parser.add_argument("--out", default="", help="JSON file of the rows")
    parser.add_argument("--rows", nargs="*", default=[], help="JSON row files (table)")
    parser.add_argument("--finetuned", action="append", default=[], help="NAME=RUN_DIR of a fine-tuning run (table)")
    parser.add_argument("--released", default="", help="RUN_DIR=FILE: what `python -m finetune score` printed for the model released from RUN_DIR")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.monotonic()
    if args.what == "table":
        rows: dict[str, dict[str, float]] = {}
        for path in args.rows:
            rows.update(json.loads(Path(path).read_text()))
        for item in args.finetuned:
            name, run_dir = item.split("=", 1)
            rows[name] = finetuned_row(run_dir)
        if args.released:
            run_dir, printed = args.released.split("=", 1)
            rows["the same model fine-tuned from MAE, released to MLflow and loaded back by URI"] = released_row(
                Path(printed).read_text(), run_dir)
        print(markdown(rows))
    else:
        if args.what == "baselines":
            rows = baseline_rows(args.shards, args.recipe, args.seed)
        else:
            rows = {MAE_PROBE: encoder_row({name: read_split(args.shards, name) for name in SPLITS}, load_model(args.encoder, encoder_only=True))}
        for name, values in rows.items():
            print(f"[table] {name}: " + " ".join(f"{key}={values[key]:.3f}" for key in COLUMNS), flush=True)
        print(f"[table] {args.what}: {time.monotonic() - started:.0f} s", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
