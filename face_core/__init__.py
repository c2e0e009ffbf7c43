"""The parts both training stages share: the model, the training engine, releases and evaluation.

``face_core.model`` (ViT, MAE, task heads, MoAE, checkpoint formats: plain PyTorch),
``face_core.engine`` (the Lightning trainer and what it runs on), ``face_core.release`` (release
folders, loading any checkpoint, the MLflow registry, exports) and ``face_core.evaluation``
(the one metrics module, the linear probe, scoring a release, the demo table).

``face_core.load_model(path_or_uri)`` loads any checkpoint we know (see :mod:`face_core.release.loading`);
it is imported on first use so ``import face_core`` stays light (no torch).
"""

from typing import Any

__all__ = ["load_model"]


def __getattr__(name: str) -> Any:
    if name == "load_model":
        from face_core.release.loading import load_model

        return load_model
    raise AttributeError(f"module 'face_core' has no attribute {name!r}")
