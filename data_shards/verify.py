"""Check shard sets against their manifests: size and checksum, tar integrity, decodes, label schema.

:func:`verify_shard` reads one shard completely with the loaders' reader
(:func:`~data_shards.tar_samples.shard_samples`) and returns its problems; :func:`verify_sets`
checks every shard of every set (in parallel), prints counts and each problem, and returns
whether everything is whole.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from data_shards.manifest import Manifest, ShardRecord, read_manifest
from data_shards.media import decode_jpeg
from data_shards.schema import label_problems
from data_shards.tar_samples import TAR_DAMAGE, describe, members, shard_samples
from plumbing.files import file_sha256


@dataclass
class ShardCheck:
    """What verifying one shard found."""

    path: str
    samples: int = 0
    frames: int = 0
    problems: list[str] = field(default_factory=list)


def _check_sample(key: str, members: dict[str, bytes], manifest: Manifest, found: list[str]) -> int:
    images = sorted(name for name in members if name.endswith("jpg"))
    if manifest.modality == "image" and images != ["jpg"]:
        found.append(f"{key}: expected one 'jpg' member, found {sorted(members)}")
    if manifest.modality == "clip" and not 1 <= len(images) <= max(manifest.frames, 1) * 1000:
        found.append(f"{key}: a clip needs frame members, found {sorted(members)}")
    if manifest.modality == "clip" and manifest.frames and len(images) > manifest.frames:
        found.append(f"{key}: {len(images)} frames, the manifest says at most {manifest.frames}")
    for name in images:
        try:
            pixels = decode_jpeg(members[name])
        except Exception as err:  # simplejpeg raises ValueError; anything else is damage too
            found.append(f"{key}.{name}: does not decode ({err})")
            continue
        if pixels.shape[:2] != (manifest.img_size, manifest.img_size):
            found.append(f"{key}.{name}: {pixels.shape[1]}x{pixels.shape[0]}, the manifest says {manifest.img_size}")
    if "json" not in members:
        found.append(f"{key}: no 'json' labels")
    else:
        try:
            record = json.loads(members["json"])
        except json.JSONDecodeError as err:
            found.append(f"{key}.json: not JSON ({err.msg})")
        else:
            found.extend(f"{key}.json: {problem}" for problem in label_problems(record, manifest.au_ids, len(manifest.class_names)))
    return len(images)


def verify_shard(manifest: Manifest, record: ShardRecord) -> ShardCheck:
    """Every check of one shard; an empty ``problems`` list means whole."""
    path = os.path.join(os.path.dirname(manifest.path), record.name)
    check = ShardCheck(path)
    if not os.path.isfile(path):
        check.problems.append("missing")
        return check
    size = os.path.getsize(path)
    if size != record.bytes:
        check.problems.append(f"{size} bytes, the manifest says {record.bytes}")
    if file_sha256(path) != record.sha256:
        check.problems.append("sha256 differs from the manifest")
    try:
        for sample in shard_samples(path):
            check.frames += _check_sample(sample["__key__"], members(sample), manifest, check.problems)
            check.samples += 1
    except TAR_DAMAGE as err:
        check.problems.append(f"damaged tar: {describe(err)}")
    if check.samples != record.samples:
        check.problems.append(f"{check.samples} samples, the manifest says {record.samples}")
    return check


def _verify_one(args: tuple[Manifest, ShardRecord]) -> ShardCheck:
    return verify_shard(*args)


def find_manifests(path: str) -> list[str]:
    """Manifests named by ``path``: a manifest file, a shard-set folder, or a folder of shard-set folders."""
    root = Path(path)
    if root.is_file():
        return [str(root)]
    if (root / "manifest.json").is_file():
        return [str(root / "manifest.json")]
    found = sorted(str(p) for p in root.glob("*/manifest.json")) if root.is_dir() else []
    if not found:
        raise FileNotFoundError(f"no shard manifest at {path} (nor in its subfolders)")
    return found


def verify_sets(paths: list[str], workers: int = 1) -> bool:
    """Verify every shard of every set, print counts and problems; True when all are whole."""
    whole = True
    for path in paths:
        manifest = read_manifest(path)
        jobs = [(manifest, record) for record in manifest.shards]
        if workers > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                checks = list(pool.map(_verify_one, jobs))
        else:
            checks = [_verify_one(job) for job in jobs]
        damaged = [c for c in checks if c.problems]
        samples = sum(c.samples for c in checks)
        frames = sum(c.frames for c in checks)
        counts = manifest.counts
        if not checks:
            whole = False
            print(f"{manifest.path}: DAMAGED: the manifest lists no shards")
            continue
        print(
            f"{manifest.path}: {len(checks)} shards, {samples} {manifest.modality}s ({frames} frames), "
            f"{len(manifest.subjects)} subjects; labelled: aus {counts.with_aus}, expression {counts.with_expression}, "
            f"valence/arousal {counts.with_valence_arousal}; damaged shards: {len(damaged)}"
        )
        for check in damaged:
            whole = False
            for problem in check.problems[:20]:
                print(f"  DAMAGED {check.path}: {problem}")
            if len(check.problems) > 20:
                print(f"  DAMAGED {check.path}: ... {len(check.problems) - 20} more problems")
    return whole
