"""Typed configuration of the model: the shared image/clip ViT encoder, the masked autoencoder, the task model.

Plain dataclasses (nothing heavy imported), so ``--help`` stays fast and a checkpoint's
``dataclasses.asdict`` record rebuilds the model (:func:`plumbing.recipes.config_from_dict`). Each reports
impossible settings through ``problems()`` (see :func:`plumbing.recipes.validate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

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


@dataclass
class MoAEConfig:
    """Mixture of Adapter Experts beside the MLP of the top blocks (S4D).

    Args:
        top_blocks: adapters in the top ``top_blocks`` blocks; 0 = no MoAE.
        num_experts: experts per block.
        top_k: experts each token is routed to.
        hidden_ratio: expert bottleneck width over the embedding width (S4D: 1/4).
        scale: multiplier of the adapters' output (AdaptFormer: 0.1).
        router_noise: noisy top-k routing in training (never in evaluation).
        balance_coef: coefficient of the load-balancing loss (S4D: 1e-3).
        dispatch: ``auto`` (``dense`` on CUDA, ``sparse`` elsewhere), ``sparse`` (each expert on its
            tokens only; one host read per layer) or ``dense`` (every expert on every token, no host
            synchronisation; same result).
    """

    top_blocks: int = 0
    num_experts: int = 8
    top_k: int = 2
    hidden_ratio: float = 0.25
    scale: float = 0.1
    router_noise: bool = True
    balance_coef: float = 1e-3
    dispatch: Literal["auto", "sparse", "dense"] = "auto"

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found: Problems = []
        if self.top_blocks < 0:
            found.append(("top_blocks", "must be >= 0 (0 = off)"))
        if self.num_experts < 1:
            found.append(("num_experts", "must be >= 1"))
        if not 1 <= self.top_k <= max(1, self.num_experts):
            found.append(("top_k", f"must be in [1, num_experts={self.num_experts}]"))
        if self.hidden_ratio <= 0:
            found.append(("hidden_ratio", "must be > 0"))
        if self.balance_coef < 0:
            found.append(("balance_coef", "must be >= 0"))
        return found


@dataclass
class TaskModelConfig:
    """The task model around the encoder: where the encoder starts from, MoAE, drop path and what is trained.

    Args:
        init: pretrained encoder: a checkpoint or release folder of ours, a public MAE / FMAE /
            VideoMAE / S4D file, or an MLflow URI (``models:/name@alias``, ``runs:/...``).
            Empty = random initialisation from ``encoder`` (ablations and tests).
        encoder: the architecture when ``init`` is empty (ignored otherwise).
        img_size: input size; 0 = the checkpoint's. Another size interpolates the position table.
        num_frames: clip frames; 0 = the checkpoint's. Another count interpolates the position table.
        drop_path_rate: stochastic depth at the last block.
        learn_pos_embed: train the position table, initialised from the fixed sin-cos one (MAE and
            FMAE fine-tuning, timm's ViT); false keeps it fixed (VideoMAE, S4D).
        freeze_backbone: train only adapters, the feature norm and the heads (parameter-efficient).
        moae: Mixture of Adapter Experts.
    """

    init: str = ""
    encoder: ViTConfig = field(default_factory=ViTConfig)
    img_size: int = 0
    num_frames: int = 0
    drop_path_rate: float = 0.1
    learn_pos_embed: bool = True
    freeze_backbone: bool = False
    moae: MoAEConfig = field(default_factory=MoAEConfig)

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found: Problems = []
        if self.img_size < 0 or self.num_frames < 0:
            found.append(("img_size", "img_size and num_frames must be >= 0 (0 = the checkpoint's)"))
        if not 0.0 <= self.drop_path_rate < 1.0:
            found.append(("drop_path_rate", "must be in [0, 1)"))
        if self.freeze_backbone and self.moae.top_blocks == 0:
            found.append(("freeze_backbone", "a frozen backbone needs adapters: set moae.top_blocks > 0"))
        return found
