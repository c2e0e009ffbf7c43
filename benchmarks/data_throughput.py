"""Data throughput: our shard pipeline vs webdataset's default PIL pipeline and ImageFolder + PIL, on the same images.

Prints, in one run: shard building in images/s per process; training-input images/s per worker
for (a) our shard pipeline (``train_loader``: a webdataset pipeline over our tar parser,
simplejpeg decode, random resized crop with torch's uint8 kernel, flip, uint8 batches), (a2) the
same pipeline with webdataset's own tar reading (``tar_file_expander``, tarfile) in place of our
parser, (b) webdataset's default pipeline over the same shards (``WebDataset(...).shuffle()
.decode("pil")``, torchvision RandomResizedCrop and flip on PIL images, ``batched``) and (c) the
usual file baseline (one JPEG per image, torchvision ``ImageFolder``, PIL, the same transforms);
clips/s per worker for 16-frame clips; and the clip storage choice (16 JPEG frames vs one mp4:
decode time and size). "Per worker" = one process, one thread (num_workers=0,
torch.set_num_threads(1)), so the figure is also a per-core figure. The image pipelines are
timed in turn, ``--rounds`` times; the medians are printed.

    python benchmarks/data_throughput.py [--images 2000] [--clips 64] [--size 224] [--rounds 3] [--out /tmp/bench]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO
from unittest import mock

import numpy as np
import torch
from webdataset.tariterators import tar_file_expander

from data_shards import tar_samples
from data_shards.build import BuildConfig, BuildReport, build_shards
from data_shards.loaders import LoaderConfig, train_loader
from data_shards.media import encode_jpeg
from data_shards.sources import label_file_source
from data_shards.synth import AU_IDS, CLASS_NAMES, draw_sample, identity_of
from data_shards.synth_faces import render_face

CROP_SCALE = (0.35, 1.0)


def photo_like(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add sensor-like noise so JPEG sizes and decode costs resemble real face crops (~15-25 KB at 224)."""
    noise = rng.normal(0, 9, pixels.shape)
    return np.clip(pixels.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def write_raw(root: Path, images: int, clips: int, size: int, frames: int) -> tuple[Path, Path]:
    """One JPEG per image (the baseline's input) and frame folders per clip, with JSONL labels."""
    import json

    rng = np.random.default_rng(0)
    image_rows, clip_rows = [], []
    for i in range(images):
        sample = draw_sample(0, "train", i, 1)
        pixels = photo_like(render_face(identity_of(0, sample.subject), sample.frames[0], sample.poses[0], size), rng)
        rel = f"images/class{sample.expression}/{i:06d}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(encode_jpeg(pixels, 90))
        image_rows.append({"path": rel, "subject": f"s{sample.subject:03d}", "expression": sample.expression})
    for i in range(clips):
        sample = draw_sample(0, "train", i, frames)
        identity = identity_of(0, sample.subject)
        folder = root / f"clips/{i:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for t, (aus, pose) in enumerate(zip(sample.frames, sample.poses)):
            (folder / f"f{t:03d}.jpg").write_bytes(encode_jpeg(photo_like(render_face(identity, aus, pose, size), rng), 90))
        clip_rows.append({"path": f"clips/{i:05d}", "subject": f"s{sample.subject:03d}", "expression": sample.expression})
    (root / "images.jsonl").write_text("".join(json.dumps(r) + "\n" for r in image_rows))
    (root / "clips.jsonl").write_text("".join(json.dumps(r) + "\n" for r in clip_rows))
    return root / "images.jsonl", root / "clips.jsonl"


def timed(batches: Iterator, count: int) -> tuple[float, float]:
    """(samples per wall-clock second, samples per CPU second of this process) over ``count`` batches.

    The CPU-second figure is the per-core rate even when other jobs share the cores.
    """
    next(batches)
    wall, cpu, seen = time.perf_counter(), time.process_time(), 0
    for _ in range(count):
        batch = next(batches)
        seen += len(batch["key"] if isinstance(batch, dict) else batch[0])
    return seen / (time.perf_counter() - wall), seen / (time.process_time() - cpu)


def cpu_seconds(work: Callable[[], BuildReport]) -> tuple[BuildReport, float]:
    """Run ``work``; return its result and the CPU seconds it used here and in its (finished) worker processes."""
    before = os.times()
    result = work()
    after = os.times()
    used = sum(getattr(after, f) - getattr(before, f) for f in ("user", "system", "children_user", "children_system"))
    return result, used


def shard_rate(manifest: str, modality: str, size: int, batches: int) -> tuple[float, float]:
    """Samples/s (wall, CPU) of the training loader in this process (one worker, one thread)."""
    config = LoaderConfig(shards=[manifest], modality=modality, batch_size=32 if modality == "image" else 4, img_size=size,
                          num_frames=16, crop_scale=CROP_SCALE, num_workers=0, shuffle_buffer=256, samples_per_epoch=10**7)
    return timed(iter(train_loader(config)), batches)


def webdataset_tar_members(stream: BinaryIO, path: str) -> Iterator[dict[str, Any]]:
    """webdataset's own tar iteration (tarfile in stream mode), in the place of our parser ``tar_samples.tar_members``."""
    return tar_file_expander([{"url": path, "stream": stream}], eof_value=None)


def webdataset_reader_rate(manifest: str, size: int, batches: int) -> tuple[float, float]:
    """(a2): our training pipeline with webdataset's tar reading swapped in for our parser."""
    with mock.patch.object(tar_samples, "tar_members", webdataset_tar_members):
        return shard_rate(manifest, "image", size, batches)


def pil_augment(size: int) -> Callable:
    """torchvision's random resized crop and flip on a PIL image, to a uint8 tensor (the baselines' transform)."""
    from torchvision import transforms

    return transforms.Compose([
        transforms.RandomResizedCrop(size, scale=CROP_SCALE, antialias=True),
        transforms.RandomHorizontalFlip(),
        transforms.PILToTensor(),
    ])


def webdataset_rate(manifest: str, size: int, batches: int) -> tuple[float, float]:
    """Images/s of webdataset's default pipeline on our shards: resampled shards, shuffle, PIL decode, torchvision transforms."""
    import webdataset as wds

    from data_shards.manifest import read_manifest

    dataset = (
        wds.WebDataset(read_manifest(manifest).shard_paths(), resampled=True, shardshuffle=False)
        .shuffle(256)
        .decode("pil")
        .to_tuple("jpg", "json")
        .map_tuple(pil_augment(size), lambda labels: labels)
        .batched(32, partial=False)
    )
    return timed(iter(wds.WebLoader(dataset, batch_size=None, num_workers=0)), batches)


def imagefolder_rate(root: Path, size: int, batches: int) -> tuple[float, float]:
    """Images/s of an ImageFolder-style dataset (one JPEG per file, PIL) with the same crop and flip, uint8 output."""
    from torch.utils.data import DataLoader
    from torchvision import datasets

    dataset = datasets.ImageFolder(str(root / "images"), transform=pil_augment(size))
    return timed(iter(DataLoader(dataset, batch_size=32, shuffle=True, num_workers=0)), min(batches, len(dataset) // 32 - 1))


def clip_format(root: Path) -> dict[str, float]:
    """Decode time (ms) and size (KB) of one 16-frame clip as 16 JPEG frames vs one mp4 (PyAV, libx264)."""
    import av
    import simplejpeg

    frames = sorted((root / "clips/00000").glob("*.jpg"))
    jpegs = [f.read_bytes() for f in frames]
    decoded = [simplejpeg.decode_jpeg(b) for b in jpegs]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = decoded[0].shape[1], decoded[0].shape[0], "yuv420p"
        for pixels in decoded:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    mp4 = buffer.getvalue()
    start = time.perf_counter()
    for _ in range(20):
        [simplejpeg.decode_jpeg(b) for b in jpegs]
    jpeg_ms = (time.perf_counter() - start) / 20 * 1000
    start = time.perf_counter()
    for _ in range(20):
        with av.open(io.BytesIO(mp4)) as container:
            [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    mp4_ms = (time.perf_counter() - start) / 20 * 1000
    return {"jpeg_ms": jpeg_ms, "jpeg_kb": sum(map(len, jpegs)) / 1024, "mp4_ms": mp4_ms, "mp4_kb": len(mp4) / 1024}


def cpu_model() -> str:
    """The CPU's model name (Linux), else the platform's machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main() -> None:
    """Run every measurement and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", type=int, default=40, help="timed batches per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="times (a), (b) and (c) are each measured, in turn")
    parser.add_argument("--out", default="/tmp/face-data-bench")
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = Path(args.out)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    load = os.getloadavg()[0]
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, load average {load:.1f}, Python {platform.python_version()}, torch {torch.__version__}")
    start = time.perf_counter()
    image_labels, clip_labels = write_raw(root, args.images, args.clips, args.size, 16)
    sizes = [p.stat().st_size for p in (root / "images").rglob("*.jpg")]
    print(f"inputs: {args.images} images and {args.clips} 16-frame clips at {args.size} px, mean JPEG {np.mean(sizes) / 1024:.1f} KB ({time.perf_counter() - start:.0f} s to render)")

    config = BuildConfig(img_size=args.size, samples_per_shard=500, workers=1, progress=False)
    source = label_file_source(str(root), str(image_labels), "bench", AU_IDS, CLASS_NAMES)
    report, cpu = cpu_seconds(lambda: build_shards(source, str(root / "shards-images"), "image", config))
    print(f"build (1 writer process): {report.samples_written / report.seconds:.0f} images/s wall clock, "
          f"{report.samples_written / cpu:.0f} images per CPU-second")
    clip_config = BuildConfig(img_size=args.size, samples_per_shard=32, clip_frames=16, workers=1, progress=False)
    clip_source = label_file_source(str(root), str(clip_labels), "bench", AU_IDS, CLASS_NAMES)
    clip_report, cpu = cpu_seconds(lambda: build_shards(clip_source, str(root / "shards-clips"), "clip", clip_config))
    print(f"build (1 writer process): {clip_report.samples_written / clip_report.seconds:.1f} clips/s wall clock, "
          f"{clip_report.samples_written / cpu:.1f} clips per CPU-second")

    pipelines = {
        "(a) our shard pipeline": lambda: shard_rate(report.manifest, "image", args.size, args.batches),
        "(a2) the same, tars read by webdataset's tarfile": lambda: webdataset_reader_rate(report.manifest, args.size, args.batches),
        "(b) webdataset default (PIL + torchvision)": lambda: webdataset_rate(report.manifest, args.size, args.batches),
        "(c) ImageFolder + PIL": lambda: imagefolder_rate(root, args.size, args.batches),
    }
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in pipelines}
    for _ in range(args.rounds):
        for name, measure in pipelines.items():
            rates[name].append(measure())
    median = {name: (float(np.median([r[0] for r in runs])), float(np.median([r[1] for r in runs]))) for name, runs in rates.items()}
    for name, (wall, cpu) in median.items():
        per_round = ", ".join(f"{r[1]:.0f}" for r in rates[name])
        print(f"{name}: {wall:.0f} images/s per worker wall clock, {cpu:.0f} images per CPU-second (per core; rounds: {per_round})")
    ours, wds_reader, wds_default, folder = median.values()
    print(f"speed-up (a)/(a2), our tar parser over webdataset's: {ours[0] / wds_reader[0]:.2f}x wall clock, {ours[1] / wds_reader[1]:.2f}x per core")
    print(f"speed-up (a)/(b): {ours[0] / wds_default[0]:.2f}x wall clock, {ours[1] / wds_default[1]:.2f}x per core")
    print(f"speed-up (a)/(c): {ours[0] / folder[0]:.2f}x wall clock, {ours[1] / folder[1]:.2f}x per core")
    clips = shard_rate(clip_report.manifest, "clip", args.size, max(4, args.batches // 4))
    print(f"clips (16 frames, stride 1): {clips[0]:.1f} clips/s per worker wall clock, {clips[1]:.1f} clips per CPU-second ({clips[1] * 16:.0f} frames)")
    fmt = clip_format(root)
    print(f"clip storage: 16 JPEG frames {fmt['jpeg_kb']:.0f} KB, decode {fmt['jpeg_ms']:.1f} ms; "
          f"mp4 (x264) {fmt['mp4_kb']:.0f} KB, decode {fmt['mp4_ms']:.1f} ms")


if __name__ == "__main__":
    main()
