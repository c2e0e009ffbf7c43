"""Our release folder: ``model.safetensors`` + ``config.json``, loadable without running code.

``config.json`` holds the format version, the kind (``mae`` = the full masked autoencoder,
``encoder`` = the ViT alone), the model config (``dataclasses.asdict``), the package version
and the SHA-256 of the weights file, which :func:`read_release` checks before loading. A folder
is written under a temporary name and renamed when complete, so a crash never leaves a
half-written release that looks whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pretrain.config import MAEConfig, ViTConfig

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_NAME = "face-foundation-release"
FORMAT_VERSION = 1
KINDS = ("mae", "encoder")


@dataclasses.dataclass
class Release:
    """A release read from disk (weights verified).

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


def package_version() -> str:
    """Installed version of this package (``unknown`` when run from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("face-foundation")
    except PackageNotFoundError:
        return "unknown"


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def config_from_dict(values: dict[str, Any], kind: str, source: str = "config") -> MAEConfig | ViTConfig:
    """Rebuild an ``MAEConfig`` (kind ``mae``) or ``ViTConfig`` (kind ``encoder``) from ``asdict`` output."""
    try:
        if kind == "encoder":
            return ViTConfig(**values)
        values = dict(values)
        return MAEConfig(encoder=ViTConfig(**values.pop("encoder")), **values)
    except (TypeError, KeyError) as error:
        raise ValueError(f"{source}: the model config does not match this version's {kind} config: {error}") from None


def model_from_config(config: MAEConfig | ViTConfig) -> nn.Module:
    """A fresh ``MaskedAutoencoder`` for an ``MAEConfig``, a ``VisionTransformer`` for a ``ViTConfig``."""
    from pretrain.mae import MaskedAutoencoder
    from pretrain.vit import VisionTransformer

    return MaskedAutoencoder(config) if isinstance(config, MAEConfig) else VisionTransformer(config)


def write_release_folder(folder: str | Path, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``state`` (safetensors) and ``meta`` + format, version and checksum (JSON) to the new ``folder``.

    Staged under a temporary name and renamed when whole; ``folder`` must not exist or be empty.
    Every release kind (ours and the fine-tuned ``task`` kind) is written through here.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder}: release folder exists and is not empty; choose a new folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.partial-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        weights = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
        save_file(weights, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "package_version": package_version()}
        record = {**header, **meta, "weights_sha256": file_sha256(staging / WEIGHTS_FILE)}
        (staging / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
        if folder.exists():
            folder.rmdir()
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def read_release_folder(folder: str | Path, kinds: tuple[str, ...], required: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a release folder's ``config.json`` and verified weights; errors name the file and what is wrong.

    Checks the format, a readable version, the kind (one of ``kinds``), the ``required`` keys and
    the weights' SHA-256 before loading them.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; a release folder holds {WEIGHTS_FILE} and {CONFIG_FILE}")
    try:
        meta = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_path}: not valid JSON ({error})") from None
    expected = ("format", "format_version", "kind", "weights_sha256", *required)
    missing = [key for key in expected if key not in meta]
    if missing or meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{config_path}: not a {FORMAT_NAME} config; expected keys {list(expected)}, found {sorted(meta)}")
    if meta["format_version"] > FORMAT_VERSION:
        raise ValueError(f"{config_path}: format_version {meta['format_version']} is newer than this package reads ({FORMAT_VERSION}); upgrade")
    if meta["kind"] not in kinds:
        raise ValueError(f"{config_path}: kind={meta['kind']!r}, expected one of {kinds}")
    actual = file_sha256(weights_path)
    if actual != meta["weights_sha256"]:
        raise ValueError(f"{weights_path}: SHA-256 {actual} does not match {meta['weights_sha256']} recorded in {CONFIG_FILE}; the file is damaged or altered")
    return meta, load_file(str(weights_path))


def write_release(model: nn.Module, config: MAEConfig | ViTConfig, folder: str | Path) -> Path:
    """Write ``model`` (an MAE with its ``MAEConfig``, or an encoder with its ``ViTConfig``) to ``folder``.

    ``folder`` must not exist yet, or be empty. Returns the folder.
    """
    from pretrain.mae import MaskedAutoencoder
    from pretrain.vit import VisionTransformer

    if isinstance(model, MaskedAutoencoder) and isinstance(config, MAEConfig):
        kind = "mae"
    elif isinstance(model, VisionTransformer) and isinstance(config, ViTConfig):
        kind = "encoder"
    else:
        raise TypeError(f"write a MaskedAutoencoder with an MAEConfig or a VisionTransformer with a ViTConfig, got {type(model).__name__} with {type(config).__name__}")
    return write_release_folder(folder, model.state_dict(), {"kind": kind, "config": dataclasses.asdict(config)})


def read_release(folder: str | Path) -> Release:
    """Read and verify a release folder; errors name the file and what is wrong."""
    meta, state = read_release_folder(folder, KINDS, required=("config",))
    config = config_from_dict(meta["config"], meta["kind"], str(Path(folder) / CONFIG_FILE))
    return Release(meta["kind"], config, state, meta.get("package_version", "unknown"))


def load_release(folder: str | Path) -> nn.Module:
    """The model of a release folder (``MaskedAutoencoder`` or ``VisionTransformer``), in eval mode."""
    release = read_release(folder)
    model = model_from_config(release.config)
    model.load_state_dict(release.state_dict, strict=True)
    return model.eval()
