"""Matmul FLOPs of an MAE training step and the peak of the accelerator, for TFLOP/s and MFU.

Counts 2 FLOPs per multiply-accumulate of every linear layer, the patch embedding and the two
attention matmuls (``q k^T`` and ``attn v``); norms, softmax and elementwise work are left out
(a few percent), as in the usual MFU accounting. Backward costs twice the forward, so a
training step is 3x the forward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pretrain.config import MAEConfig
from pretrain.masking import kept_count

if TYPE_CHECKING:
    import torch

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' datasheets, in FLOP/s; the first
# name fragment found in the device name wins (so "GH200" is tested before "H200").
DENSE_BF16_PEAKS: list[tuple[str, float]] = [
    ("GH200", 989e12),
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10", 125e12),
    ("V100", 125e12),  # fp16: V100 has no bf16
]


def block_flops(tokens: int, width: int, mlp_ratio: float) -> float:
    """Forward FLOPs of one transformer block on ``tokens`` tokens of ``width``."""
    hidden = int(width * mlp_ratio)
    linears = 2 * tokens * width * (3 * width + width + 2 * hidden)
    attention = 2 * 2 * tokens * tokens * width
    return float(linears + attention)


def mae_forward_flops(config: MAEConfig, modality: str, encode_all: bool = False) -> float:
    """Forward FLOPs of one sample: patch embedding, encoder on kept tokens, decoder on all.

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
        kept = frames * kept_count(spatial, ratio)
    else:
        kept = kept_count(tokens, ratio)
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


def peak_flops(device: "torch.device | str") -> float | None:
    """Dense bf16 peak FLOP/s of a CUDA device from its name; None for CPU or an unknown GPU."""
    import torch

    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for fragment, peak in DENSE_BF16_PEAKS if fragment in name), None)
