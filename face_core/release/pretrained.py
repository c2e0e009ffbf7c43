"""The pretrained release kinds: ``encoder`` (the ViT alone) and ``mae`` (the whole masked autoencoder).

Written and read through :mod:`face_core.release.folder`; ``config.json`` holds the model config
(``dataclasses.asdict``), names this module as the loader MLflow imports and, for a release made
from a checkpoint, its ``lineage`` (:func:`release_lineage`). As that loader
(``_load_pyfunc``), it serves image embeddings: ``{"embedding": (B, D)}``, the mean of the
encoder's patch tokens after its final norm, from uint8 pixels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from face_core.model.config import MAEConfig, ViTConfig
from face_core.model.mae import MaskedAutoencoder
from face_core.model.vit import VisionTransformer
from face_core.release.folder import CONFIG_FILE, read_release_folder, write_release_folder
from face_core.release.lineage import training_lineage, weights_sha256
from face_core.release.pyfunc import FacePredictor, ReleaseDescription
from plumbing.recipes import config_from_dict

KINDS = ("mae", "encoder")
LOADER_MODULE = __name__


@dataclasses.dataclass
class Release:
    """A pretrained release read from disk (weights verified).

    Args:
        kind: ``mae`` or ``encoder``.
        config: the ``MAEConfig`` (kind ``mae``) or ``ViTConfig`` (kind ``encoder``).
        state_dict: the weights.
        package_version: version of this package that wrote it.
    """

    kind: str
    config: MAEConfig | ViTConfig
    state_dict: dict[str, torch.Tensor]
    package_version: str


def model_from_config(config: MAEConfig | ViTConfig) -> nn.Module:
    """A fresh ``MaskedAutoencoder`` for an ``MAEConfig``, a ``VisionTransformer`` for a ``ViTConfig``."""
    return MaskedAutoencoder(config) if isinstance(config, MAEConfig) else VisionTransformer(config)


def release_lineage(checkpoint: str | Path) -> dict[str, Any]:
    """Where a release made from ``checkpoint`` comes from, as its ``config.json`` records it (``lineage``).

    The fields the registry records (:func:`face_core.release.lineage.training_lineage`: the
    checkpoint, its training run and store from the run folder's record, the recipe and its data
    manifests' SHA-256) and the checkpoint's SHA-256 (of its weights for a release folder; absent
    for a DeepSpeed folder).
    """
    lineage = {"checkpoint": str(checkpoint), **training_lineage(checkpoint)}
    checksum = weights_sha256(checkpoint)
    return {**lineage, "checkpoint_sha256": checksum} if checksum else lineage


def write_release(model: nn.Module, config: MAEConfig | ViTConfig, folder: str | Path, lineage: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` (an MAE with its ``MAEConfig``, or an encoder with its ``ViTConfig``) to ``folder``.

    ``folder`` must not exist yet, or be empty. ``lineage`` (:func:`release_lineage`) is recorded
    in ``config.json`` when given. Returns the folder.
    """
    if isinstance(model, MaskedAutoencoder) and isinstance(config, MAEConfig):
        kind = "mae"
    elif isinstance(model, VisionTransformer) and isinstance(config, ViTConfig):
        kind = "encoder"
    else:
        raise TypeError(f"write a MaskedAutoencoder with an MAEConfig or a VisionTransformer with a ViTConfig, got {type(model).__name__} with {type(config).__name__}")
    meta = {"kind": kind, "loader_module": LOADER_MODULE, "config": dataclasses.asdict(config), **({"lineage": dict(lineage)} if lineage else {})}
    return write_release_folder(folder, model.state_dict(), meta)


def read_release(folder: str | Path) -> Release:
    """Read and verify a pretrained release folder; errors name the file and what is wrong."""
    meta, state = read_release_folder(folder, KINDS, required=("config",))
    config = config_from_dict(MAEConfig if meta["kind"] == "mae" else ViTConfig, meta["config"], str(Path(folder) / CONFIG_FILE))
    return Release(meta["kind"], config, state, meta.get("package_version", "unknown"))


def load_release(folder: str | Path) -> nn.Module:
    """The model of a pretrained release folder (``MaskedAutoencoder`` or ``VisionTransformer``), in eval mode."""
    release = read_release(folder)
    model = model_from_config(release.config)
    model.load_state_dict(release.state_dict, strict=True)
    return model.eval()


def encoder_predictor(folder: str | Path) -> FacePredictor:
    """A pretrained release (``encoder`` or ``mae``): image embeddings from its encoder."""
    model = load_release(folder)
    encoder = getattr(model, "encoder", model)  # the MAE's encoder, or the bare ViT
    config = encoder.config
    kind = "mae" if encoder is not model else "encoder"

    def forward(pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embedding": encoder(pixels)}

    return FacePredictor(forward, (config.in_chans, config.img_size, config.img_size), kind)


def describe_release(folder: str | Path) -> ReleaseDescription:
    """Signature and input example of a pretrained release folder (read and checked on the way)."""
    return encoder_predictor(folder).describe()


def _load_pyfunc(data_path: str) -> FacePredictor:
    """MLflow's loader-module hook: the predictor of the release folder at ``data_path``."""
    return encoder_predictor(data_path)
