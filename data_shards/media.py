"""Reading source media (images, frame folders, video files) and preparing them for a shard.

Faces are resized so the short side equals the target size, then centre-cropped to a square
(the face stays centred, as in pre-cropped face datasets), and JPEG-encoded with simplejpeg.
Inputs whose short side is below a minimum are refused with :class:`TooSmall`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


class TooSmall(ValueError):
    """The input's short side is below the minimum size; the builder drops and counts it."""


def fit_square(image: Image.Image, size: int, min_size: int, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Crop to the face ``box`` (if any), resize the short side to ``size``, centre-crop to a square; RGB uint8 HWC."""
    if box is not None:
        image = image.convert("RGB").crop(box)
    width, height = image.size
    if min(width, height) < min_size:
        raise TooSmall(f"{width}x{height} is below the minimum short side {min_size}")
    if image.format == "JPEG" and box is None:
        image.draft("RGB", (size, size))  # let libjpeg downscale by 1/2, 1/4, 1/8 while decoding
        width, height = image.size
    image = image.convert("RGB")
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=2.0)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)))


def encode_jpeg(pixels: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of an RGB uint8 HWC array."""
    return simplejpeg.encode_jpeg(np.ascontiguousarray(pixels), quality=quality, colorspace="RGB", colorsubsampling="420")


def decode_jpeg(data: bytes) -> np.ndarray:
    """RGB uint8 HWC array of JPEG bytes (simplejpeg: the fastest decoder here)."""
    return simplejpeg.decode_jpeg(data, colorspace="RGB")


def load_image(path: str, size: int, min_size: int, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """One face image from disk (cropped to ``box`` when given), fitted to ``size``."""
    with Image.open(path) as image:
        return fit_square(image, size, min_size, box)


def pick_frames(count: int, keep: int) -> list[int]:
    """Indices of ``keep`` frames spread evenly over ``count`` (all of them when keep is 0 or more)."""
    if keep <= 0 or count <= keep:
        return list(range(count))
    return [int(i * count / keep) for i in range(keep)]


def frame_files(folder: str) -> list[str]:
    """The image files of a frame folder, in name order."""
    names = sorted(entry.name for entry in os.scandir(folder) if entry.name.lower().endswith(IMAGE_SUFFIXES))
    return [os.path.join(folder, name) for name in names]


def load_clip(path: str, size: int, min_size: int, keep_frames: int) -> list[np.ndarray]:
    """The frames of a clip (a folder of frame images or a video file), fitted to ``size``."""
    if os.path.isdir(path):
        files = frame_files(path)
        if not files:
            raise ValueError(f"no frame images in {path}")
        return [load_image(files[i], size, min_size) for i in pick_frames(len(files), keep_frames)]
    if not path.lower().endswith(VIDEO_SUFFIXES):
        raise ValueError(f"{path} is neither a frame folder nor a video file ({', '.join(VIDEO_SUFFIXES)})")
    import av

    with av.open(path) as container:
        images = [frame.to_image() for frame in container.decode(video=0)]
    if not images:
        raise ValueError(f"no video frames in {path}")
    return [fit_square(images[i], size, min_size) for i in pick_frames(len(images), keep_frames)]


def sample_key(relative: str) -> str:
    """A WebDataset key from a relative path: no extension, no dots, '/' kept as '_'."""
    stem = str(Path(relative).with_suffix("")) if Path(relative).suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES else relative
    return stem.replace(os.sep, "_").replace("/", "_").replace(".", "_").replace(" ", "_")
