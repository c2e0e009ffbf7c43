"""Our encoders as timm models, built from a release folder.

Importing this module registers ``face_vit_{tiny,small,base,large,huge}_patch16`` with timm::

    import timm
    import face_core.release.timm_models  # noqa: F401  (registers the names)

    model = timm.create_model(
        "face_vit_base_patch16", pretrained=True,
        pretrained_cfg_overlay=dict(file="releases/face-mae-vit-b/model.safetensors"),
    )                                                   # + num_classes=7 for a fresh head

The model is timm's own ``VisionTransformer`` (images; every timm feature works: heads, feature
extraction, layer-wise grouping, gradient checkpointing) set up to compute what our encoder
computes on an image: a Conv2d patch embedding (our Conv3d kernel summed over time, exactly
what an image sees), the first temporal slice of our position table, a CLS token without a
position (``no_embed_class``), the final norm before pooling and the mean of the patch tokens as
the pooled feature (``global_pool="avg"``, ``fc_norm=False``). The release's ``config.json``
beside the weights file supplies image size, patch size, channels, CLS token, qkv bias and MLP
ratio (explicit keyword arguments still win); its width, depth and heads must be the name's or the keyword arguments'.
The release is checked first with :func:`face_core.release.pretrained.read_release` (format,
config, weights checksum); timm then loads the file itself and our filter maps the tensors
to its layout. Another ``img_size`` rebuilds our
fixed sin-cos table for the new grid; a table that is not ours is resampled with timm's
``resample_abs_pos_embed``. An ``mae`` release gives its encoder; the decoder is not part of
the timm model. Without pretrained weights the position table starts as our sin-cos table.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import resample_abs_pos_embed
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer as TimmVisionTransformer
from torch import nn

from face_core.model.config import VIT_SIZES, MAEConfig
from face_core.model.pos_embed import sincos_2d
from face_core.model.vit import LAYER_NORM_EPS
from face_core.release.folder import CONFIG_FILE
from face_core.release.pretrained import read_release

PATCH = 16
MODEL_NAMES = {f"face_vit_{size}_patch16": size for size in VIT_SIZES}
default_cfgs = generate_default_cfgs({
    name: dict(
        url="", num_classes=0, input_size=(3, 224, 224), pool_size=None, crop_pct=1.0, interpolation="bicubic",
        mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, first_conv="patch_embed.proj", classifier="head",
    )
    for name in MODEL_NAMES
})


def timm_state_dict(state: dict[str, torch.Tensor], model: TimmVisionTransformer, grid: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Our encoder's (or MAE's) release tensors in the layout of timm's ``VisionTransformer``.

    ``grid`` is the release's spatial token grid (rows, columns); the table is moved to the
    model's grid (our sin-cos table rebuilt, any other resampled bicubically by timm).
    """
    if "encoder.patch_embed.proj.weight" in state:
        state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    kernel = state["patch_embed.proj.weight"]
    out = {k: v for k, v in state.items() if k.startswith(("blocks.", "norm.", "cls_token"))}
    out["patch_embed.proj.weight"] = kernel.sum(dim=2) if kernel.ndim == 5 else kernel
    out["patch_embed.proj.bias"] = state["patch_embed.proj.bias"]
    width, spatial = kernel.shape[0], grid[0] * grid[1]
    table = state["pos_embed"][:, :spatial]  # the first temporal slice: what an image uses
    target = tuple(model.patch_embed.grid_size)
    if target != grid:
        if torch.equal(table[0], sincos_2d(width, *grid).to(table.dtype)):
            table = sincos_2d(width, *target).to(table.dtype)[None]
        else:
            table = resample_abs_pos_embed(table, list(target), list(grid), num_prefix_tokens=0, antialias=False)
    out["pos_embed"] = table
    return out


def _release_arguments(file: str, name: str, size: dict[str, int]) -> tuple[dict[str, Any], tuple[int, int]]:
    """Model arguments and spatial token grid of the (verified) release folder holding ``file``;
    its width, depth and heads must be ``size``."""
    folder = Path(file).parent
    if not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"{file}: {name} loads the model.safetensors of a release folder ({CONFIG_FILE} beside it, "
            f"written by `python -m pretrain release`); none found in {folder}"
        )
    release = read_release(folder)
    encoder = release.config.encoder if isinstance(release.config, MAEConfig) else release.config
    found = {key: getattr(encoder, key) for key in size}
    if found != size:
        matching = [n for n, s in MODEL_NAMES.items() if VIT_SIZES[s] == found]
        hint = f"create {matching[0]!r} instead" if matching else f"its size is not a standard one; pass {found} as keyword arguments"
        raise ValueError(f"{folder}: the release is a ViT with {found}, not {name} with {size}; {hint}")
    arguments = dict(
        img_size=encoder.img_size, patch_size=encoder.patch_size, in_chans=encoder.in_chans, mlp_ratio=encoder.mlp_ratio,
        qkv_bias=encoder.qkv_bias, class_token=encoder.cls_token,
    )
    side = encoder.img_size // encoder.patch_size
    return arguments, (side, side)


def create_face_vit(name: str, pretrained: bool = False, **kwargs: Any) -> TimmVisionTransformer:
    """Build ``name`` (a ``face_vit_*`` model) with timm, from the release named by ``pretrained_cfg_overlay['file']``."""
    overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
    size = {key: kwargs.get(key, value) for key, value in VIT_SIZES[MODEL_NAMES[name]].items()}
    arguments: dict[str, Any] = dict(patch_size=PATCH, **size)
    grid = None
    if pretrained and overlay.get("file"):
        from_release, grid = _release_arguments(overlay["file"], name, size)
        arguments.update(from_release)
    arguments.update(kwargs)
    image = arguments.setdefault("img_size", 224)
    overlay.setdefault("input_size", (arguments.get("in_chans", 3), image, image))  # what timm's data config resolves
    if grid is None:
        grid = (image // arguments["patch_size"],) * 2
    model = build_model_with_cfg(
        TimmVisionTransformer, name, pretrained,
        pretrained_cfg_overlay=overlay, pretrained_filter_fn=partial(timm_state_dict, grid=grid),
        **{"num_classes": 0, "global_pool": "avg", "fc_norm": False, "no_embed_class": True,
           "norm_layer": partial(nn.LayerNorm, eps=LAYER_NORM_EPS), **arguments},
    )
    if not pretrained:
        with torch.no_grad():
            rows, cols = model.patch_embed.grid_size
            model.pos_embed.copy_(sincos_2d(model.embed_dim, rows, cols)[None])
    return model


def _entrypoint(name: str) -> Callable[..., TimmVisionTransformer]:
    def create(pretrained: bool = False, **kwargs: Any) -> TimmVisionTransformer:
        return create_face_vit(name, pretrained, **kwargs)

    create.__name__ = create.__qualname__ = name
    create.__doc__ = f"Our ViT-{MODEL_NAMES[name]} encoder (patch 16) as timm's VisionTransformer; see {__name__}."
    return create


for _name in MODEL_NAMES:
    register_model(_entrypoint(_name))
