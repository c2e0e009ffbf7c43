"""The one metrics module: every AU F1, decision threshold, WAR and UAR of the project is computed here.

Fine-tuning's validation and test (``finetune.lightning_module``) and scoring a released model
(:mod:`face_core.evaluation.scoring`) accumulate batches in :class:`MaskedMultilabelF1` and
torchmetrics' ``MulticlassConfusionMatrix``, correct under DDP: their states are sums that
torchmetrics all-reduces. The linear probe (:mod:`face_core.evaluation.linear_probe`) calls the
same definitions as plain functions on whole tensors (:func:`au_f1`, :func:`confusion_matrix`).
The README table (:mod:`face_core.evaluation.demo_table`) shows what those three computed.

- Thresholds: one grid, :data:`DEFAULT_THRESHOLDS` (0.05 ... 0.95, 0.5 included);
  :func:`threshold_index` finds a value on it, :func:`nearest_threshold_indices` the grid points of
  thresholds recorded in a release.
- AU detection: F1 of the positive class per AU at every threshold of the grid at once
  (:func:`au_f1`, or :class:`MaskedMultilabelF1` batch by batch; both count with
  :func:`au_f1_counts` and divide with :func:`f1_from_counts`). A prediction is positive when
  ``prob >= threshold``; missing labels (NaN) are skipped, never counted as negatives; an AU with no
  positive label and no positive prediction scores 0. From that table: F1 at 0.5, per-AU
  thresholds chosen on the validation split (:func:`best_threshold_indices`: the lowest threshold
  on ties), and F1 at those thresholds on another split (:func:`f1_at_indices`).
- Expression: a confusion matrix, true x predicted, label -1 ignored (``MulticlassConfusionMatrix``,
  or :func:`confusion_matrix` from predicted classes and labels; labels of another vocabulary are
  mapped first with :func:`onto_vocabulary`). From it WAR (:func:`war`: accuracy), per-class recall
  (:func:`per_class_recall`) and UAR (:func:`uar`: the mean recall over ALL classes). A class
  absent from the split has recall 0 in UAR (it is not dropped from the mean) and is listed by
  :func:`absent_classes` so the report can say so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torchmetrics import Metric

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 ... 0.95, 0.5 included


def threshold_index(value: float, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> int:
    """Index of ``value`` in the threshold grid ``thresholds`` (it must be on the grid)."""
    hits = (torch.tensor(thresholds, dtype=torch.float32) - value).abs() < 1e-6
    if not bool(hits.any()):
        raise ValueError(f"threshold {value} is not on the grid {list(thresholds)}")
    return int(hits.nonzero()[0, 0])


def nearest_threshold_indices(values: Iterable[float], thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> torch.Tensor:
    """Per value, the index ``(len(values),)`` of the nearest grid threshold (the first on ties)."""
    return torch.tensor([min(range(len(thresholds)), key=lambda i: abs(thresholds[i] - t)) for t in values], dtype=torch.long)


def au_f1_counts(probs: torch.Tensor, targets: torch.Tensor, thresholds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """True positives, false positives and false negatives ``(T, A)`` (int64) at each of ``thresholds`` ``(T,)``.

    ``probs`` ``(N, A)``; ``targets`` ``(N, A)`` in {0, 1} or NaN (missing: counted nowhere). A
    prediction is positive when ``prob >= threshold``.
    """
    present = ~torch.isnan(targets)
    positive = (targets == 1) & present
    negative = (targets == 0) & present
    predicted = probs.float().unsqueeze(0) >= thresholds.view(-1, 1, 1)  # (T, N, A)
    return (predicted & positive).sum(dim=1), (predicted & negative).sum(dim=1), (~predicted & positive).sum(dim=1)


def f1_from_counts(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """F1 ``2 tp / (2 tp + fp + fn)`` (float32), 0 where nothing is positive (no label, no prediction)."""
    denominator = (2 * tp + fp + fn).float()
    return torch.where(denominator > 0, 2 * tp.float() / denominator.clamp(min=1), torch.zeros_like(denominator))


def au_f1(probs: torch.Tensor, targets: torch.Tensor, thresholds: Iterable[float] = DEFAULT_THRESHOLDS) -> torch.Tensor:
    """F1 of the positive class ``(len(thresholds), A)`` of whole tensors: :class:`MaskedMultilabelF1` in one call.

    ``probs`` ``(N, A)``; ``targets`` ``(N, A)`` in {0, 1} or NaN (missing, skipped).
    """
    grid = torch.tensor(tuple(thresholds), dtype=torch.float32, device=probs.device)
    return f1_from_counts(*au_f1_counts(probs, targets, grid))


class MaskedMultilabelF1(Metric):
    """Per-AU true/false positive and false negative counts at each threshold of a grid.

    ``update(probs, targets)``: probabilities ``(B, A)`` and labels ``(B, A)`` in {0, 1} or NaN
    (missing). A prediction is positive when ``prob >= threshold``. ``compute()`` returns F1
    ``(num_thresholds, A)``; an AU with no positive label and no positive prediction has F1 0.
    The same numbers as :func:`au_f1` on all the batches at once.
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
        """Add a batch (:func:`au_f1_counts`); NaN targets are ignored."""
        tp, fp, fn = au_f1_counts(probs, targets, self.thresholds)
        self.tp += tp
        self.fp += fp
        self.fn += fn

    def compute(self) -> torch.Tensor:
        """F1 per threshold and AU, ``(num_thresholds, A)`` (:func:`f1_from_counts`)."""
        return f1_from_counts(self.tp, self.fp, self.fn)

    def table(self) -> torch.Tensor:
        """:meth:`compute` (synchronised across ranks) as ``(num_thresholds, A)`` even for one AU."""
        return self.compute().reshape(self.thresholds.numel(), -1)

    def threshold_index(self, value: float) -> int:
        """Index of ``value`` in this metric's threshold grid (it must be on the grid): :func:`threshold_index`."""
        return threshold_index(value, self.thresholds.tolist())


def best_threshold_indices(f1: torch.Tensor) -> torch.Tensor:
    """Per AU, the grid index with the highest F1 ``(A,)`` (the first on ties)."""
    return f1.argmax(dim=0)


def f1_at_indices(f1: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """F1 ``(A,)`` of each AU at its own threshold index."""
    return f1.gather(0, indices.view(1, -1).to(f1.device)).squeeze(0)


def onto_vocabulary(labels: torch.Tensor, mapping: torch.Tensor) -> torch.Tensor:
    """Class labels mapped by ``mapping`` (``mapping[i]``: the index of class ``i`` in the target vocabulary, -1 = none); -1 stays -1."""
    return torch.where(labels >= 0, mapping[labels.clamp(min=0)], labels)


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(C, C)`` int64 counts, true x predicted, of whole tensors (label -1 skipped): ``MulticlassConfusionMatrix`` in one call."""
    labelled = labels >= 0
    truth, guess = labels[labelled].long(), predicted[labelled].long()
    return torch.bincount(truth * num_classes + guess, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


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
