"""MAE pretraining of one ViT encoder-decoder on face images and clips (S4D: an image is a static clip).

``pretrain.load_model(path_or_uri)`` loads any checkpoint we know (see :mod:`pretrain.release.loading`);
it is imported on first use so ``import pretrain`` stays light (no torch).
"""

from typing import Any

__all__ = ["load_model"]


def __getattr__(name: str) -> Any:
    if name == "load_model":
        from pretrain.release.loading import load_model

        return load_model
    raise AttributeError(f"module 'pretrain' has no attribute {name!r}")
