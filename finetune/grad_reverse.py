"""Gradient reversal (Ganin & Lempitsky 2015), the core of Identity-Adversarial Training.

The layer is the identity in the forward pass and multiplies the incoming gradient by
``-lambda`` in the backward pass, so a head behind it learns to predict identity while the
encoder below it is pushed to *remove* identity from the shared feature. ``lambda = 0`` cuts the
encoder off from the identity loss entirely (IAT off, the identity head still trains).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * -ctx.strength, None


def reverse_gradient(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Identity forward; the gradient flowing back through it is multiplied by ``-strength``."""
    return _ReverseGradient.apply(x, float(strength))


class GradientReversal(nn.Module):
    """Module form of :func:`reverse_gradient`; ``strength`` (lambda) may be changed between steps."""

    def __init__(self, strength: float = 1.0) -> None:
        super().__init__()
        self.strength = float(strength)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x`` unchanged; its gradient comes back times ``-strength``."""
        return reverse_gradient(x, self.strength)

    def extra_repr(self) -> str:
        return f"strength={self.strength}"


def reversal_strength(peak: float, schedule: str, progress: float, gamma: float = 10.0) -> float:
    """Lambda at training ``progress`` in [0, 1].

    ``constant`` returns ``peak`` throughout (the FMAE-IAT reference); ``dann`` ramps from 0 to
    ``peak`` as ``peak * (2 / (1 + exp(-gamma * progress)) - 1)`` (Ganin et al.), which keeps the
    adversary from disturbing the first steps when the identity head is still random.
    """
    if schedule == "constant":
        return peak
    if schedule == "dann":
        progress = min(max(progress, 0.0), 1.0)
        return peak * (2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0)
    raise ValueError(f"unknown reversal schedule {schedule!r}; expected 'constant' or 'dann'")
