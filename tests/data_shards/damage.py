"""Helpers that damage a copy of a shard set the way real storage does (tests only)."""

import io
import shutil
import tarfile
from pathlib import Path


def copy_set(manifest_path: str, target: Path) -> Path:
    """Copy the shard set of ``manifest_path`` into ``target``; returns the copy's folder."""
    shutil.copytree(Path(manifest_path).parent, target)
    return target


def corrupt_member(shard: Path, suffix: str, data: bytes, index: int = 0) -> str:
    """Replace the ``index``-th member ending in ``suffix`` with ``data``; returns its sample key."""
    with tarfile.open(shard) as tar:
        members = [(info, tar.extractfile(info).read()) for info in tar if info.isfile()]
    hits = [i for i, (info, _) in enumerate(members) if info.name.endswith(suffix)]
    target = hits[index]
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for i, (info, payload) in enumerate(members):
            payload = data if i == target else payload
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return members[target][0].name.split(".", 1)[0]


def truncate(shard: Path, keep_fraction: float = 0.5) -> None:
    """Cut the shard file short, as an interrupted copy does."""
    data = shard.read_bytes()
    shard.write_bytes(data[: int(len(data) * keep_fraction)])


def truncate_between_members(shard: Path, keep_members: int) -> None:
    """Cut the shard right after its ``keep_members``-th member: every header whole, no end-of-archive block."""
    data = shard.read_bytes()
    offset = 0
    for _ in range(keep_members):
        size = int(data[offset + 124 : offset + 136].strip(b"\0 ") or b"0", 8)
        offset += 512 + -(-size // 512) * 512
    shard.write_bytes(data[:offset])
