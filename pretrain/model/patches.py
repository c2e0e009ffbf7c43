"""Pixels <-> per-token patch vectors, and reconstruction pictures for logging and notebooks.

A token's vector is laid out ``(frame in tubelet, row, column, channel)``, as VideoMAE's
decoder predicts it. An image is a clip of its frame repeated ``tubelet`` times (S4D), so its
regression target is the single-frame patch repeat-padded to ``tubelet`` frames: one
``decoder_pred`` serves both modalities. When turning an image prediction back into pixels the
``tubelet`` frame slots are averaged.
"""

from __future__ import annotations

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def patchify(x: torch.Tensor, patch_size: int, tubelet_size: int) -> torch.Tensor:
    """Images (B, C, H, W) -> (B, h*w, p*p*C); clips (B, C, T, H, W) -> (B, t*h*w, tubelet*p*p*C)."""
    if x.ndim == 4:
        x, tubelet_size = x.unsqueeze(2), 1
    batch, channels, frames, height, width = x.shape
    t, h, w = frames // tubelet_size, height // patch_size, width // patch_size
    x = x.reshape(batch, channels, t, tubelet_size, h, patch_size, w, patch_size)
    x = torch.einsum("bctuhpwq->bthwupqc", x)
    return x.reshape(batch, t * h * w, tubelet_size * patch_size * patch_size * channels)


def unpatchify(patches: torch.Tensor, grid: tuple[int, int, int], patch_size: int, tubelet_size: int) -> torch.Tensor:
    """Inverse of :func:`patchify` for clips: (B, t*h*w, tubelet*p*p*C) -> (B, C, t*tubelet, h*p, w*p)."""
    t, h, w = grid
    batch = patches.shape[0]
    channels = patches.shape[-1] // (tubelet_size * patch_size * patch_size)
    x = patches.reshape(batch, t, h, w, tubelet_size, patch_size, patch_size, channels)
    x = torch.einsum("bthwupqc->bctuhpwq", x)
    return x.reshape(batch, channels, t * tubelet_size, h * patch_size, w * patch_size)


def normalize_patches(patches: torch.Tensor) -> torch.Tensor:
    """Each patch vector minus its mean over its unbiased std: ``(t - mean) / sqrt(var + 1e-6)``."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + 1.0e-6) ** 0.5


def normalize_patches_per_channel(patches: torch.Tensor, channels: int) -> torch.Tensor:
    """:func:`normalize_patches` for each channel of a patch on its own (VideoMAE's ``norm_pix_per_channel``).

    The last axis of a patch vector is ``(..., channel)``, as :func:`patchify` lays it out.
    """
    per_channel = patches.reshape(*patches.shape[:-1], -1, channels)
    mean = per_channel.mean(dim=-2, keepdim=True)
    var = per_channel.var(dim=-2, keepdim=True)
    return ((per_channel - mean) / (var + 1.0e-6) ** 0.5).reshape(patches.shape)


def unnormalize(x: torch.Tensor, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> torch.Tensor:
    """Pixels normalised with ``mean``/``std`` back to [0, 1], images ``(B, C, H, W)`` or clips ``(B, C, T, H, W)``."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return x * torch.tensor(std, device=x.device, dtype=x.dtype).view(shape) + torch.tensor(mean, device=x.device, dtype=x.dtype).view(shape)


def pixels_from_prediction(
    x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, patch_size: int, tubelet_size: int, norm_pix_loss: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked input, reconstruction) in the pixel space and shape of ``x``.

    The reconstruction shows predicted pixels on removed patches and the input on visible ones;
    with ``norm_pix_loss`` predictions are mapped back with each input patch's own mean and std
    (as the reference demo does). Removed patches are zero in the masked input.
    """
    image = x.ndim == 4
    target = patchify(x, patch_size, tubelet_size)
    pred = pred.detach().float()
    if image:
        pred = pred.reshape(*pred.shape[:2], tubelet_size, -1).mean(dim=2)
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        pred = pred * (target.var(dim=-1, keepdim=True) + 1.0e-6) ** 0.5 + mean
    removed = mask.unsqueeze(-1).to(target.dtype)
    clip = x if not image else x.unsqueeze(2)
    grid = (clip.shape[2] // (1 if image else tubelet_size), clip.shape[3] // patch_size, clip.shape[4] // patch_size)
    step = 1 if image else tubelet_size
    masked = unpatchify(target * (1 - removed), grid, patch_size, step)
    recon = unpatchify(target * (1 - removed) + pred * removed, grid, patch_size, step)
    if image:
        masked, recon = masked.squeeze(2), recon.squeeze(2)
    return masked, recon


def reconstruction_grid(
    x: torch.Tensor,
    pred: torch.Tensor,
    mask: torch.Tensor,
    patch_size: int,
    tubelet_size: int,
    norm_pix_loss: bool,
    max_samples: int = 4,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    as_uint8: bool = True,
) -> np.ndarray:
    """One picture (rows, cols, C) of masked input / reconstruction / original.

    Images: one row per sample, three panels side by side. Clips: three rows per sample
    (masked, reconstruction, original), one column per frame. ``x`` is the model input
    normalised with ``mean``/``std``; the picture is un-normalised and clipped to [0, 1], then
    returned as uint8 (``as_uint8``) or float32.
    """
    x = x[:max_samples].detach().float()
    masked, recon = pixels_from_prediction(x, pred[:max_samples], mask[:max_samples], patch_size, tubelet_size, norm_pix_loss)
    scale = torch.tensor(std, device=x.device).view(-1, 1, 1)
    shift = torch.tensor(mean, device=x.device).view(-1, 1, 1)
    rows = []
    for sample in zip(masked, recon, x):
        panels = [(p.unsqueeze(1) if p.ndim == 3 else p) for p in sample]  # (C, T, H, W)
        frames = [torch.cat(list(panel.unbind(1)), dim=2) for panel in panels]  # frames side by side
        rows.extend([torch.cat(frames, dim=2)] if x.ndim == 4 else frames)
    picture = (torch.cat(rows, dim=1) * scale + shift).clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return (picture * 255).round().astype(np.uint8) if as_uint8 else picture.astype(np.float32)
