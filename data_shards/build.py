"""Build a shard set from a :class:`~data_shards.sources.Source`: streamed, parallel, resumable, in parts.

Inputs are cut into shards of ``samples_per_shard`` in stream order (shard ``i`` holds inputs
``i*S .. (i+1)*S-1``), so every process and every part of a job array agrees on the cut without
listing the dataset. Part ``p`` of ``n`` writes the shards with ``i % n == p``; finished shards
(tar and summary present) are kept on a re-run, and the temporary files of this part's killed
writers are removed. Each part writes ``part-PPPP-of-NNNN.json``; when all parts are present the
manifest is merged (also by ``python -m data_shards merge``). Whatever was dropped or skipped
(inputs too small, unreadable, without a face, malformed label lines, symlink loops) is counted
in the manifest and named on the final line.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from data_shards.clip_windows import ClipWindowing
from data_shards.faces.config import FaceConfig
from data_shards.faces.detector import DetectorUnavailable, check_detector
from data_shards.manifest import DROP_COUNTS, LabelCounts, Manifest, ShardSummary, merge_summaries
from data_shards.sample_makers import Preparation
from data_shards.shard_writer import ShardJob, remove_stale_temporaries, summary_path, write_shard
from data_shards.sources import Source, SourceItem
from plumbing.files import write_json_atomic
from plumbing.recipes import ConfigError

Problems = list[tuple[str, str]]


@dataclass
class BuildConfig:
    """How shards are written.

    Args:
        img_size: side of the stored square faces (pre-cropped faces: short side resized, centre crop; detected faces: aligned crop).
        min_size: pre-cropped inputs whose short side is below this are dropped; -1 = ``img_size``, 0 = keep all
            (detected faces are filtered by ``detect.min_face`` instead).
        samples_per_shard: inputs (images, videos, frame folders) per shard; one input may give several samples
            (faces, clip windows): aim for shards of ~100-500 MB at scale.
        clip_frames: frames per clip: the window's length (``spread``: frames spread over the whole source, 0 = every frame).
        clip_sampling: ``windows`` (many clips per video: ``clip_frames`` at ``clip_fps``, every ``clip_hop`` s),
            ``spread`` (one clip per source), ``auto`` (spread for labelled clip sets, whose label covers the clip; else windows).
        clip_fps: frame rate of windowed clips (a slower source keeps its own); 0 = the source's rate.
        clip_hop: seconds from one clip's start to the next; 0 = one clip's length (clips follow each other).
        clips_per_video: most clips per source, spread evenly over it; 0 = no limit.
        folder_fps: frame rate that frame folders are taken to have (they carry no clock).
        jpeg_quality: JPEG quality of stored frames.
        workers: parallel writer processes on this machine.
        num_parts: parts of a job array building this set together.
        part: this job's part in ``[0, num_parts)``; -1 = ``$SLURM_ARRAY_TASK_ID`` (else 0).
        progress: show a progress bar.
    """

    img_size: int = 224
    min_size: int = -1
    samples_per_shard: int = 1000
    clip_frames: int = 16
    clip_sampling: Literal["auto", "windows", "spread"] = "auto"
    clip_fps: float = 25.0
    clip_hop: float = 0.0
    clips_per_video: int = 0
    folder_fps: float = 25.0
    jpeg_quality: int = 90
    workers: int = 1
    num_parts: int = 1
    part: int = -1
    progress: bool = True

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found: Problems = []
        for name in ("img_size", "samples_per_shard", "workers", "num_parts"):
            if getattr(self, name) < 1:
                found.append((name, "must be >= 1"))
        if self.min_size < -1:
            found.append(("min_size", "must be -1 (= img_size), 0 (keep all) or a size"))
        if self.clip_frames < 0:
            found.append(("clip_frames", "must be >= 0"))
        if self.clip_sampling == "windows" and self.clip_frames < 1:
            found.append(("clip_frames", "must be >= 1 with clip_sampling=windows"))
        for name in ("clip_fps", "clip_hop"):
            if getattr(self, name) < 0:
                found.append((name, "must be >= 0"))
        if self.folder_fps <= 0:
            found.append(("folder_fps", "must be > 0"))
        if self.clips_per_video < 0:
            found.append(("clips_per_video", "must be >= 0 (0 = no limit)"))
        if not 1 <= self.jpeg_quality <= 100:
            found.append(("jpeg_quality", "must be in [1, 100]"))
        if self.part >= self.num_parts or self.part < -1:
            found.append(("part", f"must be in [0, num_parts={self.num_parts}) or -1"))
        return found

    def windowing(self, whole_clips: bool) -> ClipWindowing:
        """How clips are cut, ``auto`` resolved by whether the source's labels cover whole clips."""
        sampling = self.clip_sampling if self.clip_sampling != "auto" else ("spread" if whole_clips else "windows")
        if sampling == "windows" and self.clip_frames < 1:
            raise ConfigError("shards.clip_frames=0 (every frame) needs shards.clip_sampling=spread; windows need a length")
        return ClipWindowing(self.clip_frames, sampling, self.clip_fps, self.clip_hop, self.clips_per_video, self.folder_fps)

    def resolved_part(self) -> int:
        """This job's part: the flag, else ``$SLURM_ARRAY_TASK_ID``, else 0."""
        if self.part >= 0:
            return self.part
        task = int(os.environ.get("SLURM_ARRAY_TASK_ID", "0"))
        if not 0 <= task < self.num_parts:
            raise ConfigError(f"SLURM_ARRAY_TASK_ID={task} is outside [0, num_parts={self.num_parts})")
        return task


@dataclass
class BuildReport:
    """What one build call did."""

    shards_written: int
    shards_kept: int
    samples_written: int
    seconds: float
    manifest: str
    losses: str = ""

    def line(self) -> str:
        """A one-line summary for the terminal, naming what was dropped or skipped."""
        rate = self.samples_written / self.seconds if self.seconds else 0.0
        where = self.manifest or "waiting for other parts (python -m data_shards merge)"
        dropped = f"; dropped or skipped: {self.losses}" if self.losses else ""
        return (
            f"wrote {self.shards_written} shards ({self.samples_written} samples, {rate:.0f} samples/s), "
            f"kept {self.shards_kept} finished{dropped}; manifest: {where}"
        )


def _chunks(items: Iterator[SourceItem], size: int) -> Iterator[tuple[int, list[SourceItem]]]:
    chunk: list[SourceItem] = []
    index = 0
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield index, chunk
            index, chunk = index + 1, []
    if chunk:
        yield index, chunk


def _part_file(out: Path, part: int, num_parts: int) -> Path:
    return out / f"part-{part:04d}-of-{num_parts:04d}.json"


def build_shards(
    source: Source, out_dir: str, modality: str, config: BuildConfig, faces: str = "none", face: FaceConfig | None = None
) -> BuildReport:
    """Write this part's shards of ``source`` into ``out_dir`` and merge the manifest when all parts are done.

    ``faces``: ``none`` (inputs are faces already) or ``detect`` (find, align and track faces with ``face``).
    """
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    part = config.resolved_part()
    face = face or FaceConfig()
    if faces == "detect":
        try:
            check_detector(face)
        except DetectorUnavailable as err:
            raise ConfigError(str(err)) from None
    min_size = config.img_size if config.min_size == -1 else config.min_size
    prep = Preparation(modality, config.img_size, min_size, config.jpeg_quality, config.windowing(source.whole_clips), faces, face)
    frames = config.clip_frames if modality == "clip" else 1
    remove_stale_temporaries(out, lambda index: index % config.num_parts == part)
    start = time.perf_counter()
    written = kept = samples = total_shards = 0
    counts = LabelCounts()
    bar = tqdm(unit="input", desc=f"{out.name} part {part}/{config.num_parts}", disable=not config.progress)
    pending: set[Future[ShardSummary]] = set()

    def collect(done: set[Future[ShardSummary]]) -> None:
        nonlocal written, samples
        for future in done:
            summary = future.result()
            written += 1
            samples += summary.record.samples
            counts.add(summary.counts)
            bar.update(len(jobs.pop(summary.index)))

    jobs: dict[int, list[SourceItem]] = {}
    with ProcessPoolExecutor(max_workers=config.workers) as pool:
        for index, items in _chunks(source.items(), config.samples_per_shard):
            total_shards = index + 1
            if index % config.num_parts != part:
                continue
            if summary_path(out, index).is_file() and (out / json.loads(summary_path(out, index).read_text())["record"]["name"]).exists():
                kept += 1
                continue
            if len(pending) >= 2 * config.workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                collect(done)
            jobs[index] = items
            pending.add(pool.submit(write_shard, ShardJob(index, items, str(out), prep)))
        collect(set(wait(pending).done))
    bar.close()
    counts.skipped = dict(source.skips.counts)
    header = {"modality": modality, "img_size": config.img_size, "frames": frames, "au_ids": source.au_ids, "class_names": source.class_names}
    write_json_atomic(
        _part_file(out, part, config.num_parts), {**header, "total_shards": total_shards, "num_parts": config.num_parts, "skipped": counts.skipped}
    )
    manifest, losses = "", counts.losses()
    if all(_part_file(out, p, config.num_parts).is_file() for p in range(config.num_parts)):
        merged = merge_parts(str(out))
        manifest, losses = merged.path, merged.counts.losses()
        if merged.num_samples == 0:
            raise ConfigError(
                f"build of {out}: no sample was written from {total_shards} shard(s) of inputs "
                f"({losses or 'no input found'}; check that label paths are relative to the media folder)"
            )
    return BuildReport(written, kept, samples, time.perf_counter() - start, manifest, losses)


def merge_parts(out_dir: str) -> Manifest:
    """Merge the part files and shard summaries in ``out_dir`` into ``manifest.json``; errors name what is missing."""
    out = Path(out_dir)
    parts = sorted(out.glob("part-*-of-*.json"))
    if not parts:
        raise FileNotFoundError(f"no part-*-of-*.json in {out}: run python -m data_shards build first")
    headers = [json.loads(path.read_text()) for path in parts]
    num_parts = headers[0]["num_parts"]
    missing = [p for p in range(num_parts) if not _part_file(out, p, num_parts).is_file()]
    if missing:
        raise FileNotFoundError(f"{out}: parts {missing} of {num_parts} have not finished")
    summaries = []
    for index in range(headers[0]["total_shards"]):
        path = summary_path(out, index)
        if not path.is_file():
            raise FileNotFoundError(f"{out}: shard {index} is not finished ({path.name} missing); re-run its part")
        summaries.append(ShardSummary.from_json(json.loads(path.read_text())))
    header = {key: headers[0][key] for key in ("modality", "img_size", "frames", "au_ids", "class_names")}
    manifest = merge_summaries([s for s in summaries if s.record.samples > 0], **header)
    for name in DROP_COUNTS:  # shards left empty hold only drops
        setattr(manifest.counts, name, sum(getattr(s.counts, name) for s in summaries))
    manifest.counts.skipped = dict(headers[0].get("skipped", {}))  # every part reads the whole source: the same skips
    path = out / "manifest.json"
    write_json_atomic(path, manifest.to_json())
    manifest.path = str(path.resolve())
    return manifest
