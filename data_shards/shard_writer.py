"""Write one shard: turn its inputs into samples, tar them under a temporary name, rename when whole.

Runs in a builder worker process. The shard's sidecar summary (``<shard>.json``) is renamed into
place after the tar, so a shard counts as finished only when both exist; a build killed half-way
leaves at most a temporary file, which the next run of the same part removes
(:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import io
import json
import logging
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from data_shards.manifest import LabelCounts, ShardRecord, ShardSummary
from data_shards.media import TooSmall
from data_shards.sample_keys import display_path
from data_shards.sample_makers import NoFace, Preparation, Sample, make_samples
from data_shards.sources import SourceItem
from plumbing.files import atomic_path, file_sha256, write_json_atomic

log = logging.getLogger(__name__)


@dataclass
class ShardJob:
    """One shard to write: its index, its inputs and how to prepare them."""

    index: int
    items: list[SourceItem]
    out_dir: str
    prep: Preparation


def shard_name(index: int) -> str:
    """File name of shard ``index``."""
    return f"shard-{index:06d}.tar"


def summary_path(out_dir: str | Path, index: int) -> Path:
    """Where the finished shard's summary sidecar lives."""
    return Path(out_dir) / f"{shard_name(index)}.json"


_TEMPORARY = re.compile(r"^\.shard-(\d{6,})\.tar(\.json)?\.tmp-\d+$")


def remove_stale_temporaries(out_dir: str | Path, owned: Callable[[int], bool]) -> int:
    """Remove the temporary files of killed writers of the shards ``owned(index)`` (this part's); returns how many.

    Only this part's shards: another part of a job array may be writing its own right now.
    """
    removed = 0
    for path in Path(out_dir).glob(".shard-*.tmp-*"):
        match = _TEMPORARY.match(path.name)
        if match and owned(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


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


def _next_sample(samples: Iterator[Sample], counts: LabelCounts, shard: int, path: str) -> Sample | None:
    """The input's next sample, or None when it has no more; its dropping is counted (a failure of the tar itself is not caught here)."""
    try:
        return next(samples)
    except StopIteration:
        return None
    except TooSmall:
        counts.dropped_small += 1
    except NoFace:
        counts.dropped_no_face += 1
    except (OSError, ValueError, SyntaxError) as err:  # PIL and PyAV report damaged files this way
        counts.dropped_unreadable += 1
        if counts.dropped_unreadable <= 3:  # a few per shard; the manifest counts them all
            log.warning("shard %d: dropping unreadable input %s: %s", shard, display_path(path), err)
    return None


def write_shard(job: ShardJob) -> ShardSummary:
    """Write shard ``job.index`` and its summary; inputs too small, unreadable or without a face are counted and dropped."""
    final = Path(job.out_dir) / shard_name(job.index)
    counts = LabelCounts()
    subjects: set[str] = set()
    sources: set[str] = set()
    with atomic_path(final) as tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for item in job.items:
            samples = make_samples(item, job.prep, counts)
            while (sample := _next_sample(samples, counts, job.index, item.path)) is not None:
                labels = sample.labels.to_json()
                for suffix, data in sample.members:
                    _add(tar, f"{sample.key}.{suffix}", data)
                _add(tar, f"{sample.key}.json", json.dumps(labels).encode())
                _count(counts, labels)
                if sample.labels.subject is not None:
                    subjects.add(sample.labels.subject)
                if sample.labels.source is not None:
                    sources.add(sample.labels.source)
    record = ShardRecord(final.name, counts.samples, final.stat().st_size, file_sha256(final))
    summary = ShardSummary(record, job.index, sorted(subjects), sorted(sources), counts)
    write_json_atomic(summary_path(job.out_dir, job.index), asdict(summary))
    return summary
