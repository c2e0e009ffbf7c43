"""Typed configuration of the model: the shared image/clip ViT encoder and the masked autoencoder.

Plain dataclasses (nothing heavy imported), so ``--help`` stays fast and a checkpoint's
``dataclasses.asdict`` record rebuilds the model (:func:`config_from_dict`). Each reports
impossible settings through ``problems()`` (see :func:`plumbing.recipes.validate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from plumbing.recipes import Problems

VIT_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"embed_dim": 192, "depth": 12, "num_heads": 3},
    "small": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "base": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "large": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
    "huge": {"embed_dim": 1280, "depth": 32, "num_heads": 16},
}



@dataclass
class ViTConfig:
    """The shared image/clip ViT encoder (S4D: an image is a static clip).

    Args:
        img_size: input height and width in pixels; a multiple of ``patch_size``.
        patch_size: spatial side of a patch.
        num_frames: frames of a clip; a multiple of ``tubelet_size``. Images use one tubelet.
        tubelet_size: frames per temporal patch of the Conv3d patch embedding.
        in_chans: input channels.
        embed_dim: token width; a multiple of ``num_heads``.
        depth: number of transformer blocks.
        num_heads: attention heads per block.
        mlp_ratio: MLP hidden width over ``embed_dim``.
        qkv_bias: bias on the query/key/value projection.
        cls_token: prepend a learned CLS token (public MAE layout) or not (VideoMAE layout).
        drop_path_rate: stochastic depth at the last block (linear from 0).
        activation_checkpointing: recompute block activations in backward to save memory.
    """

    img_size: int = 224
    patch_size: int = 16
    num_frames: int = 16
    tubelet_size: int = 2
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    cls_token: bool = True
    drop_path_rate: float = 0.0
    activation_checkpointing: bool = False

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found: Problems = []
        for name in ("img_size", "patch_size", "num_frames", "tubelet_size", "in_chans", "embed_dim", "depth", "num_heads"):
            if getattr(self, name) < 1:
                found.append((name, "must be a positive integer"))
        if self.patch_size > 0 and self.img_size % self.patch_size:
            found.append(("img_size", f"must be divisible by patch_size={self.patch_size}"))
        if self.tubelet_size > 0 and self.num_frames % self.tubelet_size:
            found.append(("num_frames", f"must be divisible by tubelet_size={self.tubelet_size}"))
        if self.num_heads > 0 and self.embed_dim % self.num_heads:
            found.append(("embed_dim", f"must be divisible by num_heads={self.num_heads}"))
        if self.embed_dim % 4:
            found.append(("embed_dim", "must be a multiple of 4 (2-D sin-cos position table)"))
        if self.mlp_ratio <= 0:
            found.append(("mlp_ratio", "must be > 0"))
        if not 0.0 <= self.drop_path_rate < 1.0:
            found.append(("drop_path_rate", "must be in [0, 1)"))
        return found

    @classmethod
    def preset(cls, size: str, **overrides: object) -> "ViTConfig":
        """A standard size (``tiny``, ``small``, ``base``, ``large``, ``huge``) with overrides."""
        if size not in VIT_SIZES:
            raise KeyError(f"unknown ViT size {size!r}; expected one of {sorted(VIT_SIZES)}")
        return cls(**{**VIT_SIZES[size], **overrides})  # type: ignore[arg-type]


@dataclass
class MAEConfig:
    """Masked autoencoder: the encoder plus a light decoder and the masking policy.

    Args:
        encoder: the ViT encoder.
        decoder_embed_dim: decoder width.
        decoder_depth: decoder blocks.
        decoder_num_heads: decoder attention heads; divides ``decoder_embed_dim``.
        image_mask_ratio: fraction of image tokens removed, in (0, 1).
        clip_mask_ratio: fraction of clip tokens removed, in (0, 1).
        clip_masking: ``tube`` (one spatial mask repeated over time, VideoMAE) or ``random``.
        mask_count: how the count of removed tokens is rounded: ``mae`` keeps ``int(L * (1 - r))``
            tokens (MAE, FMAE); ``videomae`` removes ``int(r * L)`` (VideoMAE, S4D).
        norm_pix_loss: regress patches normalised by their own mean and variance.
        norm_pix_per_channel: with ``norm_pix_loss``, normalise each colour channel of a patch on
            its own, on pixels un-normalised to [0, 1], images repeat-padded to a tubelet first
            (VideoMAE, S4D); false = over all values of the patch (MAE, FMAE).
    """

    encoder: ViTConfig = field(default_factory=ViTConfig)
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    image_mask_ratio: float = 0.75
    clip_mask_ratio: float = 0.9
    clip_masking: Literal["tube", "random"] = "tube"
    mask_count: Literal["mae", "videomae"] = "mae"
    norm_pix_loss: bool = True
    norm_pix_per_channel: bool = False

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found: Problems = []
        for name in ("image_mask_ratio", "clip_mask_ratio"):
            if not 0.0 < getattr(self, name) < 1.0:
                found.append((name, "must be strictly between 0 and 1"))
        if min(self.decoder_embed_dim, self.decoder_depth, self.decoder_num_heads) < 1:
            found.append(("decoder_embed_dim", "decoder width, depth and heads must be positive"))
        elif self.decoder_embed_dim % self.decoder_num_heads:
            found.append(("decoder_embed_dim", f"must be divisible by decoder_num_heads={self.decoder_num_heads}"))
        if self.decoder_embed_dim % 4:
            found.append(("decoder_embed_dim", "must be a multiple of 4 (2-D sin-cos position table)"))
        if self.norm_pix_per_channel and not self.norm_pix_loss:
            found.append(("norm_pix_per_channel", "needs norm_pix_loss: true"))
        return found


def config_from_dict(values: dict[str, Any], kind: str, source: str = "config") -> MAEConfig | ViTConfig:
    """Rebuild an ``MAEConfig`` (kind ``mae``) or ``ViTConfig`` (kind ``encoder``) from ``asdict`` output."""
    try:
        if kind == "encoder":
            return ViTConfig(**values)
        values = dict(values)
        return MAEConfig(encoder=ViTConfig(**values.pop("encoder")), **values)
    except (TypeError, KeyError) as error:
        raise ValueError(f"{source}: the model config does not match this version's {kind} config: {error}") from None
