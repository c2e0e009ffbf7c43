"""A release as a Hugging Face transformers folder: ``ViTMAEModel`` (images) or ``VideoMAEModel`` (clips).

``python -m pretrain export RELEASE --to transformers --out DIR`` writes ``config.json`` and
``model.safetensors`` in the Hub layout of the public checkpoints (``facebook/vit-mae-*``,
``MCG-NJU/videomae-*``: ``encoder.layer.N.attention.attention.query``, VideoMAE's
``q_bias``/``v_bias``), which transformers 4 reads as is and transformers 5 converts on load.

Which class: the encoder of a release with a CLS token becomes ``ViTMAEModel`` (an image model:
our Conv3d kernel summed over time, exactly what an image sees, and the first temporal slice of
the position table with a zero CLS row; ``mask_ratio`` 0 so every patch is encoded). Without a CLS
token it becomes ``VideoMAEModel`` with ``use_mean_pooling=False`` (the final norm kept). VideoMAE
rebuilds its own fixed 1-D sinusoid table and cannot load another, so only encoders whose table
is that one (those imported from VideoMAE/S4D files) export to it; our key bias, which VideoMAE
has no slot for, changes no attention output (softmax ignores a per-query constant) and is left out.

The folder is staged under a temporary name, loaded back with ``from_pretrained`` by the
installed transformers and checked before it is renamed into place: no missing, unexpected or
mismatched tensor, and the same ``last_hidden_state`` as our encoder on a random input. A
release that would lose anything on the way is refused; ``out`` is whole or absent.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import PreTrainedModel, VideoMAEConfig, VideoMAEModel, ViTMAEConfig, ViTMAEModel

from face_core.model.checkpoint_formats import export_mae_state_dict
from face_core.model.pos_embed import videomae_sinusoid
from face_core.model.vit import LAYER_NORM_EPS, VisionTransformer
from face_core.release.pretrained import model_from_config, read_release
from plumbing.files import staged_folder
from plumbing.recipes import ConfigError

StateDict = dict[str, torch.Tensor]
WEIGHTS_FILE = "model.safetensors"
TOLERANCE = 1e-4  # outputs are layer-normed, O(1): float32 round-off of two attention kernels stays far below
BLOCK_NAMES = {
    "norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense",
}


def hub_blocks(state: StateDict, depth: int, qv_bias_only: bool) -> StateDict:
    """Our ``blocks.N.*`` tensors under the Hub names ``encoder.layer.N.*``.

    The fused ``qkv`` is split into ``query``/``key``/``value``; with ``qv_bias_only`` (VideoMAE)
    its bias goes to ``q_bias``/``v_bias`` and the key bias is left out.
    """
    out: StateDict = {}
    for i in range(depth):
        ours, hub = f"blocks.{i}.", f"encoder.layer.{i}."
        for name, theirs in BLOCK_NAMES.items():
            for kind in ("weight", "bias"):
                out[f"{hub}{theirs}.{kind}"] = state[f"{ours}{name}.{kind}"]
        attention = hub + "attention.attention."
        for part, weight in zip(("query", "key", "value"), state[ours + "attn.qkv.weight"].chunk(3)):
            out[f"{attention}{part}.weight"] = weight
        bias = state.get(ours + "attn.qkv.bias")
        if bias is None:
            continue
        query, _, value = bias.chunk(3)
        if qv_bias_only:
            out[attention + "q_bias"], out[attention + "v_bias"] = query, value
        else:
            for part, piece in zip(("query", "key", "value"), bias.chunk(3)):
                out[f"{attention}{part}.bias"] = piece
    return out


def vitmae_export(encoder: VisionTransformer) -> tuple[ViTMAEConfig, StateDict]:
    """The ``ViTMAEModel`` config and Hub-layout weights of an encoder with a CLS token."""
    public = export_mae_state_dict(encoder)  # the public MAE layout: Conv2d kernel, (1, 1 + N, D) table
    config = encoder.config
    hf_config = ViTMAEConfig(
        hidden_size=config.embed_dim, num_hidden_layers=config.depth, num_attention_heads=config.num_heads,
        intermediate_size=encoder.blocks[0].mlp.fc1.out_features, hidden_act="gelu", layer_norm_eps=LAYER_NORM_EPS,
        image_size=config.img_size, patch_size=config.patch_size, num_channels=config.in_chans, qkv_bias=config.qkv_bias,
        mask_ratio=0.0, architectures=["ViTMAEModel"],
    )
    weights = {
        "embeddings.cls_token": public["cls_token"],
        "embeddings.position_embeddings": public["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": public["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": public["patch_embed.proj.bias"],
        "layernorm.weight": public["norm.weight"],
        "layernorm.bias": public["norm.bias"],
        **hub_blocks(public, config.depth, qv_bias_only=False),
    }
    return hf_config, weights


def videomae_export(encoder: VisionTransformer, source: str) -> tuple[VideoMAEConfig, StateDict]:
    """The ``VideoMAEModel`` config and Hub-layout weights of an encoder without a CLS token."""
    config = encoder.config
    table = encoder.pos_embed[0].detach()
    if not torch.allclose(table, videomae_sinusoid(table.shape[0], table.shape[1]).to(table.dtype), atol=1e-6):
        raise ConfigError(
            f"{source}: this clip encoder's position table is not VideoMAE's fixed sinusoid, and VideoMAEModel "
            "rebuilds that table instead of loading one: its outputs would change. Encoders imported from "
            "VideoMAE/S4D files export to VideoMAEModel; encoders with a CLS token export to ViTMAEModel (images)"
        )
    state = {k: v.detach() for k, v in encoder.state_dict().items()}
    hf_config = VideoMAEConfig(
        hidden_size=config.embed_dim, num_hidden_layers=config.depth, num_attention_heads=config.num_heads,
        intermediate_size=encoder.blocks[0].mlp.fc1.out_features, hidden_act="gelu", layer_norm_eps=LAYER_NORM_EPS,
        image_size=config.img_size, patch_size=config.patch_size, num_channels=config.in_chans, num_frames=config.num_frames,
        tubelet_size=config.tubelet_size, qv_bias=config.qkv_bias, use_mean_pooling=False, architectures=["VideoMAEModel"],
    )
    weights = {
        "embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
        "layernorm.weight": state["norm.weight"],
        "layernorm.bias": state["norm.bias"],
        **hub_blocks(state, config.depth, qv_bias_only=True),
    }
    return hf_config, weights


def transformers_outputs(model: PreTrainedModel, pixels: torch.Tensor) -> torch.Tensor:
    """``last_hidden_state`` of an exported model for our input layout: images (B, C, H, W) in
    token order (ViTMAE's masking noise set to the identity order), clips (B, C, T, H, W)."""
    with torch.no_grad():
        if isinstance(model, ViTMAEModel):
            tokens = (pixels.shape[-2] // model.config.patch_size) * (pixels.shape[-1] // model.config.patch_size)
            noise = torch.arange(tokens, dtype=torch.float32).expand(pixels.shape[0], -1)
            return model(pixel_values=pixels, noise=noise).last_hidden_state
        return model(pixel_values=pixels.permute(0, 2, 1, 3, 4)).last_hidden_state


def check_export(folder: Path, encoder: VisionTransformer) -> None:
    """Load ``folder`` with the installed transformers and compare it with ``encoder``; ValueError on any loss."""
    cls = ViTMAEModel if encoder.cls_token is not None else VideoMAEModel
    model, info = cls.from_pretrained(str(folder), output_loading_info=True)
    lost = {key: info.get(key) for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs") if info.get(key)}
    if lost:
        raise ValueError(f"{folder}: {cls.__name__}.from_pretrained does not take every tensor as written: {lost}")
    config = encoder.config
    shape = (2, config.in_chans) + ((config.num_frames,) if cls is VideoMAEModel else ()) + (config.img_size, config.img_size)
    pixels = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = encoder.eval().forward_features(pixels)
    theirs = transformers_outputs(model.eval(), pixels)
    if theirs.shape != ours.shape or not torch.allclose(theirs, ours, atol=TOLERANCE, rtol=TOLERANCE):
        difference = (theirs - ours).abs().max().item() if theirs.shape == ours.shape else f"shapes {tuple(theirs.shape)} vs {tuple(ours.shape)}"
        raise ValueError(f"{folder}: {cls.__name__} loaded from the export does not reproduce our encoder (largest difference {difference})")


def export_transformers(release: str | Path, out: str | Path) -> Path:
    """Write the encoder of the release folder ``release`` as a transformers folder ``out``; returns it.

    ``ViTMAEModel`` for an encoder with a CLS token, ``VideoMAEModel`` without (see the module
    docstring); the folder is checked by loading it back before it appears.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out}: exists and is not empty; choose a new folder")
    loaded = read_release(release)
    model = model_from_config(loaded.config)
    model.load_state_dict(loaded.state_dict, strict=True)
    encoder = getattr(model, "encoder", model).eval()
    hf_config, weights = vitmae_export(encoder) if encoder.cls_token is not None else videomae_export(encoder, str(release))
    with staged_folder(out) as staging:
        save_file({k: v.contiguous() for k, v in weights.items()}, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        hf_config.save_pretrained(str(staging))
        check_export(staging, encoder)
    return out
