"""One entry point for every checkpoint kind: ``face_core.load_model(path_or_uri)``, and releasing one.

Reads, without ever unpickling code:

* our release folders (``model.safetensors`` + ``config.json``, :mod:`face_core.release.folder`),
  also behind MLflow URIs ``models:/name@alias``, ``models:/name/3`` and ``runs:/<id>/model``;
* our Lightning checkpoints (``state_dict`` keys ``model.*``, ``hyper_parameters["model_config"]``),
  including DeepSpeed checkpoints once converted to one file;
* public MAE / FMAE / FMAE-IAT ``.pth`` files and VideoMAE / S4D files
  (:mod:`face_core.model.checkpoint_formats`).

The full :class:`~face_core.model.mae.MaskedAutoencoder` comes back when the file has a decoder,
else the :class:`~face_core.model.vit.VisionTransformer`; either in eval mode. What a foreign file
holds beyond that model (a fine-tuned ``fc_norm``/``head``, S4D's image and video heads) is left
out with a warning naming it; :func:`face_core.model.checkpoint_formats.import_state_dict` keeps
it in ``extras``. S4D's pretraining files (VideoMAE's tensors, saved by S4D's trainer beside its
top-level ``loss`` and ``steps``) are built at S4D's 160 px unless asked otherwise, with a warning then.

:func:`release_checkpoint` writes any of these (and DeepSpeed's sharded checkpoint directories,
consolidated to one fp32 file with Lightning's ``convert_zero_checkpoint_to_fp32_state_dict``)
as a pretrained release folder (:mod:`face_core.release.pretrained`).
"""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from face_core.model.checkpoint_formats import (
    BLOCK_KEY,
    S4D_IMG_SIZE,
    detect_layout,
    import_state_dict,
    infer_config,
    load_checkpoint_file,
    unwrap_state_dict,
)
from face_core.model.config import MAEConfig, ViTConfig
from face_core.model.mae import MaskedAutoencoder
from face_core.model.pos_embed import resize_table, sincos_3d
from face_core.release.folder import CONFIG_FILE, WEIGHTS_FILE
from face_core.release.pretrained import model_from_config, read_release, release_lineage, write_release
from face_core.release.registry import URI_SCHEMES, download_release
from plumbing.recipes import ConfigError, config_from_dict

RESIZABLE = ("img_size", "num_frames")
S4D_TRAINER_KEYS = ("loss", "steps")  # what S4D's trainer (omnivision) saves beside "model"; VideoMAE's files lack both


def load_model(
    path_or_uri: str | Path, config: MAEConfig | ViTConfig | None = None, encoder_only: bool = False, **encoder_overrides: Any
) -> nn.Module:
    """Load any checkpoint we know as a plain PyTorch model (eval mode).

    Args:
        path_or_uri: a release folder, a ``.ckpt``/``.pth``/``.pt``/``.safetensors`` file, or an
            MLflow URI (``models:/...``, ``runs:/...``).
        config: target configuration for foreign files (head counts, image size, frames);
            by default it is inferred from the tensors.
        encoder_only: return the encoder even when the file has a decoder.
        encoder_overrides: encoder fields to change on the way, e.g. ``img_size=160`` or
            ``num_frames=8``; position tables are interpolated to the new grid.
    """
    if str(path_or_uri).startswith(URI_SCHEMES):
        path = download_release(str(path_or_uri))
    else:
        path = Path(path_or_uri)
    if path.is_dir():
        model = _from_folder(path, encoder_overrides)
    elif not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint file or release folder")
    else:
        model = _from_file(path, config, encoder_only, encoder_overrides)
    if encoder_only and hasattr(model, "encoder"):
        model = model.encoder
    return model.eval()


def _from_folder(folder: Path, overrides: dict[str, Any]) -> nn.Module:
    if (folder / CONFIG_FILE).exists() or (folder / WEIGHTS_FILE).exists():
        release = read_release(folder)
        return _build(release.config, release.state_dict, overrides, str(folder))
    if (folder / "latest").exists() or any(folder.glob("*/mp_rank_*_model_states.pt")) or any(folder.glob("checkpoint/*.pt")):
        raise ValueError(
            f"{folder}: a DeepSpeed checkpoint directory; convert it to one file first "
            "(lightning.pytorch.utilities.deepspeed.convert_zero_checkpoint_to_fp32_state_dict) and load that file"
        )
    raise FileNotFoundError(f"{folder}: a folder without {WEIGHTS_FILE} and {CONFIG_FILE}; not a release folder")


def _from_file(path: Path, config: MAEConfig | ViTConfig | None, encoder_only: bool, overrides: dict[str, Any]) -> nn.Module:
    stored = load_checkpoint_file(path)
    if isinstance(stored.get("state_dict"), dict) and isinstance(stored.get("hyper_parameters"), dict):
        return _from_lightning(stored, path, overrides)
    state = unwrap_state_dict(stored, str(path))
    if _is_ours(state):
        if config is None:
            raise ValueError(f"{path}: a bare state dict of our model carries no config; pass config=... or load a release folder")
        return _build(config, state, overrides, str(path))
    layout = detect_layout(state, str(path))
    s4d_pretraining = layout == "videomae" and all(key in stored for key in S4D_TRAINER_KEYS)
    if overrides or (s4d_pretraining and config is None):
        found = config if config is not None else infer_config(state, layout)
        encoder = found.encoder if isinstance(found, MAEConfig) else found
        native = {"img_size": S4D_IMG_SIZE} if s4d_pretraining and config is None else {}
        encoder = dataclasses.replace(encoder, **{**native, **overrides})
        config = dataclasses.replace(found, encoder=encoder) if isinstance(found, MAEConfig) else encoder
    if s4d_pretraining and (config.encoder if isinstance(config, MAEConfig) else config).img_size != S4D_IMG_SIZE:
        warnings.warn(f"{path}: an S4D pretraining file (trained at {S4D_IMG_SIZE} px) built for another img_size: positions are "
                      f"laid out for another grid and its features differ from S4D's; load it with img_size={S4D_IMG_SIZE}", stacklevel=3)
    imported = import_state_dict(state, config, str(path), encoder_only)
    _warn_left_out(imported.extras, path)
    return imported.model


def _warn_left_out(extras: dict[str, torch.Tensor], path: Path) -> None:
    """Warn naming the tensors outside the blocks that the returned model does not hold (block tensors are warned about on import)."""
    left = sorted({key.rsplit(".", 1)[0] for key in extras if BLOCK_KEY.search(key) is None})
    if left:
        warnings.warn(
            f"{path}: the model returned holds no {', '.join(left)} ({sum(BLOCK_KEY.search(k) is None for k in extras)} tensors of the "
            "file, e.g. a fine-tuned classifier and its norm): they are left out; "
            "face_core.model.checkpoint_formats.import_state_dict(...).extras keeps them",
            stacklevel=4,
        )


def _is_ours(state: dict[str, torch.Tensor]) -> bool:
    """Our own key names: a Conv3d kernel beside a stored position table and merged qkv biases."""
    kernel = state.get("encoder.patch_embed.proj.weight", state.get("patch_embed.proj.weight"))
    stored_table = "encoder.pos_embed" in state or "pos_embed" in state
    return kernel is not None and kernel.ndim == 5 and stored_table and not any(k.endswith("attn.q_bias") for k in state)


def _from_lightning(stored: dict, path: Path, overrides: dict[str, Any]) -> nn.Module:
    values = stored["hyper_parameters"].get("model_config")
    state = {k[len("model."):]: v for k, v in stored["state_dict"].items() if k.startswith("model.")}
    if not isinstance(values, dict) or not state:
        raise ValueError(
            f"{path}: a Lightning checkpoint, but not of our MAE module: expected hyper_parameters['model_config'] "
            f"and state_dict keys 'model.*'; found hyper_parameters {sorted(stored['hyper_parameters'])} and "
            f"state_dict keys {sorted(stored['state_dict'])[:10]}"
        )
    return _build(config_from_dict(MAEConfig, values, str(path)), state, overrides, str(path))


def _build(config: MAEConfig | ViTConfig, state: dict[str, torch.Tensor], overrides: dict[str, Any], source: str) -> nn.Module:
    """Our model for ``config`` with ``state``, retargeted to ``overrides`` (image size, frames)."""
    unknown = sorted(set(overrides) - set(RESIZABLE))
    if unknown:
        raise ValueError(f"{source}: only {RESIZABLE} can change when loading our own checkpoints, not {unknown}")
    model = model_from_config(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{source}: weights do not match the stored config: {error}") from None
    if not overrides:
        return model
    encoder_config = config.encoder if isinstance(config, MAEConfig) else config
    target_encoder = dataclasses.replace(encoder_config, **overrides)
    target = dataclasses.replace(config, encoder=target_encoder) if isinstance(config, MAEConfig) else target_encoder
    resized = model_from_config(target)
    old_grid = model.encoder.grid if isinstance(config, MAEConfig) else model.grid
    new_grid = resized.encoder.grid if isinstance(config, MAEConfig) else resized.grid
    fresh = resized.state_dict()
    moved = {}
    for key, value in model.state_dict().items():
        if key.endswith("pos_embed"):
            native = torch.equal(value[0], sincos_3d(value.shape[-1], old_grid).to(value.dtype))
            value = fresh[key] if native else resize_table(value[0], old_grid, new_grid)[None]  # fixed tables are rebuilt
        moved[key] = value
    resized.load_state_dict(moved, strict=True)
    return resized


def is_deepspeed_checkpoint(path: Path) -> bool:
    """True for a DeepSpeed checkpoint directory (``latest`` tag file or ``*/mp_rank_*_model_states.pt``)."""
    return path.is_dir() and ((path / "latest").is_file() or any(path.glob("*/mp_rank_*_model_states.pt")))


def load_trained_model(checkpoint: str | Path) -> nn.Module:
    """The model stored in ``checkpoint`` (file, release folder or DeepSpeed directory), in eval mode."""
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path}: no such file or folder")
    if not is_deepspeed_checkpoint(path):
        return load_model(path)
    from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

    with tempfile.TemporaryDirectory(prefix="zero-to-fp32-") as scratch:
        consolidated = Path(scratch) / "consolidated.ckpt"
        convert_zero_checkpoint_to_fp32_state_dict(str(path), str(consolidated))
        return load_model(consolidated)


def release_checkpoint(checkpoint: str | Path, out: str | Path, with_decoder: bool = False) -> Path:
    """Write the encoder of ``checkpoint`` (with ``with_decoder``, the whole MAE) to the new folder ``out``.

    Returns the release folder (``model.safetensors`` + ``config.json``, which records the
    checkpoint's lineage: :func:`face_core.release.pretrained.release_lineage`).
    """
    model = load_trained_model(checkpoint)
    lineage = release_lineage(checkpoint)
    if isinstance(model, MaskedAutoencoder):
        return write_release(model, model.config, out, lineage) if with_decoder else write_release(model.encoder, model.config.encoder, out, lineage)
    if with_decoder:
        raise ConfigError(f"--with_decoder: checkpoint {checkpoint} holds an encoder without a decoder; release it without --with_decoder")
    return write_release(model, model.config, out, lineage)
