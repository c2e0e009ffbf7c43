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


def patch_statistics(patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each patch vector's mean and ``sqrt(unbiased var + 1e-6)`` (shapes ``(..., 1)``)."""
    return patches.mean(dim=-1, keepdim=True), (patches.var(dim=-1, keepdim=True) + 1.0e-6) ** 0.5


def channel_statistics(patches: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`patch_statistics` of each channel of a patch on its own (shapes ``(..., 1, channels)``).

    The last axis of a patch vector is ``(..., channel)``, as :func:`patchify` lays it out.
    """
    per_channel = patches.reshape(*patches.shape[:-1], -1, channels)
    return per_channel.mean(dim=-2, keepdim=True), (per_channel.var(dim=-2, keepdim=True) + 1.0e-6) ** 0.5


def normalize_patches(patches: torch.Tensor) -> torch.Tensor:
    """Each patch vector minus its mean over its unbiased std: ``(t - mean) / sqrt(var + 1e-6)``."""
    mean, scale = patch_statistics(patches)
    return (patches - mean) / scale


def normalize_patches_per_channel(patches: torch.Tensor, channels: int) -> torch.Tensor:
    """:func:`normalize_patches` for each channel of a patch on its own (VideoMAE's ``norm_pix_per_channel``)."""
    mean, scale = channel_statistics(patches, channels)
    return ((patches.reshape(*mean.shape[:-2], -1, channels) - mean) / scale).reshape(patches.shape)


def unnormalize(x: torch.Tensor, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> torch.Tensor:
    """Pixels normalised with ``mean``/``std`` back to [0, 1], images ``(B, C, H, W)`` or clips ``(B, C, T, H, W)``."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return x * torch.tensor(std, device=x.device, dtype=x.dtype).view(shape) + torch.tensor(mean, device=x.device, dtype=x.dtype).view(shape)


def pixel_patches(x: torch.Tensor, patch_size: int, tubelet_size: int) -> torch.Tensor:
    """Patches of ``x`` un-normalised to [0, 1] (ImageNet mean/std), an image repeat-padded to a tubelet first (VideoMAE's targets)."""
    clip = x.float().unsqueeze(2).repeat(1, 1, tubelet_size, 1, 1) if x.ndim == 4 else x.float()
    return patchify(unnormalize(clip), patch_size, tubelet_size)


def _pixels_per_channel(x: torch.Tensor, pred: torch.Tensor, patch_size: int, tubelet_size: int) -> torch.Tensor:
    """Per-channel normalised predictions (B, L, P) back to patches in ``x``'s normalisation, with the input patches' channel statistics."""
    channels = x.shape[1]
    mean, scale = channel_statistics(pixel_patches(x, patch_size, tubelet_size), channels)
    pixels = pred.reshape(*mean.shape[:-2], -1, channels) * scale + mean
    norm_mean = torch.tensor(IMAGENET_MEAN, device=x.device)
    norm_std = torch.tensor(IMAGENET_STD, device=x.device)
    return ((pixels - norm_mean) / norm_std).reshape(pred.shape)


def pixels_from_prediction(
    x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, patch_size: int, tubelet_size: int, norm_pix_loss: bool,
    norm_pix_per_channel: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked input, reconstruction) in the pixel space and shape of ``x``.

    The reconstruction shows predicted pixels on removed patches and the input on visible ones.
    With ``norm_pix_loss`` predictions are mapped back with each input patch's own mean and std
    (as the reference demo does); with ``norm_pix_per_channel`` too, with each channel's mean and
    std of the input patch in [0, 1] pixels, as :meth:`MaskedAutoencoder.targets` made them.
    Removed patches are zero in the masked input.
    """
    image = x.ndim == 4
    target = patchify(x, patch_size, tubelet_size)
    pred = pred.detach().float()
    if norm_pix_loss and norm_pix_per_channel:
        pred = _pixels_per_channel(x, pred, patch_size, tubelet_size)
    if image:
        pred = pred.reshape(*pred.shape[:2], tubelet_size, -1).mean(dim=2)
    if norm_pix_loss and not norm_pix_per_channel:
        mean, scale = patch_statistics(target)
        pred = pred * scale + mean
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
    norm_pix_per_channel: bool = False,
    max_samples: int = 4,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    as_uint8: bool = True,
) -> np.ndarray:
    """One picture (rows, cols, C) of masked input / reconstruction / original.

    Images: one row per sample, three panels side by side. Clips: three rows per sample
    (masked, reconstruction, original), one column per frame. ``x`` is the model input
    normalised with ``mean``/``std``; the picture is un-normalised and clipped to [0, 1], then
    returned as uint8 (``as_uint8``) or float32. ``norm_pix_loss``/``norm_pix_per_channel``: the
    targets the model predicts (:func:`pixels_from_prediction`).
    """
    x = x[:max_samples].detach().float()
    masked, recon = pixels_from_prediction(
        x, pred[:max_samples], mask[:max_samples], patch_size, tubelet_size, norm_pix_loss, norm_pix_per_channel
    )
    scale = torch.tensor(std, device=x.device).view(-1, 1, 1)
    shift = torch.tensor(mean, device=x.device).view(-1, 1, 1)
    rows = []
    for sample in zip(masked, recon, x):
        panels = [(p.unsqueeze(1) if p.ndim == 3 else p) for p in sample]  # (C, T, H, W)
        frames = [torch.cat(list(panel.unbind(1)), dim=2) for panel in panels]  # frames side by side
        rows.extend([torch.cat(frames, dim=2)] if x.ndim == 4 else frames)
    picture = (torch.cat(rows, dim=1) * scale + shift).clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return (picture * 255).round().astype(np.uint8) if as_uint8 else picture.astype(np.float32)
