"""Turn a raw sample (its tar members) into uint8 pixels and label values, augmenting on the CPU.

Training views: a random resized crop (the same box on every frame of a clip) and a horizontal
flip; clips take ``num_frames`` frames at ``frame_stride`` from a random start. Evaluation views:
the whole face resized, frames from the centre of the clip. Only the frames used are decoded;
resizing uses torch's uint8 bilinear kernel (about 3x faster than PIL's here).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import torch

from data_shards.manifest import Manifest
from data_shards.media import decode_jpeg
from data_shards.schema import MISSING_AU
from plumbing.recipes import ConfigError


@dataclass
class ViewConfig:
    """How a sample becomes pixels."""

    modality: str
    img_size: int
    num_frames: int
    frame_stride: int
    crop_scale: tuple[float, float]
    crop_ratio: tuple[float, float]
    hflip: float
    train: bool


class LabelMap:
    """Maps a sample's JSON labels onto the loader's vocabulary (the union of its shard sets')."""

    def __init__(self, manifests: list[Manifest]) -> None:
        au_ids = sorted({au for m in manifests for au in m.au_ids}, key=lambda au: (len(au), au))
        named = [m for m in manifests if m.class_names]
        for other in named[1:]:
            if other.class_names != named[0].class_names:
                raise ConfigError(f"class_names differ between {named[0].path} and {other.path}: {named[0].class_names} vs {other.class_names}")
        self.au_ids = au_ids
        self.class_names = named[0].class_names if named else []
        self.subjects = sorted({s for m in manifests for s in m.subjects}) if len(manifests) > 1 else list(manifests[0].subjects)
        self._au_column = {au: i for i, au in enumerate(au_ids)}
        self._subject_index = {s: i for i, s in enumerate(self.subjects)}

    def labels(self, raw: bytes) -> tuple[np.ndarray, int, int, float, float]:
        """(aus with NaN for missing, expression or -1, subject index or -1, valence, arousal) of a ``json`` member."""
        record = json.loads(raw)
        aus = np.full(len(self.au_ids), np.nan, dtype=np.float32)
        for au, value in record.get("aus", {}).items():
            if value != MISSING_AU:
                aus[self._au_column[au]] = float(value)
        subject = self._subject_index.get(record["subject"], -1) if "subject" in record else -1
        return aus, int(record.get("expression", -1)), subject, float(record.get("valence", math.nan)), float(record.get("arousal", math.nan))


def crop_box(width: int, height: int, view: ViewConfig, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a random resized crop; the whole image when not training."""
    low, high = view.crop_scale
    if not view.train or (low >= 1.0 and high >= 1.0):
        return 0, 0, width, height
    area = width * height
    log_lo, log_hi = math.log(view.crop_ratio[0]), math.log(view.crop_ratio[1])
    for _ in range(10):
        target = area * rng.uniform(low, high)
        ratio = math.exp(rng.uniform(log_lo, log_hi))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, (width + side) // 2, (height + side) // 2


def frame_indices(stored: int, view: ViewConfig, rng: np.random.Generator) -> list[int]:
    """Which stored frames make the clip: ``num_frames`` at ``frame_stride``, spread evenly if the clip is short."""
    span = (view.num_frames - 1) * view.frame_stride + 1
    if stored >= span:
        start = int(rng.integers(0, stored - span + 1)) if view.train else (stored - span) // 2
        return [start + i * view.frame_stride for i in range(view.num_frames)]
    return [min(stored - 1, int(i * stored / view.num_frames)) for i in range(view.num_frames)]


def _fit(frames: torch.Tensor, box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    """Crop ``(N, 3, H, W)`` uint8 frames to ``box`` and resize to ``size`` (torch's uint8 bilinear kernel)."""
    left, top, right, bottom = box
    frames = frames[:, :, top:bottom, left:right]
    if frames.shape[-2:] == (size, size):
        return frames
    return torch.nn.functional.interpolate(frames, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def sample_pixels(members: dict[str, bytes], view: ViewConfig, rng: np.random.Generator) -> torch.Tensor:
    """Uint8 pixels of a sample: ``(3, H, W)`` for an image, ``(3, T, H, W)`` for a clip (possibly strided views)."""
    flip = view.train and view.hflip > 0 and rng.random() < view.hflip
    if view.modality == "image":
        pixels = decode_jpeg(members["jpg"])
        box = crop_box(pixels.shape[1], pixels.shape[0], view, rng)
        out = _fit(torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0), box, view.img_size)[0]
        return out.flip(-1) if flip else out
    names = sorted(name for name in members if name.endswith(".jpg"))
    if not names:
        raise KeyError("clip sample has no frames")
    chosen = frame_indices(len(names), view, rng)
    unique = sorted(set(chosen))
    decoded = np.stack([decode_jpeg(members[names[i]]) for i in unique])
    box = crop_box(decoded.shape[2], decoded.shape[1], view, rng)
    fitted = _fit(torch.from_numpy(decoded).permute(0, 3, 1, 2), box, view.img_size)
    clip = fitted[[unique.index(i) for i in chosen]] if len(unique) != len(chosen) else fitted
    clip = clip.permute(1, 0, 2, 3)
    return clip.flip(-1) if flip else clip
