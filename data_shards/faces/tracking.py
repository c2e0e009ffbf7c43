"""One face followed through the frames of a clip, and its landmarks smoothed over time.

A track starts at the first frame of the window that has a face, with the largest one, and
continues with the face whose box overlaps the previous box most (intersection over union at
least ``min_iou``); the first frame without such a face ends it. Smoothing is a centred moving
average of the landmarks over ``window`` frames (narrower, still centred, at the ends), so crops do not jitter
with the detector's noise while a real head movement is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from data_shards.faces.detector import Face


def box_iou(first: np.ndarray, second: np.ndarray) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (first[2] - first[0]) * (first[3] - first[1]) + (second[2] - second[0]) * (second[3] - second[1]) - inter
    return float(inter / union)


def follow_face(faces_per_frame: Sequence[Sequence[Face]], min_iou: float) -> tuple[int, list[Face]]:
    """(first frame, faces of the track from it on) of the track through ``faces_per_frame`` (largest face first); (0, []) without a face."""
    start = next((i for i, faces in enumerate(faces_per_frame) if faces), None)
    if start is None:
        return 0, []
    track = [max(faces_per_frame[start], key=lambda face: (face.box[2] - face.box[0]) * (face.box[3] - face.box[1]))]
    for faces in faces_per_frame[start + 1 :]:
        scored = [(box_iou(track[-1].box, face.box), face) for face in faces]
        best = max(scored, key=lambda pair: pair[0], default=(0.0, None))
        if best[1] is None or best[0] < min_iou:
            break
        track.append(best[1])
    return start, track


def smooth_landmarks(points: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of ``points`` (T, 5, 2) over ``window`` frames, narrower (still centred) near the ends."""
    if window <= 1 or len(points) < 2:
        return points.copy()
    half = window // 2
    cumulative = np.concatenate([np.zeros((1, *points.shape[1:])), np.cumsum(points, axis=0)])
    smoothed = np.empty_like(points, dtype=np.float64)
    for t in range(len(points)):
        reach = min(half, t, len(points) - 1 - t)  # symmetric: a steady movement is not pulled back at the ends
        smoothed[t] = (cumulative[t + reach + 1] - cumulative[t - reach]) / (2 * reach + 1)
    return smoothed
