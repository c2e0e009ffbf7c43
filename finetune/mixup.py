"""Mixup and CutMix for images ``(B, C, H, W)`` and clips ``(B, C, T, H, W)``.

One draw per batch: with probability ``prob`` the batch is mixed with a permutation of itself,
either by mixup (pixel blend) or by cutmix (a box pasted over every frame), the choice made with
``switch_prob``. Labels are mixed by the returned (lambda, permutation) with :func:`mix_targets`,
where lambda is the area actually kept after the box is clipped to the picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Mix:
    """A drawn mix: ``lam`` of the original batch, ``1 - lam`` of ``batch[perm]``."""

    lam: float
    perm: torch.Tensor


def draw_mix(pixels: torch.Tensor, mixup_alpha: float, cutmix_alpha: float, prob: float, switch_prob: float, generator: torch.Generator) -> Mix | None:
    """Mix ``pixels`` in place; None when this batch is not mixed (or both alphas are 0)."""
    if (mixup_alpha <= 0 and cutmix_alpha <= 0) or torch.rand((), generator=generator).item() >= prob:
        return None
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or torch.rand((), generator=generator).item() < switch_prob)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = float(torch.distributions.Beta(alpha, alpha).sample().item()) if alpha > 0 else 1.0
    perm = torch.randperm(pixels.shape[0], generator=generator).to(pixels.device)
    if not use_cutmix:
        pixels.mul_(lam).add_(pixels[perm] * (1.0 - lam))
        return Mix(lam, perm)
    height, width = pixels.shape[-2:]
    cut_h, cut_w = int(height * math.sqrt(1.0 - lam)), int(width * math.sqrt(1.0 - lam))
    cy, cx = (int(torch.randint(n, (), generator=generator)) for n in (height, width))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    pixels[..., top:bottom, left:right] = pixels[perm][..., top:bottom, left:right]
    return Mix(1.0 - (bottom - top) * (right - left) / (height * width), perm)


def mix_targets(targets: torch.Tensor, present: torch.Tensor, mix: Mix | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend soft targets ``(B, ...)`` and their presence ``(B, ...)``: a mixed label needs both parts."""
    if mix is None:
        return targets, present
    mixed = targets * mix.lam + targets[mix.perm] * (1.0 - mix.lam)
    return mixed, present * present[mix.perm]
