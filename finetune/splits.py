"""Subject-exclusive k-fold splits (BP4D-style): no subject is ever in two of train/val/test.

Subjects are shuffled once with a seed and dealt round-robin into ``k`` folds of nearly equal
size. Fold ``i`` tests on fold ``i``'s subjects; validation subjects (for model selection and the
AU threshold, never the test fold) are carved out of the remaining training subjects.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


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
