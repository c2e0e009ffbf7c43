"""Fixed sin-cos position tables for the (t, h, w) token grid, and resizing of loaded tables.

Our table is the public MAE 2-D table plus a temporal term that vanishes at t = 0::

    pos[t, i, j] = mae_2d(i, j) + (sincos_1d(t) - sincos_1d(0))

so the first temporal slice (the one an image uses) is exactly the 2-D table of
facebookresearch/mae: an image-only model of ours has the public layout's positions, and a
public image checkpoint imported into a clip model keeps its image behaviour unchanged.
Tables are flattened t-major, then row, then column: the order of ``Conv3d(...).flatten(2)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed

Grid = tuple[int, int, int]


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """MAE's 1-D table: ``[sin(p * w_k), cos(p * w_k)]`` with ``w_k = 10000^(-k / (dim/2))``; (M, dim)."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding width must be even, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.to(torch.float64).reshape(-1, 1) * omega
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_2d(dim: int, height: int, width: int) -> torch.Tensor:
    """The public MAE 2-D table, (height * width, dim): first half encodes the column, second the row."""
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding width must be a multiple of 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1)


def add_time(spatial: torch.Tensor, frames: int) -> torch.Tensor:
    """A (h*w, D) spatial table extended to (frames*h*w, D) with our temporal term (zero at t = 0).

    The first slice is ``spatial`` itself, bit for bit.
    """
    dim = spatial.shape[1]
    temporal = sincos_1d(dim, torch.arange(frames))
    temporal = (temporal - temporal[:1]).to(spatial.dtype)
    return (temporal[:, None, :] + spatial[None, :, :]).reshape(frames * spatial.shape[0], dim)


def sincos_3d(dim: int, grid: Grid) -> torch.Tensor:
    """Our clip table, (t * h * w, dim), float32: the 2-D MAE table plus a temporal term zero at t = 0."""
    frames, height, width = grid
    return add_time(sincos_2d(dim, height, width).float(), frames)


def videomae_sinusoid(num_positions: int, dim: int) -> torch.Tensor:
    """VideoMAE's fixed table over flattened positions, (num_positions, dim), float32.

    Angle ``p / 10000^(2 * (j // 2) / dim)``; even channels take the sine, odd ones the cosine
    (interleaved, unlike MAE). VideoMAE rebuilds it for every grid instead of storing it.
    """
    j = torch.arange(dim, dtype=torch.float64)
    angles = torch.arange(num_positions, dtype=torch.float64)[:, None] / torch.pow(10000.0, 2 * (j // 2) / dim)
    table = torch.empty_like(angles)
    table[:, 0::2] = angles[:, 0::2].sin()
    table[:, 1::2] = angles[:, 1::2].cos()
    return table.float()


def resize_table(table: torch.Tensor, old: Grid, new: Grid) -> torch.Tensor:
    """Interpolate a (t*h*w, D) table from grid ``old`` to grid ``new``.

    Spatial resizing is timm's ``resample_abs_pos_embed`` per temporal slice, bicubic without
    antialiasing (as the public MAE fine-tuning does); the temporal axis is resized linearly,
    and a single temporal slice (a 2-D table) is extended over time with the temporal term of
    :func:`add_time`.
    """
    if math.prod(old) != table.shape[0]:
        raise ValueError(f"position table has {table.shape[0]} rows, grid {old} needs {math.prod(old)}")
    if old == new:
        return table
    dim = table.shape[1]
    slices = table.reshape(old[0], old[1] * old[2], dim)
    if old[1:] != new[1:]:
        slices = torch.cat([
            resample_abs_pos_embed(one[None], list(new[1:]), list(old[1:]), num_prefix_tokens=0, antialias=False) for one in slices
        ])
    if old[0] != new[0]:
        if old[0] == 1:
            return add_time(slices[0], new[0]).contiguous()
        flat = slices.permute(2, 1, 0).to(torch.float32)  # (D, h*w, t)
        flat = F.interpolate(flat, size=new[0], mode="linear", align_corners=True)
        slices = flat.permute(2, 1, 0).to(table.dtype)
    return slices.reshape(math.prod(new), dim).contiguous()
