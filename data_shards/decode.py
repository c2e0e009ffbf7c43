"""Turn a raw sample (its tar members) into uint8 pixels and label values, augmenting on the CPU.

Training views: a random resized crop (the same box on every frame of a clip), a horizontal flip
and, when a recipe asks for it, timm's RandAugment (the same draw on every frame of a clip);
clips take ``num_frames`` frames at ``frame_stride`` from a random start. A clip shorter than
``(num_frames - 1) * frame_stride + 1`` frames keeps the stride and repeats its last strided
frame (VideoMAE/S4D), so every clip is seen at the training frame rate.
Evaluation views: an image is resized whole; a clip's frames are taken at ``frame_stride`` from
its start (padded with the last one as above), ``test_clips`` windows of ``num_frames`` are
spaced over the whole clip, and each window gives ``test_crops`` crops along the long side of
frames whose short side is resized to ``img_size`` (VideoMAE/S4D's multi-view test).
Only the frames used are decoded; resizing uses torch's antialiased uint8 kernels: bilinear for
evaluation (as every reference's test transform), bilinear or bicubic (timm's
``create_transform`` in the references) for training crops. With no RandAugment the whole path
stays on uint8 tensors (fast); RandAugment runs on PIL images after the crop.

A sample gives one view ``(3, H, W)`` / ``(3, T, H, W)``, or with ``repeats`` (training) or
``test_clips * test_crops`` (evaluation) above 1 a stack of views ``(V, 3, ...)``.
"""

from __future__ import annotations

import functools
import json
import math
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageOps
from timm.data.auto_augment import rand_augment_transform

from data_shards.manifest import Manifest
from data_shards.media import decode_jpeg
from data_shards.schema import MISSING_AU
from plumbing.recipes import ConfigError

IMAGENET_MEAN_UINT8 = (124, 116, 104)  # timm's RandAugment fill colour: round(255 * ImageNet mean)
INTERPOLATIONS = ("bilinear", "bicubic")


@dataclass
class ViewOptions:
    """What a view needs beyond crop and flip: interpolation, RandAugment, repeated and multi-view sampling.

    Args:
        interpolation: resizing of training crops, ``bilinear`` or ``bicubic`` (timm's ``create_transform``).
        rand_augment: timm RandAugment config (``rand-m9-mstd0.5-inc1``); empty = off (the fast uint8 path).
        repeats: training: views drawn from each sample read (own crop, flip and RandAugment draw).
        test_clips: evaluation of clips: temporal windows spaced over the whole clip.
        test_crops: evaluation of clips: spatial crops of each window along the long side.
    """

    interpolation: str = "bilinear"
    rand_augment: str = ""
    repeats: int = 1
    test_clips: int = 1
    test_crops: int = 1


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
    options: ViewOptions = field(default_factory=ViewOptions)

    @property
    def views(self) -> int:
        """Views per sample: ``repeats`` in training, ``test_clips * test_crops`` for evaluated clips, else 1."""
        if self.train:
            return self.options.repeats
        return self.options.test_clips * self.options.test_crops if self.modality == "clip" else 1


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


def classes_onto(own: list[str], names: list[str]) -> list[int]:
    """Class ``i`` of ``own`` as an index of ``names`` (matched by name), -1 where ``names`` lacks it."""
    index = {name: i for i, name in enumerate(names)}
    return [index.get(name, -1) for name in own]


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


def strided_positions(stored: int, count: int, stride: int, start: int = 0) -> list[int]:
    """``count`` frame positions from ``start`` at ``stride``; positions past the clip repeat its last strided frame."""
    positions = list(range(start, stored, stride))[:count]
    return positions + [positions[-1]] * (count - len(positions))


def frame_indices(stored: int, view: ViewConfig, rng: np.random.Generator) -> list[int]:
    """Training: ``num_frames`` frames at ``frame_stride`` from a random start (a short clip is padded, not re-strided)."""
    span = (view.num_frames - 1) * view.frame_stride + 1
    start = int(rng.integers(0, stored - span + 1)) if stored > span else 0
    return strided_positions(stored, view.num_frames, view.frame_stride, start)


def window_indices(stored: int, view: ViewConfig) -> list[list[int]]:
    """Evaluation: ``test_clips`` windows of ``num_frames`` strided frames spaced over the whole clip.

    As VideoMAE's test: the clip's frames at ``frame_stride`` from the start (padded with the
    last one to ``num_frames``), window ``i`` starting at ``int(i * (n - num_frames) / (clips - 1))``
    of those ``n``; one window is the centre one.
    """
    strided = strided_positions(stored, max(view.num_frames, len(range(0, stored, view.frame_stride))), view.frame_stride)
    clips, spare = view.options.test_clips, len(strided) - view.num_frames
    starts = [spare // 2] if clips == 1 else [int(i * spare / (clips - 1)) for i in range(clips)]
    return [strided[s : s + view.num_frames] for s in starts]


def _fit(frames: torch.Tensor, box: tuple[int, int, int, int], size: tuple[int, int], interpolation: str) -> torch.Tensor:
    """Crop ``(N, 3, H, W)`` uint8 frames to ``box`` and resize to ``size`` (torch's antialiased uint8 kernels)."""
    left, top, right, bottom = box
    frames = frames[:, :, top:bottom, left:right]
    if tuple(frames.shape[-2:]) == size:
        return frames
    return torch.nn.functional.interpolate(frames, size=size, mode=interpolation, antialias=True, align_corners=False)


def posterize_to_bits(img: Image.Image, bits_to_keep: int, **_: object) -> Image.Image:
    """timm's posterize as the references ran it: 0 bits kept gives a black image.

    ``rand-m9-mstd0.5-inc1`` draws a magnitude of 10 about 2% of the time, which keeps 0 bits;
    the Pillow of the references returned black there, today's Pillow raises ``ValueError``
    (which would count the sample as corrupt).
    """
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


@functools.lru_cache(maxsize=8)
def _rand_augment(config: str, img_size: int, interpolation: str) -> object:
    """timm's RandAugment as ``create_transform`` builds it for ``img_size`` (translate 45 %, ImageNet-mean fill)."""
    pil = Image.Resampling.BICUBIC if interpolation == "bicubic" else Image.Resampling.BILINEAR
    transform = rand_augment_transform(config, {"translate_const": int(img_size * 0.45), "img_mean": IMAGENET_MEAN_UINT8, "interpolation": pil})
    for op in transform.ops:
        if op.name.startswith("Posterize"):
            op.aug_fn = posterize_to_bits
    return transform


def rand_augment_frames(frames: torch.Tensor, view: ViewConfig, seed: int) -> torch.Tensor:
    """RandAugment ``(N, 3, H, W)`` uint8 frames with the same draw on every frame (one image: N = 1).

    timm draws from Python's and NumPy's global generators: both are seeded with ``seed`` before
    each frame (so every frame gets the same operations and magnitudes) and restored afterwards.
    """
    transform = _rand_augment(view.options.rand_augment, view.img_size, view.options.interpolation)
    saved = random.getstate(), np.random.get_state()
    out = torch.empty_like(frames)
    try:
        for slot, frame in zip(out, frames):
            random.seed(seed)
            np.random.seed(seed)
            picture = transform(Image.fromarray(frame.permute(1, 2, 0).numpy()))  # type: ignore[operator]
            slot.copy_(torch.from_numpy(np.array(picture)).permute(2, 0, 1))
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
    return out


def _train_view(frames: torch.Tensor, view: ViewConfig, rng: np.random.Generator) -> torch.Tensor:
    """One training view of ``(N, 3, H, W)`` frames: crop box and flip shared by all frames, then RandAugment."""
    box = crop_box(frames.shape[3], frames.shape[2], view, rng)
    out = _fit(frames, box, (view.img_size, view.img_size), view.options.interpolation)
    if view.hflip > 0 and rng.random() < view.hflip:
        out = out.flip(-1)
    if view.options.rand_augment:
        out = rand_augment_frames(out, view, int(rng.integers(2**32)))
    return out


def _spatial_crops(frames: torch.Tensor, view: ViewConfig) -> list[torch.Tensor]:
    """Evaluation crops of ``(N, 3, H, W)`` frames: short side resized to ``img_size``, ``test_crops`` squares along the long side."""
    height, width = frames.shape[-2:]
    size = view.img_size
    scale = size / min(height, width)
    resized = _fit(frames, (0, 0, width, height), (max(size, round(height * scale)), max(size, round(width * scale))), "bilinear")
    spare = max(resized.shape[-2:]) - size
    crops = view.options.test_crops
    starts = [spare // 2] if crops == 1 else [int(i * spare / (crops - 1)) for i in range(crops)]
    if resized.shape[-2] >= resized.shape[-1]:
        return [resized[:, :, s : s + size, :] for s in starts]
    return [resized[:, :, :, s : s + size] for s in starts]


def _stacked(views: list[torch.Tensor]) -> torch.Tensor:
    return views[0] if len(views) == 1 else torch.stack(views)


def sample_pixels(members: dict[str, bytes], view: ViewConfig, rng: np.random.Generator) -> torch.Tensor:
    """Uint8 pixels of a sample: ``(3, H, W)`` / ``(3, T, H, W)``, or ``(V, ...)`` with ``view.views`` > 1."""
    if view.modality == "image":
        image = torch.from_numpy(decode_jpeg(members["jpg"])).permute(2, 0, 1).unsqueeze(0)
        if not view.train:
            return _fit(image, (0, 0, image.shape[3], image.shape[2]), (view.img_size, view.img_size), "bilinear")[0]
        return _stacked([_train_view(image, view, rng)[0] for _ in range(view.views)])
    names = sorted(name for name in members if name.endswith(".jpg"))
    if not names:
        raise KeyError("clip sample has no frames")
    windows = [frame_indices(len(names), view, rng)] if view.train else window_indices(len(names), view)
    unique = sorted({i for window in windows for i in window})
    decoded = torch.from_numpy(np.stack([decode_jpeg(members[names[i]]) for i in unique])).permute(0, 3, 1, 2)
    rows = {index: row for row, index in enumerate(unique)}
    if view.train:
        frames = decoded[[rows[i] for i in windows[0]]]
        return _stacked([_train_view(frames, view, rng).permute(1, 0, 2, 3) for _ in range(view.views)])
    return _stacked([crop.permute(1, 0, 2, 3) for window in windows for crop in _spatial_crops(decoded[[rows[i] for i in window]], view)])
