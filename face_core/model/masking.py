"""Which tokens the MAE encoder sees: per-sample random masking and tube masking for clips.

A plan is computed on the device from uniform noise (no host sync). Following the reference
MAE: ``ids_shuffle = argsort(noise)``, ``ids_restore = argsort(ids_shuffle)``, the first
:func:`kept_count` shuffled tokens are kept (MAE keeps ``int(L * (1 - ratio))``, VideoMAE and
S4D remove ``int(ratio * L)``: the counts differ by one whenever ``ratio * L`` is not a whole
number in floating point, e.g. 9 or 10 of 100 tokens kept at 0.9), and the binary mask (1 = removed) is in the
original token order. Tube masking draws one spatial mask per sample and repeats it over every
temporal slice (VideoMAE), so a removed patch cannot be copied from a neighbouring frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch


@dataclass
class MaskPlan:
    """Indices of one masking draw.

    Args:
        ids_keep: (B, K) int64, token indices the encoder sees, in shuffled order.
        ids_restore: (B, L) int64, where each token sits in ``[kept..., removed...]``.
        mask: (B, L) float, 1 for a removed token, 0 for a kept one, in token order.
    """

    ids_keep: torch.Tensor
    ids_restore: torch.Tensor
    mask: torch.Tensor


Rounding = Literal["mae", "videomae"]


def kept_count(length: int, ratio: float, rounding: Rounding = "mae") -> int:
    """Tokens kept out of ``length`` at mask ratio ``ratio``: ``int(L * (1 - r))`` (MAE) or ``L - int(r * L)`` (VideoMAE, S4D)."""
    if rounding == "videomae":
        return length - int(ratio * length)
    return int(length * (1 - ratio))


def random_masking(noise: torch.Tensor, ratio: float, rounding: Rounding = "mae") -> MaskPlan:
    """Per-sample random masking from noise (B, L): the lowest-noise tokens are kept."""
    batch, length = noise.shape
    keep = kept_count(length, ratio, rounding)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(batch, length, device=noise.device)
    mask[:, :keep] = 0
    return MaskPlan(ids_shuffle[:, :keep], ids_restore, torch.gather(mask, 1, ids_restore))


def tube_masking(noise: torch.Tensor, ratio: float, frames: int, rounding: Rounding = "mae") -> MaskPlan:
    """Tube masking from spatial noise (B, h*w): one spatial mask repeated over ``frames`` slices.

    Tokens are numbered t-major (``t * h*w + s``), as the patch embedding flattens them; the
    count is rounded per slice (VideoMAE: ``int(r * h*w)`` removed per frame).
    """
    batch, spatial = noise.shape
    keep = kept_count(spatial, ratio, rounding)
    ids_shuffle_spatial = torch.argsort(noise, dim=1)
    offsets = (torch.arange(frames, device=noise.device) * spatial).view(1, frames, 1)
    kept = (ids_shuffle_spatial[:, None, :keep] + offsets).reshape(batch, -1)
    removed = (ids_shuffle_spatial[:, None, keep:] + offsets).reshape(batch, -1)
    ids_shuffle = torch.cat([kept, removed], dim=1)
    spatial_mask = torch.ones(batch, spatial, device=noise.device)
    spatial_mask[:, :keep] = 0
    spatial_mask = torch.gather(spatial_mask, 1, torch.argsort(ids_shuffle_spatial, dim=1))
    return MaskPlan(kept, torch.argsort(ids_shuffle, dim=1), spatial_mask.repeat(1, frames))


def keep_all(mask: torch.Tensor) -> MaskPlan:
    """A plan whose encoder sees every token while the loss still uses ``mask`` (for comparisons)."""
    ids = torch.arange(mask.shape[1], device=mask.device).expand(mask.shape[0], -1)
    return MaskPlan(ids, ids, mask)

