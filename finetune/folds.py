"""Subject-exclusive k-fold fine-tuning as one command (``python -m finetune folds``).

Subjects are shuffled once with a seed and dealt round-robin into ``k`` folds of nearly equal
size (:func:`subject_folds`); no subject is ever in two of train/val/test. Fold ``i`` tests on
fold ``i``'s subjects; validation subjects (for model selection and the AU threshold, never the
test fold) are carved out of the remaining training subjects.

The pooled training shard sets are split by subject;
fold ``i`` reads the same shards three times with subject filters for train, validation and
test, in ``<output_dir>/fold<i>``. The summary ``<output_dir>/folds.json`` lists each finished
fold's test metrics and their mean and standard deviation over folds.
"""

from __future__ import annotations

import dataclasses
import json
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from data_shards.manifest import read_manifest
from finetune.config import FinetuneConfig
from finetune.training import run_finetuning
from plumbing.files import write_json_atomic
from plumbing.recipes import ConfigError, validate

SUMMARY = "folds.json"


@dataclass(frozen=True)
class SubjectSplit:
    """The subjects of one fold's train, validation and test parts (disjoint, sorted)."""

    fold: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]


def subject_folds(subjects: Sequence[str], k: int, val_fraction: float = 0.15, seed: int = 0) -> list[SubjectSplit]:
    """``k`` subject-exclusive splits of the distinct ``subjects``.

    ``val_fraction`` of each fold's training subjects (at least one when ``> 0``) become its
    validation subjects; ``0`` gives an empty validation part.
    """
    distinct = sorted(set(subjects))
    if k < 2:
        raise ValueError(f"k={k}: a k-fold split needs k >= 2")
    if len(distinct) < k:
        raise ValueError(f"{len(distinct)} distinct subjects cannot fill k={k} folds")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction} must be in [0, 1)")
    order = distinct[:]
    random.Random(seed).shuffle(order)
    folds = [order[i::k] for i in range(k)]
    splits = []
    for index, test in enumerate(folds):
        rest = [s for i, fold in enumerate(folds) if i != index for s in fold]
        random.Random(seed + 1 + index).shuffle(rest)
        n_val = 0 if val_fraction == 0 else max(1, round(len(rest) * val_fraction))
        if n_val >= len(rest):
            raise ValueError(f"fold {index}: {len(rest)} training subjects leave none after {n_val} for validation")
        splits.append(SubjectSplit(index, tuple(sorted(rest[n_val:])), tuple(sorted(rest[:n_val])), tuple(sorted(test))))
    return splits


def pooled_subjects(config: FinetuneConfig) -> list[str]:
    """Every subject named by the manifests of the pooled training sets (``data.*_train``)."""
    entries = [*config.data.image_train, *config.data.clip_train]
    if not entries:
        raise ConfigError("data.image_train / data.clip_train: k-fold runs need the pooled shard sets there")
    subjects: set[str] = set()
    for entry in entries:
        manifest_path = entry if entry.endswith(".json") or Path(entry).is_dir() else str(Path(entry.split("{")[0]).parent)
        subjects.update(read_manifest(manifest_path).subjects)
    if not subjects:
        raise ConfigError(f"the manifests of {entries} list no subjects: subject-exclusive folds need subject labels")
    return sorted(subjects)


def fold_config(config: FinetuneConfig, split: SubjectSplit) -> FinetuneConfig:
    """``config`` restricted to one fold: the pooled sets filtered by the fold's subjects."""
    data = dataclasses.replace(
        config.data,
        image_val=list(config.data.image_train), image_test=list(config.data.image_train),
        clip_val=list(config.data.clip_train), clip_test=list(config.data.clip_train),
        train_subjects=list(split.train), val_subjects=list(split.val), test_subjects=list(split.test),
    )
    trainer = dataclasses.replace(config.trainer, output_dir=str(Path(config.trainer.output_dir) / f"fold{split.fold}"))
    tracking = dataclasses.replace(config.tracking, run_name=f"{config.tracking.run_name or Path(config.trainer.output_dir).name}-fold{split.fold}")
    return dataclasses.replace(config, data=data, trainer=trainer, tracking=tracking)


def summarise(output_dir: Path, k: int) -> dict:
    """Per-fold test metrics (from each fold's ``result.json``) with their mean and std over finished folds."""
    folds = {}
    for index in range(k):
        result = output_dir / f"fold{index}" / "result.json"
        if result.is_file():
            folds[index] = json.loads(result.read_text())["test"]
    names = sorted({name for metrics in folds.values() for name in metrics})
    mean = {n: statistics.fmean(m[n] for m in folds.values() if n in m) for n in names}
    std = {n: statistics.pstdev([m[n] for m in folds.values() if n in m]) for n in names}
    return {"k": k, "finished": sorted(folds), "mean": mean, "std": std, "folds": folds}


def run_folds(config: FinetuneConfig, k: int, val_fraction: float, only: list[int]) -> Path:
    """Run the folds in ``only`` (all when empty) one after the other; write and return the summary file."""
    splits = subject_folds(pooled_subjects(config), k, val_fraction, seed=config.trainer.seed)
    unknown = [i for i in only if not 0 <= i < k]
    if unknown:
        raise ConfigError(f"only={only}: fold indices must be in [0, {k})")

    output_dir = Path(config.trainer.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output_dir / "fold_subjects.json", [dataclasses.asdict(s) for s in splits])
    for split in splits:
        if not only or split.fold in only:
            run_finetuning(validate(fold_config(config, split)))
    summary = summarise(output_dir, k)
    write_json_atomic(output_dir / SUMMARY, summary)
    return output_dir / SUMMARY
