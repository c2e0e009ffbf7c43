"""Masked autoencoder over images and clips (plain PyTorch): ``loss, pred, mask = model(x)``.

Notebook use::

    model = MaskedAutoencoder(MAEConfig(encoder=ViTConfig.preset("base")))
    loss, pred, mask = model(images)                  # images (B, 3, H, W), normalised
    loss, pred, mask = model(clips, noise=noise)      # clips (B, 3, T, H, W); noise fixes the mask
    picture = model.reconstruction_grid(images, pred, mask)   # uint8 (rows, cols, 3)

``pred`` is (B, L, tubelet*patch*patch*C): one vector per token in the layout of
:func:`face_core.model.patches.patchify`; ``mask`` is (B, L), 1 where the token was removed. Images
are static clips (S4D): their targets are the patch repeat-padded to ``tubelet`` frames, so one
``decoder_pred`` serves both modalities; with ``norm_pix_loss`` an image patch is normalised by
its own single-frame statistics before padding (the public MAE loss, exactly).
Masking: images always use random masking at ``image_mask_ratio``; clips use ``clip_masking``
(tube or random) at ``clip_mask_ratio``. ``noise`` has the shape :meth:`noise_shape` gives:
(B, L) for random masking, (B, h*w) for tube masking; lower noise = kept.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from face_core.model.config import MAEConfig
from face_core.model.masking import MaskPlan, random_masking, tube_masking
from face_core.model.patches import normalize_patches, normalize_patches_per_channel, patchify, pixel_patches, reconstruction_grid, unpatchify
from face_core.model.pos_embed import sincos_3d
from face_core.model.vit import LAYER_NORM_EPS, Block, VisionTransformer


class MaskedAutoencoder(nn.Module):
    """ViT encoder on visible tokens + a light decoder that fills in mask tokens."""

    def __init__(self, config: MAEConfig) -> None:
        super().__init__()
        self.config = config
        enc = config.encoder
        width = config.decoder_embed_dim
        self.encoder = VisionTransformer(enc)
        self.decoder_embed = nn.Linear(enc.embed_dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.register_buffer("decoder_pos_embed", sincos_3d(width, self.encoder.grid)[None])
        self.decoder_blocks = nn.ModuleList(
            Block(width, config.decoder_num_heads, enc.mlp_ratio, qkv_bias=True) for _ in range(config.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.decoder_pred = nn.Linear(width, enc.tubelet_size * enc.patch_size**2 * enc.in_chans)
        self._init_decoder()

    def _init_decoder(self) -> None:
        for module in [self.decoder_embed, self.decoder_norm, self.decoder_pred, *self.decoder_blocks.modules()]:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.mask_token, std=0.02)

    def noise_shape(self, x: torch.Tensor) -> tuple[int, int]:
        """Shape of the ``noise`` argument for input ``x``: (B, L) random, (B, h*w) tube masking."""
        t, h, w = self.encoder.grid
        if x.ndim == 5 and self.config.clip_masking == "tube":
            return x.shape[0], h * w
        frames = 1 if x.ndim == 4 else x.shape[2] // self.config.encoder.tubelet_size
        return x.shape[0], frames * h * w

    def mask_plan(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> MaskPlan:
        """Draw (or, given ``noise``, compute) the masking of input ``x``."""
        shape = self.noise_shape(x)
        if noise is None:
            noise = torch.rand(shape, device=x.device)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {shape} for input {tuple(x.shape)}, got {tuple(noise.shape)}")
        rounding = self.config.mask_count
        if x.ndim == 4:
            return random_masking(noise, self.config.image_mask_ratio, rounding)
        if self.config.clip_masking == "tube":
            return tube_masking(noise, self.config.clip_mask_ratio, x.shape[2] // self.config.encoder.tubelet_size, rounding)
        return random_masking(noise, self.config.clip_mask_ratio, rounding)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask, encode the visible tokens, decode all: ``(loss, pred (B, L, P), mask (B, L))``."""
        return self.forward_with_plan(x, self.mask_plan(x, noise))

    def forward_with_plan(self, x: torch.Tensor, plan: MaskPlan) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As :meth:`forward` with a given plan (``masking.keep_all`` encodes every token)."""
        tokens, _ = self.encoder.patchify_tokens(x)
        visible = torch.gather(tokens, 1, plan.ids_keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        pred = self.decode(self.encoder.encode_tokens(visible), plan.ids_restore)
        return self.loss(x, pred, plan.mask), pred, plan.mask

    def decode(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Encoder output (B, [1 +] K, D) -> per-token predictions (B, L, P) in token order."""
        prefix = self.encoder.num_prefix_tokens
        y = self.decoder_embed(latent)
        batch, length = ids_restore.shape
        fill = self.mask_token.to(y.dtype).expand(batch, length + prefix - y.shape[1], -1)
        patches = torch.cat([y[:, prefix:], fill], dim=1)
        patches = torch.gather(patches, 1, ids_restore.unsqueeze(-1).expand(-1, -1, y.shape[-1]))
        patches = patches + self.decoder_pos_embed[:, :length].to(y.dtype)
        y = torch.cat([y[:, :prefix], patches], dim=1)
        for block in self.decoder_blocks:
            y = block(y)
        return self.decoder_pred(self.decoder_norm(y))[:, prefix:]

    def targets(self, x: torch.Tensor) -> torch.Tensor:
        """Regression targets (B, L, P): patches (normalised with ``norm_pix_loss``), images repeat-padded.

        With ``norm_pix_per_channel`` (VideoMAE, S4D) the input is un-normalised to [0, 1], an
        image is repeat-padded to a tubelet first, and each channel of a patch is normalised on its own.
        """
        enc = self.config.encoder
        if self.config.norm_pix_per_channel:
            return normalize_patches_per_channel(pixel_patches(x, enc.patch_size, enc.tubelet_size), enc.in_chans)
        target = patchify(x.float(), enc.patch_size, enc.tubelet_size)
        if self.config.norm_pix_loss:
            target = normalize_patches(target)
        return target.repeat(1, 1, enc.tubelet_size) if x.ndim == 4 else target

    def loss(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error per patch, averaged over removed patches only (float32)."""
        per_patch = (pred.float() - self.targets(x)).pow(2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum()

    def unpatchify(self, pred: torch.Tensor, image: bool) -> torch.Tensor:
        """Predictions (B, L, P) -> images (B, C, H, W) (tubelet slots averaged) or clips (B, C, T, H, W).

        With ``norm_pix_loss`` these are normalised patches; :meth:`reconstruction_grid` maps them
        back to pixels with the input's patch (or, ``norm_pix_per_channel``, per-channel) statistics.
        """
        enc = self.config.encoder
        t, h, w = self.encoder.grid
        if image:
            pred = pred.reshape(*pred.shape[:2], enc.tubelet_size, -1).mean(dim=2)
            return unpatchify(pred, (1, h, w), enc.patch_size, 1).squeeze(2)
        return unpatchify(pred, (pred.shape[1] // (h * w), h, w), enc.patch_size, enc.tubelet_size)

    def reconstruction_grid(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, **options: object) -> np.ndarray:
        """Picture of masked input / reconstruction / original; see :func:`face_core.model.patches.reconstruction_grid`."""
        enc = self.config.encoder
        per_channel = self.config.norm_pix_per_channel
        return reconstruction_grid(x, pred, mask, enc.patch_size, enc.tubelet_size, self.config.norm_pix_loss, per_channel, **options)  # type: ignore[arg-type]
