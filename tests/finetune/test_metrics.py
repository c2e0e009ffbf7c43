"""Metric values against hand-computed examples; missing labels are masked, absent classes kept."""

import math

import pytest
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from face_core.evaluation.metrics import (
    MaskedMultilabelF1,
    absent_classes,
    best_threshold_indices,
    f1_at_indices,
    per_class_recall,
    uar,
    war,
)

NAN = math.nan


def test_au_f1_by_hand_with_missing_labels() -> None:
    # AU0: labels 1,1,0,0,NaN  probs .9,.3,.8,.1,.9  -> at 0.5: tp=1 fp=1 fn=1 -> F1 = 2/4 = 0.5
    #      (the NaN row predicted positive would be a false positive if counted: it is not)
    # AU1: labels 0,1,NaN,1,1  probs .2,.7,.9,.6,.4  -> at 0.5: tp=2 fp=0 fn=1 -> F1 = 4/5 = 0.8
    probs = torch.tensor([[0.9, 0.2], [0.3, 0.7], [0.8, 0.9], [0.1, 0.6], [0.9, 0.4]])
    labels = torch.tensor([[1, 0], [1, 1], [0, NAN], [0, 1], [NAN, 1]], dtype=torch.float32)
    metric = MaskedMultilabelF1(2, thresholds=(0.25, 0.5, 0.75))
    metric.update(probs[:2], labels[:2])
    metric.update(probs[2:], labels[2:])  # accumulates over batches
    f1 = metric.table()
    assert f1[metric.threshold_index(0.5)].tolist() == pytest.approx([0.5, 0.8])
    # at 0.25: AU0 tp=2 fp=1 fn=0 -> 4/5; AU1 tp=3 fp=0 fn=0 -> 1.0
    assert f1[0].tolist() == pytest.approx([0.8, 1.0])
    # at 0.75: AU0 tp=1 fp=1 fn=1 -> 0.5; AU1 tp=0 fp=0 fn=3 -> 0
    assert f1[2].tolist() == pytest.approx([0.5, 0.0])
    best = best_threshold_indices(f1)
    assert best.tolist() == [0, 0]
    assert f1_at_indices(f1, best).tolist() == pytest.approx([0.8, 1.0])


def test_au_with_no_positives_and_no_predictions_scores_zero() -> None:
    metric = MaskedMultilabelF1(1, thresholds=(0.5,))
    metric.update(torch.tensor([[0.1], [0.2]]), torch.tensor([[0.0], [NAN]]))
    assert metric.table().tolist() == [[0.0]]
    with pytest.raises(ValueError, match="grid"):
        metric.threshold_index(0.3)


def test_war_and_uar_by_hand_with_an_absent_class() -> None:
    # 3 classes; class 2 never occurs in this split but must stay in UAR's mean.
    preds = torch.tensor([0, 0, 1, 1, 1, 2])
    target = torch.tensor([0, 1, 1, 1, 0, 1])
    matrix = MulticlassConfusionMatrix(3, ignore_index=-1)
    matrix.update(preds, target)
    matrix.update(torch.tensor([2]), torch.tensor([-1]))  # a missing label is ignored
    confusion = matrix.compute()
    assert confusion.tolist() == [[1, 1, 0], [1, 2, 1], [0, 0, 0]]
    assert war(confusion).item() == pytest.approx(3 / 6)
    assert per_class_recall(confusion).tolist() == pytest.approx([1 / 2, 2 / 4, 0.0])
    assert uar(confusion).item() == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert absent_classes(confusion) == [2]
