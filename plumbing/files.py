"""Files that are whole or absent, and the SHA-256 of a file.

Every file the project writes for others to read (manifests, shards, checkpoints, configs,
results, pictures, tokens) goes through :func:`atomic_path`: the bytes are written under a
temporary name in the same folder, flushed to disk (fsync) and renamed over the target, so a
reader or a restarted job sees either the old file or the new one, never half of one. A folder
written as a whole (a release) is filled under a temporary name by :func:`staged_folder` and renamed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


def temporary_name(path: Path) -> Path:
    """The hidden temporary name beside ``path`` used while it is written (unique per process)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextmanager
def atomic_path(path: str | Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is fsynced and renamed to ``path``.

    The parent folder is created. ``mode`` sets the file's permissions before it appears (e.g.
    ``0o600`` for a secret). On an exception the temporary file is removed and ``path`` is left
    as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = temporary_name(target)
    try:
        yield partial
        if mode is not None:
            os.chmod(partial, mode)
        _fsync(partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def staged_folder(path: str | Path) -> Iterator[Path]:
    """Yield a new hidden folder beside ``path`` to fill; on success its files are fsynced and it is renamed to ``path``.

    ``path`` must not exist or be an empty folder (:class:`FileExistsError` otherwise); its parent
    is created. On an exception the staged folder is removed and ``path`` is left as it was, so a
    crash never leaves a half-written folder that looks whole.
    """
    target = Path(path)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target}: exists and is not empty; choose a new folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        yield staging
        for file in staging.rglob("*"):
            if file.is_file():
                _fsync(file)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path. With ``mode`` (e.g. ``0o600`` for a
    secret) the file never exists with wider permissions, not even under its temporary name."""
    with atomic_path(path, mode) as partial:
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str, mode: int | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return write_bytes_atomic(path, text.encode(), mode)


def write_json_atomic(path: str | Path, data: Any, indent: int = 2) -> Path:
    """Write ``data`` as JSON (plus a final newline) to ``path`` atomically; returns the path."""
    return write_text_atomic(path, json.dumps(data, indent=indent) + "\n")


def write_png_atomic(path: str | Path, picture: Any) -> Path:
    """Write an RGB uint8 ``(rows, cols, 3)`` array as a PNG file, atomically; returns the path."""
    from PIL import Image

    encoded = io.BytesIO()
    Image.fromarray(picture).save(encoded, format="PNG")
    return write_bytes_atomic(path, encoded.getvalue())


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
