"""The release folder every release kind is written as: ``model.safetensors`` + ``config.json``.

``config.json`` holds the format name and version, the kind (``encoder``, ``mae``, ``task``...),
the loader module that rebuilds that kind (:mod:`face_core.release.pretrained` for pretrained
models, :mod:`face_core.release.task` for fine-tuned ones; the MLflow registry imports it), what
that kind needs to rebuild its network, the package version and the SHA-256 of the weights file,
which :func:`read_release_folder` checks before loading. A folder is staged under a temporary
name and renamed when complete (:func:`plumbing.files.staged_folder`), so a crash never leaves a
half-written release that looks whole.
"""


from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from plumbing.files import file_sha256, staged_folder, write_json_atomic

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_NAME = "face-foundation-release"
FORMAT_VERSION = 1


def package_version() -> str:
    """Installed version of this package (``unknown`` when run from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("face-foundation")
    except PackageNotFoundError:
        return "unknown"


def write_release_folder(folder: str | Path, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``state`` (safetensors) and ``meta`` + format, version and checksum (JSON) to the new ``folder``.

    ``meta`` names the ``kind`` and its ``loader_module``. Staged under a temporary name and
    renamed when whole; ``folder`` must not exist or be empty. Every release kind is written here.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    with staged_folder(folder) as staging:  # refuses a folder that is not empty
        weights = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
        save_file(weights, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "package_version": package_version()}
        record = {**header, **meta, "weights_sha256": file_sha256(staging / WEIGHTS_FILE)}
        write_json_atomic(staging / CONFIG_FILE, record)
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


