"""Import and export of the public checkpoint layouts people already hold.

Two layouts are read, both as safe files only (``torch.load(weights_only=True)`` or safetensors):

* public MAE (facebookresearch/mae, FMAE, FMAE-IAT): ``cls_token``, ``pos_embed`` (with a CLS
  row), ``patch_embed.proj`` (a Conv2d), ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``,
  ``norm``; with the decoder: ``mask_token``, ``decoder_embed``, ``decoder_pos_embed``,
  ``decoder_blocks.N.*``, ``decoder_norm``, ``decoder_pred``; fine-tuned files add ``fc_norm``
  and ``head``.
* VideoMAE / S4D: ``patch_embed.proj`` is a Conv3d, no CLS token, attention biases stored as
  ``q_bias``/``v_bias`` beside a bias-free ``qkv`` (the key bias is zero), fixed 1-D sinusoid
  tables that are not stored; pretraining files prefix ``encoder.``/``decoder.`` and add
  ``encoder_to_decoder`` (no bias) and ``mask_token``; ``decoder.head`` predicts the pixels.
  S4D files are this layout at 160 px; its fine-tuned files add Mixture-of-Adapter-Experts
  weights beside the MLP of the upper blocks (``blocks.N.moe_layer.{router,experts}.*``) and
  separate ``head.image``/``head.video`` classifiers.

Mapping a Conv2d kernel ``w`` to our Conv3d: every one of the ``tubelet`` time slots holds
``w / tubelet``, so an image (a clip of its frame repeated) gives exactly the Conv2d output, and a
clip gets the average-over-time inflation. ``decoder_pred`` rows are repeated per time slot (an
image target is its patch repeat-padded). Export undoes both (exact for power-of-two tubelets).
Position tables: a loaded 2-D table is resized bicubically to the new grid and extended over time
with the temporal term of :func:`face_core.model.pos_embed.add_time`; VideoMAE's fixed table is rebuilt
for the new grid, a learned one is interpolated.

Nothing of a file is dropped silently: tensors the model does not hold come back as ``extras``,
and block tensors our blocks cannot run (S4D's MoAE adapters, any unknown part) are also
reported with a warning, since the model computes those blocks without them. An S4D file built
for another size than its 160 px is warned about too.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from face_core.model.config import VIT_SIZES, MAEConfig, ViTConfig
from face_core.model.mae import MaskedAutoencoder
from face_core.model.pos_embed import resize_table, videomae_sinusoid
from face_core.model.vit import VisionTransformer

StateDict = dict[str, torch.Tensor]
MAE_REQUIRED = ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight")
VIDEOMAE_REQUIRED = ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight")
KNOWN_PREFIXES = {"mae": ("blocks.", "decoder_blocks."), "videomae": ("encoder.", "decoder.", "blocks.")}
KNOWN_KEYS = {
    "mae": {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias",
            "mask_token", "decoder_embed.weight", "decoder_embed.bias", "decoder_pos_embed", "decoder_norm.weight",
            "decoder_norm.bias", "decoder_pred.weight", "decoder_pred.bias"},
    "videomae": {"patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias", "pos_embed",
                 "encoder_to_decoder.weight", "mask_token"},
}
BLOCK_PARTS = ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
BLOCK_KEYS = {f"{part}.{kind}" for part in BLOCK_PARTS for kind in ("weight", "bias")} | {"attn.q_bias", "attn.v_bias"}
BLOCK_KEY = re.compile(r"(?:^|[._])blocks\.(\d+)\.(.+)$")  # blocks.N.*, encoder.blocks.N.*, decoder_blocks.N.*
S4D_ADAPTER = ".moe_layer."
S4D_HEADS = ("head.image.weight", "head.video.weight")
S4D_IMG_SIZE = 160


@dataclass
class ImportedCheckpoint:
    """A model built from a foreign file.

    Args:
        model: a ``MaskedAutoencoder`` when the file had a decoder, else a ``VisionTransformer``.
        layout: ``mae`` or ``videomae``.
        extras: tensors of the file the model does not hold (a fine-tuned ``fc_norm``/``head``,
            an identity head, ...).
        notes: what was adapted (interpolated tables, a missing final norm left at identity) and
            what was warned about (block tensors left out, an S4D file at another size).
    """

    model: torch.nn.Module
    layout: str
    extras: StateDict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def load_checkpoint_file(path: str | Path) -> dict:
    """The object stored in a ``.safetensors`` or torch file, loaded without running any code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickles of arbitrary objects are refused on purpose
        raise ValueError(
            f"{path}: cannot be read with torch.load(weights_only=True) ({error}); only plain tensor "
            "files are loaded, never pickled code: re-save it as a state dict"
        ) from error


def unwrap_state_dict(stored: dict, source: str = "checkpoint") -> StateDict:
    """The tensor dict inside a checkpoint: under ``model``, ``state_dict`` or ``module``, or itself."""
    for key in ("model", "state_dict", "module"):
        if isinstance(stored.get(key), dict):
            stored = stored[key]
            break
    state = {k: v for k, v in stored.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ValueError(f"{source}: no tensors found; expected a state dict (optionally under 'model'), found keys {sorted(stored)[:20]}")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def detect_layout(state: StateDict, source: str = "checkpoint") -> str:
    """``mae`` or ``videomae``; an error naming the expected and found keys otherwise."""
    if all(k in state for k in MAE_REQUIRED) and state["patch_embed.proj.weight"].ndim == 4:
        return "mae"
    prefix = "encoder." if "encoder.patch_embed.proj.weight" in state else ""
    if all(prefix + k in state for k in VIDEOMAE_REQUIRED) and state[prefix + "patch_embed.proj.weight"].ndim == 5:
        return "videomae"
    raise ValueError(
        f"{source}: not a layout we can read. Expected the public MAE keys {list(MAE_REQUIRED)} or the "
        f"VideoMAE/S4D keys {list(VIDEOMAE_REQUIRED)} (optionally under 'encoder.'); found {sorted(state)[:24]}"
        + (" ..." if len(state) > 24 else "")
    )


def _count_blocks(state: StateDict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


def is_s4d(state: StateDict) -> bool:
    """True for S4D's fine-tuned files: MoAE adapter tensors (``blocks.N.moe_layer.*``) or separate image/video heads.

    S4D's pretraining files hold exactly VideoMAE's tensors and cannot be told apart from them.
    """
    return any(S4D_ADAPTER in key for key in state) or any(key in state for key in S4D_HEADS)


def _heads(width: int, known: dict[int, int], head_dim: int = 64) -> int:
    standard = {size["embed_dim"]: size["num_heads"] for size in VIT_SIZES.values()}
    return known.get(width) or standard.get(width) or max(1, width // head_dim)


def infer_config(state: StateDict, layout: str) -> MAEConfig:
    """The configuration a file was trained with, as far as its tensors tell.

    Head counts are not stored: the standard ones for the width are assumed (MAE decoders use
    heads of 32 channels, VideoMAE ones 3/6/8/8 heads at 192/384/512/640). VideoMAE files do not
    store the image size or frame count either: 224 px and 16 frames are assumed, 160 px for a
    file :func:`is_s4d` recognises (S4D's size).
    """
    enc = "encoder." if layout == "videomae" and "encoder.patch_embed.proj.weight" in state else ""
    kernel = state[enc + "patch_embed.proj.weight"]
    width, channels, patch = kernel.shape[0], kernel.shape[1], kernel.shape[-1]
    hidden = state[enc + "blocks.0.mlp.fc1.weight"].shape[0]
    encoder = ViTConfig(
        patch_size=patch,
        in_chans=channels,
        embed_dim=width,
        depth=_count_blocks(state, enc + "blocks."),
        num_heads=_heads(width, {}),
        mlp_ratio=hidden / width,
    )
    if layout == "mae":
        side = math.isqrt(state["pos_embed"].shape[1] - 1)
        encoder = replace(encoder, img_size=side * patch, qkv_bias="blocks.0.attn.qkv.bias" in state)
        decoder = state.get("decoder_embed.weight")
        depth = _count_blocks(state, "decoder_blocks.")
        known_heads, head_dim = {512: 16}, 32
    else:
        img_size = S4D_IMG_SIZE if is_s4d(state) else 224
        encoder = replace(encoder, tubelet_size=kernel.shape[2], cls_token=False, img_size=img_size, num_frames=16)
        decoder = state.get("encoder_to_decoder.weight")
        depth = _count_blocks(state, "decoder.blocks.")
        known_heads, head_dim = {192: 3, 384: 6, 512: 8, 640: 8}, 64
    if decoder is None:
        return MAEConfig(encoder=encoder)
    dec_width = decoder.shape[0]
    return MAEConfig(encoder=encoder, decoder_embed_dim=dec_width, decoder_depth=depth, decoder_num_heads=_heads(dec_width, known_heads, head_dim))


def _check_fits(found: MAEConfig, wanted: MAEConfig, source: str) -> None:
    """The weights' shapes must match ``wanted``; only image size and frame count may differ."""
    pairs = [("encoder.embed_dim", found.encoder.embed_dim, wanted.encoder.embed_dim),
             ("encoder.depth", found.encoder.depth, wanted.encoder.depth),
             ("encoder.patch_size", found.encoder.patch_size, wanted.encoder.patch_size),
             ("encoder.in_chans", found.encoder.in_chans, wanted.encoder.in_chans),
             ("encoder.mlp_ratio", found.encoder.mlp_ratio, wanted.encoder.mlp_ratio),
             ("decoder_embed_dim", found.decoder_embed_dim, wanted.decoder_embed_dim),
             ("decoder_depth", found.decoder_depth, wanted.decoder_depth)]
    wrong = [f"{name}: file {a}, config {b}" for name, a, b in pairs if a != b]
    if wrong:
        raise ValueError(f"{source}: the weights do not fit the given config ({'; '.join(wrong)})")


def _spatial_table(table: torch.Tensor, prefix: int, target: tuple[int, int, int]) -> torch.Tensor:
    """A stored 2-D table (1, prefix + g*g, D) -> our (1, t*h*w, D) table for grid ``target``."""
    spatial = table[0, prefix:]
    side = math.isqrt(spatial.shape[0])
    return resize_table(spatial, (1, side, side), target)[None]


def _block_state(state: StateDict, source: str, target: str, depth: int) -> StateDict:
    """Block tensors renamed from ``source`` to ``target`` prefixes, VideoMAE q/v biases merged."""
    out: StateDict = {}
    for i in range(depth):
        src, dst = f"{source}{i}.", f"{target}{i}."
        if src + "gamma_1" in state:
            raise ValueError(f"layer scale ({src}gamma_1/gamma_2, init_values > 0) is not supported by our blocks")
        for part in BLOCK_PARTS:
            out[dst + part + ".weight"] = state[src + part + ".weight"]
            if src + part + ".bias" in state:
                out[dst + part + ".bias"] = state[src + part + ".bias"]
        if src + "attn.q_bias" in state:
            q, v = state[src + "attn.q_bias"], state[src + "attn.v_bias"]
            out[dst + "attn.qkv.bias"] = torch.cat([q, torch.zeros_like(q), v])
        elif dst + "attn.qkv.bias" not in out:
            out[dst + "attn.qkv.bias"] = torch.zeros(state[src + "attn.qkv.weight"].shape[0])
    return out


def _from_mae(state: StateDict, model: VisionTransformer, mae: MaskedAutoencoder | None, notes: list[str]) -> StateDict:
    tubelet = model.config.tubelet_size
    kernel = state["patch_embed.proj.weight"]
    table = state["pos_embed"]
    cls_position = table[:, :1]
    enc: StateDict = {
        "patch_embed.proj.weight": (kernel / tubelet).unsqueeze(2).repeat(1, 1, tubelet, 1, 1),
        "patch_embed.proj.bias": state["patch_embed.proj.bias"],
        "pos_embed": _spatial_table(table, 1, model.grid),
        "cls_token": state["cls_token"] + cls_position,  # a learned CLS position folds into the token
    }
    if table.shape[1] - 1 != model.grid[1] * model.grid[2]:
        notes.append(f"pos_embed interpolated from {table.shape[1] - 1} to {model.grid[1] * model.grid[2]} patches")
    enc.update(_block_state(state, "blocks.", "blocks.", model.config.depth))
    if "norm.weight" in state:
        enc.update({"norm.weight": state["norm.weight"], "norm.bias": state["norm.bias"]})
    else:
        enc.update({"norm.weight": torch.ones(model.config.embed_dim), "norm.bias": torch.zeros(model.config.embed_dim)})
        notes.append("no final 'norm' in the file (fine-tuned with global pooling): left at identity; see extras['fc_norm.*']")
    if mae is None:
        return enc
    out = {"encoder." + k: v for k, v in enc.items()}
    out.update({k: state[k] for k in ("mask_token", "decoder_embed.weight", "decoder_embed.bias", "decoder_norm.weight", "decoder_norm.bias")})
    out["decoder_pos_embed"] = _spatial_table(state["decoder_pos_embed"], 1, model.grid)
    out["decoder_pred.weight"] = state["decoder_pred.weight"].repeat(tubelet, 1)
    out["decoder_pred.bias"] = state["decoder_pred.bias"].repeat(tubelet)
    out.update(_block_state(state, "decoder_blocks.", "decoder_blocks.", mae.config.decoder_depth))
    return out


def _from_videomae(state: StateDict, model: VisionTransformer, mae: MaskedAutoencoder | None, notes: list[str]) -> StateDict:
    pre = "encoder." if "encoder.patch_embed.proj.weight" in state else ""
    kernel = state[pre + "patch_embed.proj.weight"]
    if kernel.shape[2] != model.config.tubelet_size:
        raise ValueError(f"the file's tubelet is {kernel.shape[2]} frames, the config asks for {model.config.tubelet_size}")
    count, width = math.prod(model.grid), model.config.embed_dim
    if pre + "pos_embed" in state:  # learned table (use_learnable_pos_emb)
        learned = state[pre + "pos_embed"][0]
        side = model.grid[1]
        frames = learned.shape[0] // (side * side) if learned.shape[0] % (side * side) == 0 else 16 // model.config.tubelet_size
        spatial = math.isqrt(learned.shape[0] // frames)
        table = resize_table(learned, (frames, spatial, spatial), model.grid)[None]
        notes.append(f"learned pos_embed interpolated from grid {(frames, spatial, spatial)} to {model.grid}")
    else:
        table = videomae_sinusoid(count, width)[None]
    enc: StateDict = {"patch_embed.proj.weight": kernel, "patch_embed.proj.bias": state[pre + "patch_embed.proj.bias"], "pos_embed": table}
    enc.update(_block_state(state, pre + "blocks.", "blocks.", model.config.depth))
    if pre + "norm.weight" in state:
        enc.update({"norm.weight": state[pre + "norm.weight"], "norm.bias": state[pre + "norm.bias"]})
    else:
        enc.update({"norm.weight": torch.ones(width), "norm.bias": torch.zeros(width)})
        notes.append("no final 'norm' in the file (fine-tuned with mean pooling): left at identity; see extras['fc_norm.*']")
    if mae is None:
        return enc
    dec_width = mae.config.decoder_embed_dim
    out = {"encoder." + k: v for k, v in enc.items()}
    out.update({
        "mask_token": state["mask_token"],
        "decoder_embed.weight": state["encoder_to_decoder.weight"],
        "decoder_embed.bias": torch.zeros(dec_width),
        "decoder_pos_embed": videomae_sinusoid(count, dec_width)[None],
        "decoder_norm.weight": state["decoder.norm.weight"],
        "decoder_norm.bias": state["decoder.norm.bias"],
        "decoder_pred.weight": state["decoder.head.weight"],
        "decoder_pred.bias": state["decoder.head.bias"],
    })
    out.update(_block_state(state, "decoder.blocks.", "decoder_blocks.", mae.config.decoder_depth))
    return out


def import_state_dict(
    state: StateDict, config: MAEConfig | ViTConfig | None = None, source: str = "checkpoint", encoder_only: bool = False
) -> ImportedCheckpoint:
    """Build our model from a public-layout state dict.

    ``config`` (optional) sets the target image size, frame count, tubelet and head counts; by
    default they come from :func:`infer_config`. The full MAE is built when the file has a
    decoder (and ``encoder_only`` is False), else the encoder.
    """
    layout = detect_layout(state, source)
    found = infer_config(state, layout)
    wanted = found if config is None else (config if isinstance(config, MAEConfig) else replace(found, encoder=config))
    has_decoder = "decoder_embed.weight" in state or "encoder_to_decoder.weight" in state
    _check_fits(found, wanted if has_decoder else replace(wanted, decoder_embed_dim=found.decoder_embed_dim, decoder_depth=found.decoder_depth), source)
    if layout == "mae" and not wanted.encoder.cls_token:
        raise ValueError(f"{source}: public MAE files carry a CLS token; set encoder.cls_token=True")
    mae = MaskedAutoencoder(wanted) if has_decoder and not encoder_only else None
    encoder = mae.encoder if mae is not None else VisionTransformer(wanted.encoder)
    notes: list[str] = []
    convert = _from_mae if layout == "mae" else _from_videomae
    try:
        ours = convert(state, encoder, mae, notes)
    except KeyError as missing:
        raise ValueError(f"{source}: {layout} layout is missing key {missing}; found {sorted(state)[:24]}") from None
    model = mae if mae is not None else encoder
    model.load_state_dict(ours, strict=True)
    extras = {k: v for k, v in state.items() if _is_extra(k, layout)}
    warned = _block_tensors_left_out(extras, source)
    if layout == "videomae" and is_s4d(state) and wanted.encoder.img_size != S4D_IMG_SIZE:
        warned.append(
            f"{source}: an S4D file (trained at {S4D_IMG_SIZE} px) built for img_size={wanted.encoder.img_size}: "
            f"positions are laid out for another grid and its features differ from S4D's; load it with img_size={S4D_IMG_SIZE}"
        )
    for message in warned:
        warnings.warn(message, stacklevel=2)
    return ImportedCheckpoint(model, layout, extras, notes + warned)


def _is_extra(key: str, layout: str) -> bool:
    """A tensor the conversion does not put into our model: unknown block parts, heads, adapters."""
    block = BLOCK_KEY.search(key)
    if block is not None:
        return block.group(2) not in BLOCK_KEYS
    return key not in KNOWN_KEYS[layout] and not key.startswith(KNOWN_PREFIXES[layout])


def _block_tensors_left_out(extras: StateDict, source: str) -> list[str]:
    """Warnings for block tensors kept as extras: the blocks we built compute without them."""
    blocks: dict[str, set[int]] = {}
    for key in extras:
        found = BLOCK_KEY.search(key)
        if found is not None:
            kind = "S4D MoAE adapter" if S4D_ADAPTER in key else "unknown block"
            blocks.setdefault(kind, set()).add(int(found.group(1)))
    return [
        f"{source}: {kind} tensors in blocks {sorted(numbers)} are not part of our blocks: the model computes those blocks "
        "without them; they are kept, under the file's names, in ImportedCheckpoint.extras"
        for kind, numbers in sorted(blocks.items())
    ]


def _collapse_slots(tensor: torch.Tensor, slots: int, dim: int, scale: bool) -> torch.Tensor:
    """Undo the per-time-slot copies: slot 0 (times ``slots`` for a divided kernel) when all slots
    are equal, so the import/export round trip is exact; otherwise their sum (kernel) or mean."""
    parts = tensor.chunk(slots, dim=dim) if dim == 0 else tensor.unbind(dim)
    if all(torch.equal(parts[0], part) for part in parts[1:]):
        return parts[0] * slots if scale else parts[0].clone()
    stacked = torch.stack(parts)
    return stacked.sum(0) if scale else stacked.mean(0)


def export_mae_state_dict(model: MaskedAutoencoder | VisionTransformer) -> StateDict:
    """Our model in the public MAE layout (a Conv2d patch embedding and 2-D tables).

    Clip-specific weights do not fit that layout: the kernel's time slots are summed (exactly
    what an image sees) and the first temporal slice of the tables is kept. Keep our release
    format (:mod:`face_core.release.folder`) for clip models.
    """
    mae = model if isinstance(model, MaskedAutoencoder) else None
    encoder = mae.encoder if mae is not None else model
    if encoder.cls_token is None:
        raise ValueError("the public MAE layout needs a CLS token; this model has cls_token=False")
    tubelet = encoder.config.tubelet_size
    spatial = encoder.grid[1] * encoder.grid[2]
    source = {k: v.detach() for k, v in encoder.state_dict().items()}
    out: StateDict = {
        "cls_token": source["cls_token"].clone(),
        "pos_embed": torch.cat([torch.zeros_like(source["pos_embed"][:, :1]), source["pos_embed"][:, :spatial]], dim=1),
        "patch_embed.proj.weight": _collapse_slots(source["patch_embed.proj.weight"], tubelet, 2, scale=True),
        "patch_embed.proj.bias": source["patch_embed.proj.bias"].clone(),
        "norm.weight": source["norm.weight"].clone(),
        "norm.bias": source["norm.bias"].clone(),
    }
    out.update({k: v.clone() for k, v in source.items() if k.startswith("blocks.")})
    if mae is None:
        return out
    decoder = {k: v.detach() for k, v in mae.state_dict().items() if not k.startswith("encoder.")}
    table = decoder.pop("decoder_pos_embed")
    out["decoder_pos_embed"] = torch.cat([torch.zeros_like(table[:, :1]), table[:, :spatial]], dim=1)
    out["decoder_pred.weight"] = _collapse_slots(decoder.pop("decoder_pred.weight"), tubelet, 0, scale=False)
    out["decoder_pred.bias"] = _collapse_slots(decoder.pop("decoder_pred.bias"), tubelet, 0, scale=False)
    out.update({k: v.clone() for k, v in decoder.items()})
    return out

