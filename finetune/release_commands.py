"""Commands of fine-tuned releases: ``python -m finetune release`` and ``python -m finetune score``.

Kept apart from the modules that do the work (:mod:`finetune.task_release`,
:mod:`finetune.release_scoring`) so that ``--help`` imports nothing heavy.
"""

from __future__ import annotations

import json


def release(checkpoint: str, *, out: str, name: str = "", alias: str = "", tracking_uri: str = "") -> str:
    """Write a fine-tuned model as a release folder (model.safetensors + config.json); optionally register it in MLflow.

    Args:
        checkpoint: a fine-tuning checkpoint, e.g. ``runs/demo/finetune/checkpoints/best.ckpt``.
        out: the new release folder (must not exist or be empty).
        name: also register the folder in the MLflow model registry under this name (``face-au-tiny``).
        alias: with ``name``, point this alias (``champion``) at the new version.
        tracking_uri: MLflow store for ``name``; empty = ``$MLFLOW_TRACKING_URI``, else the checkpoint's training run's.
    """
    from finetune.task_release import release_finetuned

    folder = release_finetuned(checkpoint, out)
    print(f"released the fine-tuned model of {checkpoint} to {folder}")
    if name:
        from pretrain.mlflow_release import register_trained_release

        register_trained_release(folder, name, alias or None, tracking_uri or None, checkpoint)
    return str(folder)


def score(model: str, image_test: list[str] | None = None, clip_test: list[str] | None = None, batch_size: int = 32) -> dict[str, float]:
    """Load a released fine-tuned model (folder or MLflow URI) and print its test metrics as JSON.

    Args:
        model: a release folder or an MLflow URI (``models:/face-au-tiny@champion``, ``runs:/<id>/model``);
            URIs use ``$MLFLOW_TRACKING_URI``.
        image_test: image shard sets to test on.
        clip_test: clip shard sets to test on.
        batch_size: samples per forward pass.
    """
    from finetune.release_scoring import score_release

    results = score_release(model, image_test or [], clip_test or [], batch_size)
    print(json.dumps({"model": model, **results}, indent=2))
    return results
