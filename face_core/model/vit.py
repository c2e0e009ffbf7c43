"""The shared image/clip Vision Transformer encoder (plain PyTorch, no trainer inside).

One Conv3d tubelet patch embedding serves both modalities (S4D): a clip ``(B, C, T, H, W)`` is
cut into ``(tubelet, patch, patch)`` tubes; an image ``(B, C, H, W)`` is a clip of its frame
repeated ``tubelet`` times, which is computed as a Conv2d with the kernel summed over time (the
same numbers, ``tubelet`` times cheaper). Position embeddings are a fixed table over the
``(T / tubelet, H / patch, W / patch)`` grid held as a buffer (see :mod:`face_core.model.pos_embed`);
an image uses the first temporal slice. An optional CLS token is prepended after positions
are added, with its own zero position. The transformer blocks are timm's (:class:`Block`), so
state dicts use timm's and MAE's parameter names.
"""

from __future__ import annotations

from functools import partial

import timm.models.vision_transformer as timm_vit
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from face_core.model.config import ViTConfig
from face_core.model.pos_embed import Grid, sincos_3d

LAYER_NORM_EPS = 1e-6


class Block(timm_vit.Block):
    """timm's pre-norm transformer block (its ``Attention``, ``Mlp``, ``DropPath``) with a slot for a
    branch parallel to the MLP.

    Parameter names are timm's and MAE's (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``,
    ``mlp.fc1``, ``mlp.fc2``); attention runs through ``F.scaled_dot_product_attention`` (timm's
    ``fused_attn``, on unless ``TIMM_FUSED_ATTN=0``). ``parallel_branch`` (None by default)
    receives the same normed input as the MLP and its output is added beside it:
    ``x + drop_path(mlp(h) + parallel_branch(h))``, ``h = norm2(x)`` (fine-tuning plugs its
    Mixture of Adapter Experts in here).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path: float = 0.0) -> None:
        super().__init__(dim, num_heads, mlp_ratio, qkv_bias=qkv_bias, drop_path=drop_path, norm_layer=partial(nn.LayerNorm, eps=LAYER_NORM_EPS))
        self.parallel_branch: nn.Module | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """(B, N, D) -> (B, N, D)."""
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        h = self.norm2(x)
        branch = self.mlp(h)
        if self.parallel_branch is not None:
            branch = branch + self.parallel_branch(h)
        return x + self.drop_path2(self.ls2(branch))


class TubeletEmbed(nn.Module):
    """Conv3d with kernel = stride = (tubelet, patch, patch); images go through the same weights.

    Kernel and stride being equal, the convolution is one matrix product over non-overlapping
    tubes, which is how it is computed (faster than the convolution kernels on CPU, the same on
    GPU). An image repeated over the tubelet frames equals one frame through the kernel summed
    over time.
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        size = (config.tubelet_size, config.patch_size, config.patch_size)
        self.proj = nn.Conv3d(config.in_chans, config.embed_dim, kernel_size=size, stride=size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Grid]:
        """(B, C, H, W) or (B, C, T, H, W) -> tokens (B, t*h*w, D) and their grid (t, h, w)."""
        weight = self.proj.weight  # (D, C, tubelet, p, p)
        tubelet, patch = weight.shape[2], weight.shape[3]
        if x.ndim == 4:
            x, tubelet, weight = x.unsqueeze(2), 1, weight.sum(dim=2, keepdim=True)
        elif x.ndim != 5:
            raise ValueError(f"expected images (B, C, H, W) or clips (B, C, T, H, W), got shape {tuple(x.shape)}")
        batch, channels, frames, height, width = x.shape
        grid = (frames // tubelet, height // patch, width // patch)
        if frames % tubelet or height % patch or width % patch:
            raise ValueError(f"input {tuple(x.shape)} is not divisible into ({tubelet}, {patch}, {patch}) tubes")
        tubes = x.reshape(batch, channels, grid[0], tubelet, grid[1], patch, grid[2], patch)
        tubes = tubes.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(batch, grid[0] * grid[1] * grid[2], -1)
        return F.linear(tubes, weight.reshape(weight.shape[0], -1), self.proj.bias), grid


class VisionTransformer(nn.Module):
    """ViT encoder over images and clips; see the module docstring for the token layout."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        self.grid: Grid = (
            config.num_frames // config.tubelet_size,
            config.img_size // config.patch_size,
            config.img_size // config.patch_size,
        )
        self.patch_embed = TubeletEmbed(config)
        self.register_buffer("pos_embed", sincos_3d(config.embed_dim, self.grid)[None])
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim)) if config.cls_token else None
        rates = [config.drop_path_rate * i / max(config.depth - 1, 1) for i in range(config.depth)]  # linear from 0
        self.blocks = nn.ModuleList(
            Block(config.embed_dim, config.num_heads, config.mlp_ratio, config.qkv_bias, rate) for rate in rates
        )
        self.norm = nn.LayerNorm(config.embed_dim, eps=LAYER_NORM_EPS)
        self.init_weights()

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patch tokens in the output: 1 with a CLS token, else 0."""
        return 0 if self.cls_token is None else 1

    def init_weights(self) -> None:
        """MAE initialisation: xavier-uniform linears and patch kernel, N(0, 0.02) CLS, unit norms."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        kernel = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(kernel.view(kernel.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)

    def patchify_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, Grid]:
        """Patch tokens with positions added, (B, N, D), and their grid (t, h, w).

        Images use the first temporal slice of the table; a clip with fewer frames than
        ``num_frames`` uses the first slices. Other spatial sizes are an error: build or load the
        model with that ``img_size`` (loading interpolates tables).
        """
        tokens, grid = self.patch_embed(x)
        if grid[1:] != self.grid[1:] or grid[0] > self.grid[0]:
            raise ValueError(
                f"input {tuple(x.shape)} gives a token grid {grid}, but this model was built for "
                f"img_size={self.config.img_size}, num_frames={self.config.num_frames} (grid {self.grid}); "
                "build or load the model with the input's img_size/num_frames"
            )
        count = grid[0] * grid[1] * grid[2]
        return tokens + self.pos_embed[:, :count].to(tokens.dtype), grid

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Run embedded tokens (B, N, D) through CLS, blocks and the final norm: (B, [1 +] N, D)."""
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens], dim=1)
        recompute = self.config.activation_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            tokens = checkpoint(block, tokens, use_reentrant=False) if recompute else block(tokens)
        return self.norm(tokens)

    def forward_features(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """Encode images or clips: (B, [1 +] N_kept, D) tokens after the final norm.

        ``ids_keep`` (B, N_kept), int64: indices of the patch tokens to keep (masked encoding);
        None keeps all tokens.
        """
        tokens, _ = self.patchify_tokens(x)
        if ids_keep is not None:
            tokens = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        return self.encode_tokens(tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, D): the mean of the patch tokens after the final norm."""
        return self.forward_features(x)[:, self.num_prefix_tokens :].mean(dim=1)
