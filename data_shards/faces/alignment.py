"""Aligned square face crops: a similarity transform of five landmarks onto a canonical template.

The template is ArcFace's five points in its 112 x 112 crop (eyes, nose tip, mouth corners,
in the detector's order). ``margin`` widens the crop around that square by a fraction of its side
on each side, so the eyes of every crop sit at the same pixels, :func:`template_points`. The
transform (rotation, uniform scale, translation) is the least-squares fit of Umeyama (1991).
"""

from __future__ import annotations

import numpy as np

ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
) / 112.0
"""The five template points as fractions of the ArcFace 112-pixel crop."""


def template_points(size: int, margin: float) -> np.ndarray:
    """Where the five landmarks land in a ``size`` x ``size`` crop with ``margin`` (5, 2)."""
    inner = size / (1.0 + 2.0 * margin)
    return ARCFACE_TEMPLATE * inner + (size - inner) / 2.0


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2 x 3 similarity matrix that maps ``source`` points onto ``target`` points with least squares."""
    source, target = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    source_mean, target_mean = source.mean(0), target.mean(0)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.T @ source_centred / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(singular) @ sign) / source_centred.var(0).sum()
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = target_mean - scale * rotation @ source_mean
    return matrix


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int, margin: float) -> np.ndarray:
    """The ``size`` x ``size`` RGB crop of ``image`` with ``landmarks`` moved onto the template (black outside the image).

    A face much larger than the crop is first shrunk with area averaging (around the crop only),
    so the warp does not alias.
    """
    import cv2

    matrix = similarity_transform(landmarks, template_points(size, margin))
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
        inverse = cv2.invertAffineTransform(matrix)
        region = corners @ inverse[:, :2].T + inverse[:, 2]
        left, top = np.floor(region.min(0)).astype(int) - 2
        right, bottom = np.ceil(region.max(0)).astype(int) + 2
        left, top = max(left, 0), max(top, 0)
        right, bottom = min(right, image.shape[1]), min(bottom, image.shape[0])
        if right > left and bottom > top:
            shrink = 2.0 * scale
            part = image[top:bottom, left:right]
            small = cv2.resize(part, (max(1, round(part.shape[1] * shrink)), max(1, round(part.shape[0] * shrink))), interpolation=cv2.INTER_AREA)
            factor = np.array([small.shape[1] / part.shape[1], small.shape[0] / part.shape[0]])
            moved = (np.asarray(landmarks, dtype=np.float64) - [left, top]) * factor
            return align_face(small, moved, size, margin)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
