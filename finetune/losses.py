"""Task losses with missing labels masked out, and soft targets for mixup/cutmix.

Missing labels never count as negatives: an AU label that is NaN contributes neither to the
loss nor to its normaliser, an expression or subject label of -1 is skipped. A batch with no
label for a task gives a zero loss that still depends on the logits (so every rank runs the
same backward graph under DDP).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean BCE-with-logits over the labelled (non-NaN) entries of ``targets`` ``(B, A)``.

    ``targets`` may be soft (mixup). ``pos_weight`` ``(A,)`` weighs positives per AU.
    """
    present = ~torch.isnan(targets)
    safe = torch.where(present, targets, torch.zeros_like(targets))
    losses = F.binary_cross_entropy_with_logits(logits.float(), safe.float(), pos_weight=pos_weight, reduction="none")
    weight = present.to(losses.dtype)
    return (losses * weight).sum() / weight.sum().clamp(min=1.0)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets ``(B, C)``, averaged over rows with ``weight`` ``(B,)`` (0 = skip)."""
    per_sample = -(targets * logits.float().log_softmax(dim=-1)).sum(dim=-1)
    return (per_sample * weight).sum() / weight.sum().clamp(min=1.0)


def soft_bce(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits against (soft) one-hot targets ``(B, C)``, mean over the classes and the rows with ``weight`` > 0.

    FMAE-IAT's identity loss: ``BCEWithLogitsLoss`` on one-hot identities, a mean over batch x subjects.
    """
    per_sample = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none").mean(dim=-1)
    return (per_sample * weight).sum() / weight.sum().clamp(min=1.0)


def one_hot_targets(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class ids ``(B,)`` (-1 = missing) -> (smoothed one-hot ``(B, C)``, present mask ``(B,)`` float).

    Smoothing spreads ``smoothing`` uniformly over all classes: ``(1 - s) * onehot + s / C``.
    Rows of missing labels are all zero.
    """
    present = labels >= 0
    hot = F.one_hot(labels.clamp(min=0), num_classes).float()
    hot = hot * (1.0 - smoothing) + smoothing / num_classes
    return hot * present.unsqueeze(-1), present.float()
