"""The project's linear probe: logistic regressions on frozen features, for AUs and expressions.

Plain PyTorch (no Lightning), used during pretraining (:mod:`pretrain.representation_probe`), by
the benchmarks and by fine-tuning's identity probe (:func:`fit_multinomial`).

* Features are standardised with the train set's mean and std.
* One L2-regularised binary logistic regression per AU, its positives weighted by negatives /
  positives (as fine-tuning's ``tasks.au_balance``: F1 at 0.5 rewards recall), and one
  multinomial over the expressions, fitted together full-batch with L-BFGS (strong Wolfe line
  search). The objective is ``sum(loss) / N + ||W||^2 / (2 C N)``: scikit-learn's
  ``C * sum(loss) + ||W||^2 / 2`` divided by ``C N``, so the same minimiser for each output
  (the outputs do not interact); biases are not penalised. Missing labels (AU NaN,
  expression -1) are left out of their output's loss.
* The inverse strength C comes from a small grid (ascending, each fit warm-started from the
  previous one) and is chosen on the validation set: per AU by F1 at 0.5, for the expressions
  by UAR. Per-AU decision thresholds are chosen on the validation set too (the grid of
  :data:`face_core.evaluation.metrics.DEFAULT_THRESHOLDS`, the best F1, the lowest threshold on ties).
* Every metric is computed by :mod:`face_core.evaluation.metrics`, the module fine-tuning and
  scoring use (its plain functions on whole tensors): AU F1 of the positive class (missing labels
  skipped; an AU with no positive label and no positive prediction scores 0), mean over AUs, at
  0.5 (``au_f1``) and at the validation thresholds (``au_f1_valthr``); WAR = accuracy and UAR =
  mean recall over ALL classes (an absent class counts 0) over the labelled samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from data_shards.loaders import ShardLoader, normalize_pixels
from face_core.evaluation.metrics import DEFAULT_THRESHOLDS, au_f1, best_threshold_indices, confusion_matrix, threshold_index, uar, war

C_GRID = (0.01, 0.1, 1.0)
LBFGS_STEPS = 200


@dataclass
class ProbeData:
    """A labelled feature set.

    Args:
        features: ``(N, D)`` float features.
        aus: ``(N, A)`` float in {0, 1}, NaN where missing (``A`` may be 0).
        expression: ``(N,)`` int64 class, -1 where missing.
        num_classes: number of expression classes (0: no expression output).
    """

    features: torch.Tensor
    aus: torch.Tensor
    expression: torch.Tensor
    num_classes: int

    def __len__(self) -> int:
        return self.features.shape[0]


def fit_logistic(
    x: torch.Tensor, aus: torch.Tensor, expression: torch.Tensor, num_classes: int, c: float,
    steps: int = LBFGS_STEPS, start: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit the AU binaries and the expression multinomial on (standardised) ``x`` at inverse strength ``c``.

    Returns ``(weight (D, A + classes), bias (A + classes,))``: the AU columns first.
    ``start``: a previous ``(weight, bias)`` to warm-start from. Callable under inference mode.
    """
    with torch.inference_mode(False), torch.enable_grad():
        x = x.detach().float().cpu().clone()
        present = ~torch.isnan(aus.detach().float().cpu())
        targets = torch.nan_to_num(aus.detach().float().cpu()).clone()
        labels = expression.detach().long().cpu().clone()
        count, num_aus = x.shape[0], targets.shape[1]
        outputs = num_aus + num_classes
        weight = (torch.zeros(x.shape[1], outputs) if start is None else start[0].clone()).requires_grad_()
        bias = (torch.zeros(outputs) if start is None else start[1].clone()).requires_grad_()
        positives = (targets * present).sum(dim=0)
        pos_weight = (present.sum(dim=0) - positives) / positives.clamp(min=1)
        labelled = labels >= 0
        optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=steps, history_size=20, tolerance_grad=1e-6,
                                      tolerance_change=1e-9, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            logits = x @ weight + bias
            loss = weight.pow(2).sum() / (2 * c)
            if num_aus:
                per_label = F.binary_cross_entropy_with_logits(logits[:, :num_aus], targets, pos_weight=pos_weight, reduction="none")
                loss = loss + (per_label * present).sum()
            if num_classes and labelled.any():
                loss = loss + F.cross_entropy(logits[labelled, num_aus:], labels[labelled], reduction="sum")
            loss = loss / count
            loss.backward()
            return loss

        optimizer.step(closure)
        return weight.detach(), bias.detach()


def fit_multinomial(
    x: torch.Tensor, labels: torch.Tensor, num_classes: int, c: float, steps: int = LBFGS_STEPS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A multinomial logistic regression alone (labels -1 left out): ``(weight (D, classes), bias (classes,))``."""
    return fit_logistic(x, torch.zeros(x.shape[0], 0), labels, num_classes, c, steps)


def standardiser(train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std (floored at 1e-6) of each feature of ``train`` ``(N, D)``."""
    train = train.detach().float().cpu()
    return train.mean(dim=0), train.std(dim=0).nan_to_num(1.0).clamp(min=1e-6)


@dataclass
class LinearProbe:
    """A fitted probe: standardisation, AU and expression weights, and what validation chose."""

    mean: torch.Tensor
    std: torch.Tensor
    au_weight: torch.Tensor  # (D, A)
    au_bias: torch.Tensor  # (A,)
    expression_weight: torch.Tensor  # (D, classes)
    expression_bias: torch.Tensor  # (classes,)
    thresholds: torch.Tensor  # (A,) validation-chosen decision thresholds
    au_c: list[float]  # chosen C per AU
    expression_c: float

    def au_probs(self, features: torch.Tensor) -> torch.Tensor:
        """AU probabilities ``(N, A)``."""
        return torch.sigmoid(((features.float().cpu() - self.mean) / self.std) @ self.au_weight + self.au_bias)

    def expressions(self, features: torch.Tensor) -> torch.Tensor:
        """Predicted expression class ``(N,)``."""
        return (((features.float().cpu() - self.mean) / self.std) @ self.expression_weight + self.expression_bias).argmax(dim=1)

    def evaluate(self, test: ProbeData) -> dict[str, float]:
        """``au_f1`` (at 0.5), ``au_f1_valthr`` (at the validation thresholds), ``war``, ``uar`` on ``test``; NaN where there are no such labels."""
        result = {"au_f1": math.nan, "au_f1_valthr": math.nan, "war": math.nan, "uar": math.nan}
        if self.au_weight.shape[1]:
            probs = self.au_probs(test.features)
            aus = test.aus.float().cpu()
            result["au_f1"] = float(au_f1(probs, aus, (0.5,))[0].mean())
            decisions = (probs >= self.thresholds).float()  # 0/1 at each AU's own threshold, scored at 0.5
            result["au_f1_valthr"] = float(au_f1(decisions, aus, (0.5,))[0].mean())
        labels = test.expression.long().cpu()
        if self.expression_weight.shape[1] and bool((labels >= 0).any()):
            confusion = confusion_matrix(self.expressions(test.features), labels, self.expression_weight.shape[1])
            result["war"], result["uar"] = float(war(confusion)), float(uar(confusion))
        return result


def fit_linear_probe(train: ProbeData, val: ProbeData, c_grid: Iterable[float] = C_GRID, steps: int = LBFGS_STEPS) -> LinearProbe:
    """Fit on ``train`` at each C of ``c_grid`` (ascending, warm-started); choose C and AU thresholds on ``val``."""
    grid = sorted(c_grid)
    mean, std = standardiser(train.features)
    x_train = (train.features.float().cpu() - mean) / std
    x_val = (val.features.float().cpu() - mean) / std
    num_aus, classes = train.aus.shape[1], train.num_classes
    fits: list[tuple[torch.Tensor, torch.Tensor]] = []
    for c in grid:
        fits.append(fit_logistic(x_train, train.aus, train.expression, classes, c, steps, start=fits[-1] if fits else None))
    val_aus, val_labels = val.aus.float().cpu(), val.expression.long().cpu()
    # per AU: the fit with the best validation F1 at 0.5 (the smallest C on ties), then its best threshold
    tables = torch.stack([au_f1(torch.sigmoid(x_val @ w[:, :num_aus] + b[:num_aus]), val_aus) for w, b in fits])  # (C, T, A)
    best_c = tables[:, threshold_index(0.5)].argmax(dim=0) if num_aus else torch.zeros(0, dtype=torch.long)
    chosen = torch.stack([tables[best_c[j], :, j] for j in range(num_aus)], dim=1) if num_aus else torch.zeros(len(DEFAULT_THRESHOLDS), 0)
    thresholds = torch.tensor(DEFAULT_THRESHOLDS)[best_threshold_indices(chosen)]
    au_weight = torch.stack([fits[int(best_c[j])][0][:, j] for j in range(num_aus)], dim=1) if num_aus else torch.zeros(x_train.shape[1], 0)
    au_bias = torch.stack([fits[int(best_c[j])][1][j] for j in range(num_aus)]) if num_aus else torch.zeros(0)
    uars = [float(uar(confusion_matrix((x_val @ w[:, num_aus:] + b[num_aus:]).argmax(dim=1), val_labels, classes))) if classes else 0.0
            for w, b in fits]
    best_ex = max(range(len(grid)), key=lambda i: (uars[i], -i))
    return LinearProbe(mean, std, au_weight, au_bias, fits[best_ex][0][:, num_aus:], fits[best_ex][1][num_aus:], thresholds,
                       [grid[int(i)] for i in best_c], grid[best_ex])


@torch.no_grad()
def encode_pixels(encoder: torch.nn.Module, pixels: torch.Tensor, device: torch.device | str, batch_size: int = 256) -> torch.Tensor:
    """Pooled features ``(N, D)`` float32 on the CPU of uint8 ``pixels`` ``(N, 3, H, W)``, normalised as pretraining does.

    ``encoder`` (a :class:`face_core.model.vit.VisionTransformer`: ``forward`` pools) runs in eval
    mode; its train/eval mode is restored afterwards. Inputs are cast to its weights' dtype.
    """
    dtype = next(encoder.parameters()).dtype
    was_training = encoder.training
    encoder.eval()
    try:
        parts = [encoder(normalize_pixels(pixels[i : i + batch_size].to(device)).to(dtype)).float().cpu()
                 for i in range(0, pixels.shape[0], batch_size)]
    finally:
        encoder.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0, 0)


@dataclass
class LabelledPixels:
    """Decoded uint8 images ``(N, 3, H, W)`` with their labels (see :class:`ProbeData`), subject indices and sample keys."""

    pixels: torch.Tensor
    aus: torch.Tensor
    expression: torch.Tensor
    num_classes: int
    subjects: torch.Tensor
    keys: list[str]

    def labelled(self, features: torch.Tensor) -> ProbeData:
        """``features`` of these images ``(N, D)`` with their labels."""
        return ProbeData(features, self.aus, self.expression, self.num_classes)

    def features(self, encoder: torch.nn.Module, device: torch.device | str, batch_size: int = 256) -> ProbeData:
        """:class:`ProbeData` of ``encoder``'s pooled features of these images (:func:`encode_pixels`)."""
        return self.labelled(encode_pixels(encoder, self.pixels, device, batch_size))


def read_labelled(loader: ShardLoader, max_samples: int = 0) -> LabelledPixels:
    """The valid image samples of a loader, in its order: the first ``max_samples`` (0 = all)."""
    pixels, aus, expression, subjects, keys = [], [], [], [], []
    kept = 0
    for batch in loader:
        valid = batch["valid"]
        pixels.append(batch["pixels"][valid])
        aus.append(batch["aus"][valid])
        expression.append(batch["expression"][valid])
        subjects.append(batch["subject"][valid])
        keys += [key for key, keep in zip(batch["key"], valid.tolist()) if keep]
        kept += int(valid.sum())
        if max_samples and kept >= max_samples:
            break
    if not pixels:
        raise ValueError("the loader gave no batch")
    cap = max_samples or kept
    return LabelledPixels(torch.cat(pixels)[:cap], torch.cat(aus)[:cap].float(), torch.cat(expression)[:cap].long(), len(loader.class_names),
                          torch.cat(subjects)[:cap], keys[:cap])
