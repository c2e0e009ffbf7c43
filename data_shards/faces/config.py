"""Settings of face detection, alignment and tracking at build time (``--detect.*`` on the command line)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Problems = list[tuple[str, str]]


@dataclass
class FaceConfig:
    """How faces are found, cropped and followed when building with ``--faces detect``.

    Args:
        margin: border around the canonical 5-point template's square, as a fraction of its side on
            each side (0 = the tight ArcFace 112 crop; 0.25 keeps forehead and chin).
        min_face: faces whose detector box has a shorter side below this many source pixels are dropped (counted as small).
        min_score: detector confidence below which a face is ignored.
        detect_size: longest side of the image the detector sees (larger inputs are scaled down for detection only; crops come from full resolution).
        device: ``auto`` (CUDA when onnxruntime sees a GPU), ``cpu`` or ``cuda``.
        threads: detector threads per build worker (the build's parallelism is ``--shards.workers``).
        smooth: frames in the moving average of a clip's landmarks (1 = none), so crops do not jitter.
        min_iou: overlap of a face's box with the previous frame's that continues a track.
        nms: overlap above which the weaker of two detections is suppressed.
    """

    margin: float = 0.25
    min_face: int = 64
    min_score: float = 0.9
    detect_size: int = 640
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 1
    smooth: int = 5
    min_iou: float = 0.3
    nms: float = 0.4

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found: Problems = []
        if not 0.0 <= self.margin <= 2.0:
            found.append(("margin", "must be in [0, 2]"))
        for name in ("min_score", "min_iou", "nms"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                found.append((name, "must be in [0, 1]"))
        for name in ("threads", "smooth"):
            if getattr(self, name) < 1:
                found.append((name, "must be >= 1"))
        if self.detect_size < 32:
            found.append(("detect_size", "must be >= 32"))
        if self.min_face < 0:
            found.append(("min_face", "must be >= 0"))
        return found
