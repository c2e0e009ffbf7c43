"""MLflow ``python_function`` inference for fine-tuned releases: AU and expression probabilities.

The loader module MLflow imports for releases of kind ``task`` (see :mod:`pretrain.pyfunc_model`
for the mechanism: the installed package rebuilds the network from ``config.json`` and
``model.safetensors``; nothing from the artifact runs). Input: uint8 pixels of the model's first
modality, ``(B, 3, H, W)`` images (``(B, 3, T, H, W)`` for clip-only models). Output, float32:
``embedding`` (B, D), ``au_probabilities`` (B, AUs) and/or ``expression_probabilities``
(B, classes); the AU ids, class names and validation thresholds are in the model's metadata.
"""

from __future__ import annotations

from pathlib import Path

import torch

from finetune.heads import head_name
from pretrain.pyfunc_model import FacePredictor, ReleaseDescription

OUTPUT_NAMES = {"au": "au_probabilities", "expression": "expression_probabilities"}


def task_predictor(folder: str | Path) -> tuple[FacePredictor, dict[str, object]]:
    """The predictor of a fine-tuned release folder, and the label metadata to record with it."""
    from finetune.task_release import read_task_release

    release = read_task_release(folder)
    spec, config, model = release.spec, release.encoder_config, release.model
    modality = "image" if "image" in spec.modalities else "clip"
    heads = {task: head_name(task, modality) for task in spec.tasks_for(modality)}

    def forward(pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        out = model(pixels, list(heads.values()))
        result = {"embedding": out["feature"]}
        if "au" in heads:
            result[OUTPUT_NAMES["au"]] = out[heads["au"]].float().sigmoid()
        if "expression" in heads:
            result[OUTPUT_NAMES["expression"]] = out[heads["expression"]].float().softmax(dim=-1)
        return result

    side = (config.in_chans, config.img_size, config.img_size)
    shape = side if modality == "image" else (config.in_chans, config.num_frames, config.img_size, config.img_size)
    labels = {
        "modality": modality, "au_ids": spec.au_ids, "class_names": spec.class_names,
        "au_thresholds": release.au_thresholds.get(modality, []),
    }  # fmt: skip
    return FacePredictor(forward, shape, "task"), labels


def describe_release(folder: str | Path) -> ReleaseDescription:
    """Signature, input example and label metadata of a fine-tuned release folder."""
    predictor, labels = task_predictor(folder)
    description = predictor.describe()
    description.metadata.update(labels)
    return description


def _load_pyfunc(data_path: str) -> FacePredictor:
    """MLflow's loader-module hook: the predictor of the fine-tuned release at ``data_path``."""
    return task_predictor(data_path)[0]
