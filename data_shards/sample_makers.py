"""Turn one build input into the samples of a shard: a fitted image, aligned faces, clips.

With ``faces="none"`` an input is taken to be a face already (pre-cropped sets such as Face9M):
an image becomes one sample fitted to a square, a video or frame folder becomes clips
(:mod:`data_shards.clip_windows`) of fitted frames. With ``faces="detect"`` a photo becomes one
sample per detected face (``<key>_f<i>``, largest first) and each clip one face track (the
largest face, followed by overlap; a lost track ends the clip, which is kept when it holds at
least half its window), with landmarks smoothed over time and every frame aligned to the
template. Photos and videos without a usable face, and clip windows without a track, are
counted (``dropped_no_face``, ``dropped_no_face_clips``); faces below ``min_face`` count as
``dropped_small``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from data_shards.clip_windows import ClipWindow, ClipWindowing, TimedFrame, clip_windows
from data_shards.faces.alignment import align_face
from data_shards.faces.config import FaceConfig
from data_shards.faces.detector import Face, FaceDetector, shared_detector
from data_shards.faces.tracking import follow_face, smooth_landmarks
from data_shards.manifest import LabelCounts
from data_shards.media import encode_jpeg, fit_square, load_image
from data_shards.schema import Labels
from data_shards.sources import SourceItem

Members = list[tuple[str, bytes]]


class NoFace(ValueError):
    """The input holds no usable face; the writer drops and counts it."""


@dataclass
class Preparation:
    """How every input of a build becomes samples (sent to each writer process)."""

    modality: str
    img_size: int
    min_size: int
    jpeg_quality: int
    windowing: ClipWindowing
    faces: str = "none"
    face: FaceConfig = dataclasses.field(default_factory=FaceConfig)


@dataclass
class Sample:
    """One sample ready for the tar: its key, its image members in order, its labels."""

    key: str
    members: Members
    labels: Labels


def _usable(faces: list[Face], config: FaceConfig, counts: LabelCounts) -> list[Face]:
    large = [face for face in faces if face.size >= config.min_face]
    counts.dropped_small += len(faces) - len(large)
    return large


def _read_photo(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def _photo_faces(item: SourceItem, prep: Preparation, detector: FaceDetector, counts: LabelCounts) -> Iterator[Sample]:
    pixels = _read_photo(item.path)
    found = detector.detect(pixels)
    faces = _usable(found, prep.face, counts)
    if not faces:
        if not found:
            raise NoFace(f"no face in {item.path}")
        return
    for index, face in enumerate(faces):
        crop = align_face(pixels, face.landmarks, prep.img_size, prep.face.margin)
        labels = dataclasses.replace(item.labels, face=face.as_label())
        yield Sample(f"{item.key}_f{index}", [("jpg", encode_jpeg(crop, prep.jpeg_quality))], labels)


def _frame_members(frames: list[np.ndarray], quality: int) -> Members:
    return [(f"f{i:04d}.jpg", encode_jpeg(frame, quality)) for i, frame in enumerate(frames)]


def _clip_key(item: SourceItem, window: ClipWindow, prep: Preparation) -> str:
    return item.key if prep.windowing.sampling == "spread" else f"{item.key}_c{window.index}"


def _tracked_clip(window: ClipWindow, prep: Preparation, detector: FaceDetector, cache: dict[int, list[Face]], counts: LabelCounts) -> tuple[list[TimedFrame], list[np.ndarray], Face] | None:
    """The frames, aligned crops and first face of the window's face track, or None when it holds no track long enough."""
    for frame in window.frames:
        if frame.index not in cache:
            cache[frame.index] = _usable(detector.detect(frame.pixels), prep.face, counts)
    start, track = follow_face([cache[frame.index] for frame in window.frames], prep.face.min_iou)
    if len(track) < max(1, (len(window.frames) + 1) // 2):
        return None
    frames = window.frames[start : start + len(track)]
    points = smooth_landmarks(np.stack([face.landmarks for face in track]), prep.face.smooth)
    crops = [align_face(frame.pixels, landmarks, prep.img_size, prep.face.margin) for frame, landmarks in zip(frames, points)]
    return frames, crops, track[0]


def _clips(item: SourceItem, prep: Preparation, counts: LabelCounts) -> Iterator[Sample]:
    detector = shared_detector(prep.face) if prep.faces == "detect" else None
    cache: dict[int, list[Face]] = {}
    produced = windows = 0
    for window in clip_windows(item.path, prep.windowing):
        windows += 1
        labels = dataclasses.replace(item.labels, fps=window.fps)
        if detector is None:
            frames = window.frames
            crops = [fit_square(Image.fromarray(frame.pixels), prep.img_size, prep.min_size) for frame in frames]
        else:
            first_index = window.frames[0].index
            for index in [i for i in cache if i < first_index]:  # windows move forward: forget frames behind them
                del cache[index]
            tracked = _tracked_clip(window, prep, detector, cache, counts)
            if tracked is None:
                counts.dropped_no_face_clips += 1
                continue
            frames, crops, first_face = tracked
            labels = dataclasses.replace(labels, face=first_face.as_label())
        labels = dataclasses.replace(labels, time=(frames[0].time, frames[-1].time))
        produced += 1
        yield Sample(_clip_key(item, window, prep), _frame_members(crops, prep.jpeg_quality), labels)
    if detector is not None and windows and not produced:
        raise NoFace(f"no face track in {item.path}")


def make_samples(item: SourceItem, prep: Preparation, counts: LabelCounts) -> Iterator[Sample]:
    """The samples of one input; a missing/damaged input raises ``OSError``/``ValueError``, one too small :class:`TooSmall`, one without a face :class:`NoFace`."""
    if prep.modality == "clip":
        yield from _clips(item, prep, counts)
    elif prep.faces == "detect":
        yield from _photo_faces(item, prep, shared_detector(prep.face), counts)
    else:
        pixels = load_image(item.path, prep.img_size, prep.min_size, item.box)
        yield Sample(item.key, [("jpg", encode_jpeg(pixels, prep.jpeg_quality))], item.labels)

