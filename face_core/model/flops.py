"""Matmul FLOPs of an MAE training step and of the encoder alone, for TFLOP/s and MFU.

Counts 2 FLOPs per multiply-accumulate of every linear layer, the patch embedding and the two
attention matmuls (``q k^T`` and ``attn v``); norms, softmax and elementwise work are left out
(a few percent), as in the usual MFU accounting. Backward costs twice the forward, so a
training step is 3x the forward.
"""

from __future__ import annotations

from face_core.model.config import MAEConfig, ViTConfig
from face_core.model.masking import kept_count


def block_flops(tokens: int, width: int, mlp_ratio: float) -> float:
    """Forward FLOPs of one transformer block on ``tokens`` tokens of ``width``."""
    hidden = int(width * mlp_ratio)
    linears = 2 * tokens * width * (3 * width + width + 2 * hidden)
    attention = 2 * 2 * tokens * tokens * width
    return float(linears + attention)


def mae_forward_flops(config: MAEConfig, modality: str, encode_all: bool = False) -> float:
    """Forward FLOPs of one sample: patch embedding, encoder on kept tokens, decoder on all.

    The kept tokens are counted as the model keeps them (``config.mask_count``: MAE's or VideoMAE's rounding).

    ``modality`` is ``image`` or ``clip``; ``encode_all`` counts an encoder that sees every token
    (the baseline the MAE speed-up is measured against).
    """
    enc = config.encoder
    spatial = (enc.img_size // enc.patch_size) ** 2
    if modality == "image":
        frames, kernel_frames, ratio = 1, 1, config.image_mask_ratio
    elif modality == "clip":
        frames, kernel_frames, ratio = enc.num_frames // enc.tubelet_size, enc.tubelet_size, config.clip_mask_ratio
    else:
        raise ValueError(f"modality must be 'image' or 'clip', got {modality!r}")
    tokens = frames * spatial
    if encode_all:
        kept = tokens
    elif modality == "clip" and config.clip_masking == "tube":
        kept = frames * kept_count(spatial, ratio, config.mask_count)
    else:
        kept = kept_count(tokens, ratio, config.mask_count)
    prefix = 1 if enc.cls_token else 0
    width, dec = enc.embed_dim, config.decoder_embed_dim
    out = enc.tubelet_size * enc.patch_size**2 * enc.in_chans
    flops = 2.0 * tokens * width * enc.in_chans * kernel_frames * enc.patch_size**2
    flops += enc.depth * block_flops(kept + prefix, width, enc.mlp_ratio)
    flops += 2.0 * (kept + prefix) * width * dec
    flops += config.decoder_depth * block_flops(tokens + prefix, dec, enc.mlp_ratio)
    flops += 2.0 * (tokens + prefix) * dec * out
    return flops


def mae_train_flops_per_sample(config: MAEConfig, modality: str, encode_all: bool = False) -> float:
    """Forward + backward FLOPs of one sample in a training step (3x the forward)."""
    return 3.0 * mae_forward_flops(config, modality, encode_all)


def tokens_per_sample(encoder: ViTConfig, modality: str) -> int:
    """Patch tokens of one input sample (before masking): ``h*w`` for an image, ``t*h*w`` for a clip."""
    spatial = (encoder.img_size // encoder.patch_size) ** 2
    if modality == "image":
        return spatial
    if modality == "clip":
        return spatial * encoder.num_frames // encoder.tubelet_size
    raise ValueError(f"modality must be 'image' or 'clip', got {modality!r}")


def encoder_forward_flops(encoder: ViTConfig, modality: str) -> float:
    """Forward FLOPs of the encoder alone on every token of one sample (fine-tuning, inference)."""
    tokens = tokens_per_sample(encoder, modality)
    kernel_frames = 1 if modality == "image" else encoder.tubelet_size
    prefix = 1 if encoder.cls_token else 0
    flops = 2.0 * tokens * encoder.embed_dim * encoder.in_chans * kernel_frames * encoder.patch_size**2
    return flops + encoder.depth * block_flops(tokens + prefix, encoder.embed_dim, encoder.mlp_ratio)
