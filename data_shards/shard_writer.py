"""Write one shard: fit and encode its inputs, tar them under a temporary name, rename when whole.

Runs in a builder worker process. The shard's sidecar summary (``<shard>.json``) is renamed into
place after the tar, so a shard counts as finished only when both exist; a build killed half-way
leaves at most a temporary file, which the next run overwrites.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path

from data_shards.manifest import LabelCounts, ShardRecord, ShardSummary
from data_shards.media import TooSmall, encode_jpeg, load_clip, load_image
from data_shards.sources import SourceItem
from plumbing.files import atomic_path, file_sha256, write_json_atomic

log = logging.getLogger(__name__)


@dataclass
class ShardJob:
    """One shard to write: its index, its inputs and how to prepare them."""

    index: int
    items: list[SourceItem]
    out_dir: str
    modality: str
    img_size: int
    min_size: int
    clip_frames: int
    jpeg_quality: int


def shard_name(index: int) -> str:
    """File name of shard ``index``."""
    return f"shard-{index:06d}.tar"


def summary_path(out_dir: str | Path, index: int) -> Path:
    """Where the finished shard's summary sidecar lives."""
    return Path(out_dir) / f"{shard_name(index)}.json"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o444
    tar.addfile(info, io.BytesIO(data))


def _count(counts: LabelCounts, labels: dict) -> None:
    counts.samples += 1
    counts.with_subject += "subject" in labels
    counts.with_aus += bool(labels.get("aus"))
    counts.with_expression += "expression" in labels
    counts.with_valence_arousal += "valence" in labels and "arousal" in labels
    for au, value in labels.get("aus", {}).items():
        counts.au_positive[au] = counts.au_positive.get(au, 0) + (value == 1)
    if "expression" in labels:
        key = str(labels["expression"])
        counts.expression[key] = counts.expression.get(key, 0) + 1
    if "subject" in labels:
        counts.subject[labels["subject"]] = counts.subject.get(labels["subject"], 0) + 1


def write_shard(job: ShardJob) -> ShardSummary:
    """Write shard ``job.index`` and its summary; inputs too small or unreadable are counted and dropped."""
    final = Path(job.out_dir) / shard_name(job.index)
    counts = LabelCounts()
    subjects: set[str] = set()
    sources: set[str] = set()
    with atomic_path(final) as tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for item in job.items:
            try:
                if job.modality == "image":
                    members = [("jpg", encode_jpeg(load_image(item.path, job.img_size, job.min_size, item.box), job.jpeg_quality))]
                else:
                    frames = load_clip(item.path, job.img_size, job.min_size, job.clip_frames)
                    members = [(f"f{i:04d}.jpg", encode_jpeg(frame, job.jpeg_quality)) for i, frame in enumerate(frames)]
            except TooSmall:
                counts.dropped_small += 1
                continue
            except (OSError, ValueError, SyntaxError) as err:  # PIL and PyAV report damaged files this way
                counts.dropped_unreadable += 1
                if counts.dropped_unreadable <= 3:  # a few per shard; the manifest counts them all
                    log.warning("shard %d: dropping unreadable input %s: %s", job.index, item.path, err)
                continue
            labels = item.labels.to_json()
            for suffix, data in members:
                _add(tar, f"{item.key}.{suffix}", data)
            _add(tar, f"{item.key}.json", json.dumps(labels).encode())
            _count(counts, labels)
            if item.labels.subject is not None:
                subjects.add(item.labels.subject)
            if item.labels.source is not None:
                sources.add(item.labels.source)
    record = ShardRecord(final.name, counts.samples, final.stat().st_size, file_sha256(final))
    summary = ShardSummary(record, job.index, sorted(subjects), sorted(sources), counts)
    write_json_atomic(summary_path(job.out_dir, job.index), asdict(summary))
    return summary
