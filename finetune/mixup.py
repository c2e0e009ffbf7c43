"""Mixup and CutMix for images ``(B, C, H, W)`` and clips ``(B, C, T, H, W)``, as timm's ``Mixup`` in batch mode.

One draw per batch: with probability ``prob`` the batch is mixed with its partner, the batch in
reverse order (timm's ``x.flip(0)``), either by mixup (pixel blend ``lam * x + (1 - lam) *
partner``) or by cutmix (a box of the partner pasted over every frame), the choice made with
``switch_prob``. Labels are mixed by the returned (lambda, partner order) with
:func:`mix_targets`; for cutmix lambda is the area actually kept after the box is clipped to the
picture (timm's ``correct_lam``). Every random draw comes from the caller's
``numpy.random.Generator``, so a seeded run mixes the same way every time. The partner is
read before any pixel is changed (mixing in place must not blend an already-scaled partner).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Mix:
    """A drawn mix: ``lam`` of the original batch, ``1 - lam`` of ``batch[perm]``."""

    lam: float
    perm: torch.Tensor


def draw_mix(pixels: torch.Tensor, mixup_alpha: float, cutmix_alpha: float, prob: float, switch_prob: float, rng: np.random.Generator) -> Mix | None:
    """Mix ``pixels`` in place; None when this batch is not mixed (or both alphas are 0)."""
    if (mixup_alpha <= 0 and cutmix_alpha <= 0) or rng.random() >= prob:
        return None
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or rng.random() < switch_prob)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    perm = torch.arange(pixels.shape[0] - 1, -1, -1, device=pixels.device)
    partner = pixels.flip(0)  # a copy, taken before pixels change
    if not use_cutmix:
        pixels.mul_(lam).add_(partner, alpha=1.0 - lam)
        return Mix(lam, perm)
    height, width = pixels.shape[-2:]
    cut_h, cut_w = int(height * np.sqrt(1.0 - lam)), int(width * np.sqrt(1.0 - lam))
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    pixels[..., top:bottom, left:right] = partner[..., top:bottom, left:right]
    return Mix(1.0 - (bottom - top) * (right - left) / (height * width), perm)


def mix_targets(targets: torch.Tensor, present: torch.Tensor, mix: Mix | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend soft targets ``(B, ...)`` and their presence ``(B, ...)``: a mixed label needs both parts."""
    if mix is None:
        return targets, present
    mixed = targets * mix.lam + targets[mix.perm] * (1.0 - mix.lam)
    return mixed, present * present[mix.perm]
