"""Reading source images and frame folders and preparing pre-cropped faces for a shard.

Pre-cropped faces (``--faces none``) are resized so the short side equals the target size, then
centre-cropped to a square (the face stays centred), and JPEG-encoded with simplejpeg. Inputs
whose short side is below a minimum are refused with :class:`TooSmall`. Videos are cut into
clips by :mod:`data_shards.clip_windows`; detected faces are aligned by :mod:`data_shards.faces`.
"""

from __future__ import annotations

import os

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
