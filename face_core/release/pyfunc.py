"""MLflow ``python_function`` inference for released models, built from weights, never unpickled.

MLflow loads a model logged by :mod:`face_core.release.registry` by importing the *loader module*
its release kind names in ``config.json`` (:mod:`face_core.release.pretrained`,
:mod:`face_core.release.task`) from the installed package and calling
``_load_pyfunc(<artifact>/data/release)``, which rebuilds the network from ``config.json`` and
``model.safetensors`` and wraps it in the :class:`FacePredictor` defined here. No code comes from
the artifact. So ``mlflow.pyfunc.load_model("models:/face-mae-vit-b@champion").predict(x)`` works
in any process that has this package installed.

Input: uint8 pixels, channels first: ``(B, 3, H, W)`` images (``(B, 3, T, H, W)`` for clip
models), normalised inside exactly as in training. Output: a dict of float32 arrays; for a
pretrained encoder ``{"embedding": (B, D)}``, the mean of the patch tokens after the final norm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from data_shards.loaders import normalize_pixels

Forward = Callable[[torch.Tensor], dict[str, torch.Tensor]]
DEFAULT_BATCH_SIZE = 32
EXAMPLE_SEED = 0


@dataclass
class ReleaseDescription:
    """What the registry records beside the weights: kind, signature and an input example.

    Args:
        kind: the release kind from ``config.json`` (``encoder``, ``mae``, ``task``...).
        signature: MLflow model signature (tensor input, named tensor outputs, ``batch_size`` param).
        input_example: one seeded random uint8 input of the right shape.
        metadata: what the outputs mean (AU ids, class names...), recorded in the MLmodel.
    """

    kind: str
    signature: Any
    input_example: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)


class FacePredictor:
    """A released network behind MLflow's pyfunc ``predict``: uint8 pixels in, named float32 arrays out.

    Args:
        forward: normalised float pixels -> named output tensors (no gradient is taken).
        input_shape: one sample's shape, ``(3, H, W)`` or ``(3, T, H, W)``.
        kind: the release kind.
    """

    def __init__(self, forward: Forward, input_shape: tuple[int, ...], kind: str) -> None:
        self.forward = forward
        self.input_shape = tuple(input_shape)
        self.kind = kind

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Run the network on ``model_input`` (array-like, uint8) in batches of ``params["batch_size"]``."""
        pixels = torch.as_tensor(np.ascontiguousarray(model_input))
        if tuple(pixels.shape[1:]) != self.input_shape or pixels.dtype != torch.uint8:
            raise ValueError(f"expected uint8 pixels of shape (B, {', '.join(map(str, self.input_shape))}), got {pixels.dtype} {tuple(pixels.shape)}")
        batch_size = int((params or {}).get("batch_size", DEFAULT_BATCH_SIZE))
        chunks: list[dict[str, torch.Tensor]] = []
        with torch.inference_mode():
            for start in range(0, pixels.shape[0], batch_size):
                chunks.append(self.forward(normalize_pixels(pixels[start : start + batch_size])))
        return {name: torch.cat([c[name] for c in chunks]).float().numpy() for name in chunks[0]} if chunks else {}

    def example(self) -> np.ndarray:
        """A seeded random uint8 input with one sample (the logged input example)."""
        return np.random.default_rng(EXAMPLE_SEED).integers(0, 256, (1, *self.input_shape), dtype=np.uint8)

    def describe(self) -> ReleaseDescription:
        """Signature and input example, with output shapes taken from a real forward pass."""
        from mlflow.models import ModelSignature
        from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

        example = self.example()
        outputs = self.predict(example)
        signature = ModelSignature(
            inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, *self.input_shape))]),
            outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *value.shape[1:]), name) for name, value in outputs.items()]),
            params=ParamSchema([ParamSpec("batch_size", "long", DEFAULT_BATCH_SIZE)]),
        )
        return ReleaseDescription(self.kind, signature, example)
