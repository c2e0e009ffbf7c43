"""Evaluation metrics, correct under DDP: their states are sums that torchmetrics all-reduces.

- AU detection: F1 of the positive class per AU, at a grid of thresholds at once
  (:class:`MaskedMultilabelF1`). Missing labels (NaN) are skipped, never counted as negatives.
  From its result: F1 at 0.5, per-AU thresholds chosen on the validation split
  (:func:`best_threshold_indices`), and F1 at those thresholds on another split.
- Expression: a confusion matrix (torchmetrics ``MulticlassConfusionMatrix``; label -1 is
  ignored) from which WAR (accuracy) and UAR (mean recall over ALL classes) are computed. A class
  absent from the split has recall 0 in UAR (it is not dropped from the mean) and is counted by
  :func:`absent_classes` so the report can say so.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

DEFAULT_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 ... 0.95, 0.5 included


class MaskedMultilabelF1(Metric):
    """Per-AU true/false positive and false negative counts at each threshold of a grid.

    ``update(probs, targets)``: probabilities ``(B, A)`` and labels ``(B, A)`` in {0, 1} or NaN
    (missing). A prediction is positive when ``prob >= threshold``. ``compute()`` returns F1
    ``(num_thresholds, A)``; an AU with no positive label and no positive prediction has F1 0.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_labels: int, thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.register_buffer("thresholds", torch.tensor(thresholds, dtype=torch.float32), persistent=False)
        shape = (len(thresholds), num_labels)
        for name in ("tp", "fp", "fn"):
            self.add_state(name, default=torch.zeros(shape, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch; NaN targets are ignored."""
        present = ~torch.isnan(targets)
        positive = (targets == 1) & present
        negative = (targets == 0) & present
        predicted = probs.float().unsqueeze(0) >= self.thresholds.view(-1, 1, 1)  # (T, B, A)
        self.tp += (predicted & positive).sum(dim=1)
        self.fp += (predicted & negative).sum(dim=1)
        self.fn += (~predicted & positive).sum(dim=1)

    def compute(self) -> torch.Tensor:
        """F1 per threshold and AU, ``(num_thresholds, A)``."""
        denominator = (2 * self.tp + self.fp + self.fn).float()
        return torch.where(denominator > 0, 2 * self.tp.float() / denominator.clamp(min=1), torch.zeros_like(denominator))

    def table(self) -> torch.Tensor:
        """:meth:`compute` (synchronised across ranks) as ``(num_thresholds, A)`` even for one AU."""
        return self.compute().reshape(self.thresholds.numel(), -1)

    def threshold_index(self, value: float) -> int:
        """Index of ``value`` in the threshold grid (it must be on the grid)."""
        hits = (self.thresholds - value).abs() < 1e-6
        if not bool(hits.any()):
            raise ValueError(f"threshold {value} is not on the grid {self.thresholds.tolist()}")
        return int(hits.nonzero()[0, 0])


def best_threshold_indices(f1: torch.Tensor) -> torch.Tensor:
    """Per AU, the grid index with the highest F1 ``(A,)`` (the first on ties)."""
    return f1.argmax(dim=0)


def f1_at_indices(f1: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """F1 ``(A,)`` of each AU at its own threshold index."""
    return f1.gather(0, indices.view(1, -1).to(f1.device)).squeeze(0)


def war(confusion: torch.Tensor) -> torch.Tensor:
    """Weighted average recall = accuracy: trace over total of a ``(C, C)`` (true x predicted) matrix."""
    return confusion.diagonal().sum().float() / confusion.sum().clamp(min=1).float()


def per_class_recall(confusion: torch.Tensor) -> torch.Tensor:
    """Recall of each class ``(C,)``; 0 for a class with no sample in the split."""
    support = confusion.sum(dim=1)
    return confusion.diagonal().float() / support.clamp(min=1).float()


def uar(confusion: torch.Tensor) -> torch.Tensor:
    """Unweighted average recall: the mean of :func:`per_class_recall` over ALL classes."""
    return per_class_recall(confusion).mean()


def absent_classes(confusion: torch.Tensor) -> list[int]:
    """Classes with no sample in the split (their recall enters UAR as 0)."""
    return [int(c) for c in (confusion.sum(dim=1) == 0).nonzero().flatten()]
