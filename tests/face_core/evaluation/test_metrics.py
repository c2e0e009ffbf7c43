"""The one metrics module (face_core.evaluation.metrics) against hand-computed examples and scikit-learn.

AU F1 is scikit-learn's ``f1_score`` of the positive class per AU with the missing labels masked
(``zero_division=0``: an AU with no positive label and no positive prediction scores 0), for the
torchmetrics class fed batch by batch and for the plain function alike; UAR is
``balanced_accuracy_score`` when every class occurs (and the macro recall over ALL classes, an
absent one counting 0, when one does not); WAR is ``accuracy_score``. The linear probe and the
metric class give the same numbers on the same predictions.
"""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix
from torchmetrics.classification import MulticlassConfusionMatrix

from face_core.evaluation.linear_probe import ProbeData, fit_linear_probe
from face_core.evaluation.metrics import (
    DEFAULT_THRESHOLDS,
    MaskedMultilabelF1,
    absent_classes,
    au_f1,
    best_threshold_indices,
    confusion_matrix,
    f1_at_indices,
    nearest_threshold_indices,
    onto_vocabulary,
    per_class_recall,
    threshold_index,
    uar,
    war,
)

NAN = math.nan


def labelled_probs(seed: int, samples: int = 300, aus: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities (some exactly on the grid) and AU labels with NaN; AU 0 never positive, the last AU never labelled."""
    generator = torch.Generator().manual_seed(seed)
    probs = torch.rand(samples, aus, generator=generator)
    grid = torch.tensor(DEFAULT_THRESHOLDS)
    on_grid = torch.rand(samples, aus, generator=generator) < 0.2
    probs = torch.where(on_grid, grid[torch.randint(0, len(grid), (samples, aus), generator=generator)], probs)
    targets = (torch.rand(samples, aus, generator=generator) < torch.linspace(0.0, 0.6, aus)).float()
    targets[torch.rand(samples, aus, generator=generator) < 0.25] = NAN
    targets[:, -1] = NAN
    return probs, targets


def sklearn_au_f1(probs: torch.Tensor, targets: torch.Tensor, thresholds: tuple[float, ...]) -> np.ndarray:
    """``(T, A)`` F1 of the positive class per AU by scikit-learn, missing labels masked, 0 where nothing is labelled."""
    table = np.zeros((len(thresholds), targets.shape[1]))
    for a in range(targets.shape[1]):
        present = ~torch.isnan(targets[:, a])
        if not present.any():
            continue  # no label: counted nowhere, F1 0
        truth = targets[present, a].numpy().astype(int)
        for t, threshold in enumerate(thresholds):
            predicted = (probs[present, a] >= torch.tensor(threshold, dtype=torch.float32)).numpy().astype(int)
            table[t, a] = f1_score(truth, predicted, zero_division=0.0)
    return table


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_au_f1_function_and_metric_match_sklearn(seed: int) -> None:
    probs, targets = labelled_probs(seed)
    expected = sklearn_au_f1(probs, targets, DEFAULT_THRESHOLDS)
    table = au_f1(probs, targets)
    np.testing.assert_allclose(table.numpy(), expected, rtol=0, atol=1e-6)
    metric = MaskedMultilabelF1(targets.shape[1])
    for start in range(0, probs.shape[0], 64):  # batch by batch, as fine-tuning and scoring feed it
        metric.update(probs[start : start + 64], targets[start : start + 64])
    assert torch.equal(metric.table(), table)
    assert table[:, 0].eq(0).all() and table[:, -1].eq(0).all()  # no positive label (AU 0) / no label at all
    best = best_threshold_indices(table)
    assert best.tolist() == expected.argmax(axis=0).tolist()  # the first (lowest) threshold on ties
    np.testing.assert_allclose(f1_at_indices(table, best).numpy(), expected.max(axis=0), rtol=0, atol=1e-6)
    half = threshold_index(0.5)
    assert torch.equal(au_f1(probs, targets, (0.5,))[0], table[half])


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
    assert torch.equal(au_f1(probs, labels, (0.25, 0.5, 0.75)), f1)
    best = best_threshold_indices(f1)
    assert best.tolist() == [0, 0]
    assert f1_at_indices(f1, best).tolist() == pytest.approx([0.8, 1.0])


def test_plain_functions_by_hand() -> None:
    probs = torch.tensor([[0.9, 0.2], [0.6, 0.7], [0.1, 0.4], [0.7, NAN]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, NAN], [1.0, 0.0]])
    # AU 0: tp 2 (rows 0, 3), fp 1 (row 1), fn 1 (row 2): F1 = 4 / 6; AU 1: tp 1, nothing else (NaN label skipped)
    torch.testing.assert_close(au_f1(probs, targets, (0.5,))[0], torch.tensor([4 / 6, 1.0]))
    assert au_f1(torch.full((3, 1), 0.5), torch.ones(3, 1), (0.5,))[0, 0] == 1  # prob == threshold is positive
    recalls = per_class_recall(confusion_matrix(torch.tensor([0, 1, 1, 0, 2]), torch.tensor([0, 1, 0, -1, 1]), num_classes=4))
    torch.testing.assert_close(recalls, torch.tensor([0.5, 0.5, 0.0, 0.0]))  # class 3 absent: recall 0, still in UAR


def test_au_with_no_positives_and_no_predictions_scores_zero() -> None:
    metric = MaskedMultilabelF1(1, thresholds=(0.5,))
    metric.update(torch.tensor([[0.1], [0.2]]), torch.tensor([[0.0], [NAN]]))
    assert metric.table().tolist() == [[0.0]]
    assert au_f1(torch.zeros(3, 1), torch.zeros(3, 1), (0.5,))[0, 0] == 0
    with pytest.raises(ValueError, match="grid"):
        metric.threshold_index(0.3)


def test_threshold_grid_lookups() -> None:
    assert DEFAULT_THRESHOLDS[threshold_index(0.5)] == 0.5 and threshold_index(0.05) == 0
    with pytest.raises(ValueError, match="grid"):
        threshold_index(0.52)
    found = nearest_threshold_indices([0.05, 0.35, 0.33, 0.95, 0.5])  # a release's thresholds: on the grid, or near it
    assert found.dtype == torch.long and found.tolist() == [0, 6, 6, 18, 9]


@pytest.mark.parametrize("seed", [0, 1])
def test_war_and_uar_match_sklearn_when_every_class_occurs(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    classes = 5
    labels = torch.randint(0, classes, (400,), generator=generator)
    predicted = torch.where(torch.rand(400, generator=generator) < 0.5, labels, torch.randint(0, classes, (400,), generator=generator))
    labels[torch.rand(400, generator=generator) < 0.1] = -1  # missing: ignored
    kept = labels >= 0
    truth, guess = labels[kept].numpy(), predicted[kept].numpy()
    confusion = confusion_matrix(predicted, labels, classes)
    np.testing.assert_array_equal(confusion.numpy(), sklearn_confusion_matrix(truth, guess, labels=list(range(classes))))
    streamed = MulticlassConfusionMatrix(classes, ignore_index=-1)
    streamed.update(predicted[:150], labels[:150])
    streamed.update(predicted[150:], labels[150:])
    assert torch.equal(streamed.compute(), confusion)
    assert war(confusion).item() == pytest.approx(accuracy_score(truth, guess), abs=1e-6)
    assert uar(confusion).item() == pytest.approx(balanced_accuracy_score(truth, guess), abs=1e-6)
    np.testing.assert_allclose(per_class_recall(confusion).numpy(), recall_score(truth, guess, average=None), rtol=0, atol=1e-6)
    assert absent_classes(confusion) == []


def test_uar_keeps_an_absent_class_at_zero() -> None:
    labels = torch.tensor([0, 1, 1, 0, 2, 1, -1])
    predicted = torch.tensor([0, 1, 0, 0, 3, 1, 3])  # class 3 never a label: recall 0, still in the mean
    confusion = confusion_matrix(predicted, labels, 4)
    expected = recall_score(labels[:6].numpy(), predicted[:6].numpy(), labels=[0, 1, 2, 3], average="macro", zero_division=0.0)
    assert uar(confusion).item() == pytest.approx(expected, abs=1e-6)
    assert uar(confusion).item() == pytest.approx((1 + 2 / 3 + 0 + 0) / 4)
    assert absent_classes(confusion) == [3]


def test_war_and_uar_by_hand_with_an_absent_class() -> None:
    # 3 classes; class 2 never occurs in this split but must stay in UAR's mean.
    preds = torch.tensor([0, 0, 1, 1, 1, 2])
    target = torch.tensor([0, 1, 1, 1, 0, 1])
    matrix = MulticlassConfusionMatrix(3, ignore_index=-1)
    matrix.update(preds, target)
    matrix.update(torch.tensor([2]), torch.tensor([-1]))  # a missing label is ignored
    confusion = matrix.compute()
    assert confusion.tolist() == [[1, 1, 0], [1, 2, 1], [0, 0, 0]]
    assert torch.equal(confusion_matrix(torch.cat([preds, torch.tensor([2])]), torch.cat([target, torch.tensor([-1])]), 3), confusion)
    assert war(confusion).item() == pytest.approx(3 / 6)
    assert per_class_recall(confusion).tolist() == pytest.approx([1 / 2, 2 / 4, 0.0])
    assert uar(confusion).item() == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert absent_classes(confusion) == [2]


def test_labels_onto_another_vocabulary() -> None:
    mapping = torch.tensor([2, -1, 0])  # class 1 has no counterpart
    assert onto_vocabulary(torch.tensor([0, 1, 2, -1]), mapping).tolist() == [2, -1, 0, -1]


def noisy_labels(samples: int, seed: int) -> ProbeData:
    """Features that carry 3 AUs and 4 expression classes through noise (some labels missing)."""
    generator = torch.Generator().manual_seed(seed)
    aus = (torch.rand(samples, 3, generator=generator) < 0.35).float()
    expression = torch.randint(0, 4, (samples,), generator=generator)
    signal = torch.cat([aus, torch.nn.functional.one_hot(expression, 4).float()], dim=1)
    features = torch.cat([signal + torch.randn(samples, 7, generator=generator), torch.randn(samples, 5, generator=generator)], dim=1)
    aus[torch.rand(samples, 3, generator=generator) < 0.1] = NAN
    expression[::9] = -1
    return ProbeData(features, aus, expression, 4)


def test_linear_probe_and_metric_agree_on_the_same_predictions() -> None:
    probe = fit_linear_probe(noisy_labels(240, 0), noisy_labels(160, 1), steps=50)
    test = noisy_labels(200, 2)
    found = probe.evaluate(test)
    f1 = MaskedMultilabelF1(3)
    confusion = MulticlassConfusionMatrix(4, ignore_index=-1)
    for start in range(0, len(test), 48):  # batch by batch, as fine-tuning's test
        part = slice(start, start + 48)
        f1.update(probe.au_probs(test.features[part]), test.aus[part])
        confusion.update(probe.expressions(test.features[part]), test.expression[part])
    table = f1.table()
    assert found["au_f1"] == table[f1.threshold_index(0.5)].mean().item()
    assert found["au_f1_valthr"] == f1_at_indices(table, nearest_threshold_indices(probe.thresholds.tolist())).mean().item()
    matrix = confusion.compute()
    assert found["war"] == war(matrix).item() and found["uar"] == uar(matrix).item()
    assert 0 < found["au_f1"] < 1 and 0 < found["uar"] < 1
