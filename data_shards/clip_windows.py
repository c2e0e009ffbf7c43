"""Cut a video or a frame folder into clips: windows of N frames at a fixed rate, hopping through the source.

``windows`` (the default for unlabelled videos): clip ``j`` starts at ``j * hop`` seconds and
takes ``frames`` frames at ``fps`` (the source's own rate when slower or when ``fps`` is 0), so
a 20 s interview gives many short clips with their facial dynamics intact. A source shorter than
one window gives one clip of the frames it has; a last window that the source cannot fill is
left out. ``clips_per_video`` caps the clips of one source, spread evenly over its length.
``spread`` (labelled clip sets, whose one label covers the whole clip): one clip of ``frames``
frames spread evenly over the source (0 = every frame).

Frames are decoded in one pass and converted to pixels only when a window takes them, so memory
holds the open windows, not the video. Frame folders have no clock: their frames are taken to
be ``folder_fps`` apart.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from data_shards.media import VIDEO_SUFFIXES, frame_files, pick_frames


@dataclass
class ClipWindowing:
    """How clips are cut from one source (see the module docstring)."""

    frames: int = 16
    sampling: str = "windows"
    fps: float = 25.0
    hop: float = 0.0
    clips_per_video: int = 0
    folder_fps: float = 25.0


@dataclass
class TimedFrame:
    """One source frame: its index in the source, its time in seconds from the first frame, its pixels on demand."""

    index: int
    time: float
    handle: Any = field(repr=False)

    @cached_property
    def pixels(self) -> np.ndarray:
        """RGB uint8 HWC pixels at the source's resolution."""
        if isinstance(self.handle, str):
            with Image.open(self.handle) as image:
                return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
        return self.handle.to_ndarray(format="rgb24")


@dataclass
class ClipWindow:
    """One clip cut from a source: its position among the source's clips and its frames in order."""

    index: int
    frames: list[TimedFrame]
    fps: float

    @property
    def time(self) -> tuple[float, float]:
        """[start, end] seconds of the clip in its source."""
        return self.frames[0].time, self.frames[-1].time


@dataclass
class _Timeline:
    frames: Iterator[TimedFrame]
    rate: float
    duration: float | None
    count: int | None


def _video_timeline(container: Any) -> _Timeline:
    stream = container.streams.video[0]
    rate = float(stream.average_rate or stream.guessed_rate or 25.0)
    duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
    if duration is None and container.duration:
        duration = container.duration / 1_000_000
    count = stream.frames or None

    def frames() -> Iterator[TimedFrame]:
        first = None
        for index, frame in enumerate(container.decode(stream)):
            seconds = frame.time if frame.time is not None else index / rate
            first = seconds if first is None else first
            yield TimedFrame(index, seconds - first, frame)

    return _Timeline(frames(), rate, duration, count)


def _folder_timeline(folder: str, rate: float) -> _Timeline:
    files = frame_files(folder)
    if not files:
        raise ValueError(f"no frame images in {folder}")
    frames = (TimedFrame(i, i / rate, path) for i, path in enumerate(files))
    return _Timeline(frames, rate, len(files) / rate, len(files))


def _spread(timeline: _Timeline, keep: int) -> Iterator[ClipWindow]:
    if timeline.count:  # the frame count is known: keep only the chosen frames while decoding
        wanted = set(pick_frames(timeline.count, keep))
        chosen = [frame for frame in timeline.frames if frame.index in wanted]
    else:
        frames = list(timeline.frames)
        chosen = [frames[i] for i in pick_frames(len(frames), keep)]
    if not chosen:
        return
    span = chosen[-1].time - chosen[0].time
    yield ClipWindow(0, chosen, (len(chosen) - 1) / span if span > 0 else timeline.rate)


def _starts(timeline: _Timeline, config: ClipWindowing, rate: float) -> Iterator[float]:
    span = (config.frames - 1) / rate
    hop = config.hop or config.frames / rate
    if timeline.duration is None:
        index = 0
        while not config.clips_per_video or index < config.clips_per_video:
            yield index * hop
            index += 1
        return
    last_frame = timeline.duration - 1.0 / timeline.rate  # the duration includes the last frame's display time
    fitting = max(1, int((last_frame - span) / hop + 1e-6) + 1)
    take = min(fitting, config.clips_per_video or fitting)
    for i in range(take):
        yield (round(i * (fitting - 1) / (take - 1)) if take > 1 else 0) * hop


def _windows(timeline: _Timeline, config: ClipWindowing) -> Iterator[ClipWindow]:
    if config.frames < 1:
        raise ValueError("windows need clip_frames >= 1")
    rate = min(config.fps, timeline.rate) if config.fps > 0 else timeline.rate
    tolerance = 0.5 / timeline.rate
    starts = _starts(timeline, config, rate)
    upcoming = next(starts, None)
    open_windows: list[tuple[float, list[TimedFrame]]] = []
    emitted = 0
    for frame in timeline.frames:
        while upcoming is not None and frame.time >= upcoming - tolerance:
            open_windows.append((upcoming, []))
            upcoming = next(starts, None)
        for start, taken in open_windows:
            if frame.time >= start + len(taken) / rate - tolerance:
                taken.append(frame)
        while open_windows and len(open_windows[0][1]) == config.frames:
            yield ClipWindow(emitted, open_windows.pop(0)[1], rate)
            emitted += 1
        if upcoming is None and not open_windows:
            return
    if emitted == 0 and open_windows and open_windows[0][1]:  # a source shorter than one window: one clip of what it has
        yield ClipWindow(0, open_windows[0][1], rate)


def clip_windows(path: str, config: ClipWindowing) -> Iterator[ClipWindow]:
    """The clips of the video file or frame folder at ``path``; damage raises ``OSError``/``ValueError``."""
    if os.path.isdir(path):
        timeline = _folder_timeline(path, config.folder_fps)
        yield from _spread(timeline, config.frames) if config.sampling == "spread" else _windows(timeline, config)
        return
    if not path.lower().endswith(VIDEO_SUFFIXES):
        raise ValueError(f"{path} is neither a frame folder nor a video file ({', '.join(VIDEO_SUFFIXES)})")
    import av

    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError(f"no video stream in {path}")
        timeline = _video_timeline(container)
        windows = _spread(timeline, config.frames) if config.sampling == "spread" else _windows(timeline, config)
        found = False
        for window in windows:
            found = True
            yield window
        if not found:
            raise ValueError(f"no video frames in {path}")
