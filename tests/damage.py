"""Helpers that damage a copy of a shard set the way real storage does (tests only)."""

import io
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path


def copy_set(manifest_path: str, target: Path) -> Path:
    """Copy the shard set of ``manifest_path`` into ``target``; returns the copy's folder."""
    shutil.copytree(Path(manifest_path).parent, target)
    return target


def _rewrite(shard: Path, replace: Callable[[int, tarfile.TarInfo], bool], data: bytes) -> list[str]:
    """Rewrite the shard with ``data`` in place of each member ``i`` for which ``replace(i, info)``; returns those names."""
    with tarfile.open(shard) as tar:
        members = [(info, tar.extractfile(info).read()) for info in tar if info.isfile()]
    replaced = []
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for i, (info, payload) in enumerate(members):
            if replace(i, info):
                payload = data
                replaced.append(info.name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return replaced


def corrupt_member(shard: Path, suffix: str, data: bytes, index: int = 0) -> str:
    """Replace the ``index``-th member ending in ``suffix`` with ``data``; returns its sample key."""
    with tarfile.open(shard) as tar:
        hits = [info.name for info in tar if info.isfile() and info.name.endswith(suffix)]
    target = hits[index]
    _rewrite(shard, lambda i, info: info.name == target, data)
    return target.split(".", 1)[0]


def corrupt_every(shard: Path, suffix: str, data: bytes) -> None:
    """Replace every member ending in ``suffix`` with ``data`` (a shard whose every label or image is bad)."""
    _rewrite(shard, lambda i, info: info.name.endswith(suffix), data)


def overwrite(shard: Path) -> None:
    """Replace the shard with bytes that are no tar at all, as a wrong file or a failed copy leaves."""
    shard.write_bytes(b"this is not a tar archive\n" * 1000)


def truncate(shard: Path, keep_fraction: float = 0.5) -> None:
    """Cut the shard file short, as an interrupted copy does."""
    data = shard.read_bytes()
    shard.write_bytes(data[: int(len(data) * keep_fraction)])


def truncate_between_members(shard: Path, keep_members: int) -> None:
    """Cut the shard right after its ``keep_members``-th member: every header whole, no end-of-archive block."""
    with tarfile.open(shard) as tar:
        ends = [info.offset_data + -(-info.size // 512) * 512 for info in tar]
    shard.write_bytes(shard.read_bytes()[: ends[keep_members - 1]])
