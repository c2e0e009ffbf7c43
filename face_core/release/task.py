"""The fine-tuned release kind ``task``: encoder + MoAE + task heads as safetensors + JSON, nothing pickled; reading it back.

The folder has the layout of :mod:`face_core.release.folder` (``model.safetensors`` +
``config.json``, written under a temporary name and renamed when whole) with kind ``task``, and
names this module as its loader: MLflow's ``python_function`` flavour calls :func:`_load_pyfunc`,
which serves AU and expression probabilities. Input: uint8 pixels of the model's first modality,
``(B, 3, H, W)`` images (``(B, 3, T, H, W)`` for clip-only models). Output, float32:
``embedding`` (B, D), ``au_probabilities`` (B, AUs) and/or ``expression_probabilities``
(B, classes); the AU ids, class names and validation thresholds are in the model's metadata.
``config.json`` (written by fine-tuning's ``release`` command) holds what rebuilds the network through
:func:`face_core.model.task_model.build_task_model`:
the encoder config, the fine-tuning recipe, the task spec (modalities, tasks, AU ids, class
names, and ``class_maps``: which modality learned through its classes mapped by name onto the
heads' ``class_names``, which the scoring applies to that modality's test shards) and
the per-AU decision thresholds chosen on validation, plus the package version, the weights'
SHA-256 (checked on reading) and the ``lineage`` of the checkpoint it was made from (its training
run, recipe, data manifests' and own SHA-256: :func:`face_core.release.pretrained.release_lineage`).

The identity head of IAT is left out, and so is the subject vocabulary: a released model
predicts AUs and expressions, it does not carry the training subjects' names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from face_core.model.config import TaskModelConfig, ViTConfig
from face_core.model.task_model import FaceTaskModel, TaskSpec, build_task_model, head_name
from face_core.release.folder import read_release_folder
from face_core.release.pyfunc import FacePredictor, ReleaseDescription
from face_core.release.registry import URI_SCHEMES, download_release
from plumbing.recipes import config_from_dict

KIND = "task"
LOADER_MODULE = __name__
OUTPUT_NAMES = {"au": "au_probabilities", "expression": "expression_probabilities"}
# How to load this kind, written into its registry description ({uri} is the model's URI).
LOAD_HINT = (
    'Score it: `python -m finetune score {uri} --image_test "[<test manifest.json>]"`. '
    'In Python: `face_core.release.task.load_task_model("{uri}")` (network, task spec, AU thresholds chosen on validation).'
)


@dataclass
class TaskRelease:
    """A fine-tuned release read from disk (weights verified).

    Args:
        model: the task model in eval mode (no identity head).
        spec: modalities, tasks, AU ids and class names (no subjects).
        encoder_config: the encoder's config (input size and frames).
        recipe: the fine-tuning recipe it came from, as recorded (``dataclasses.asdict``).
        frame_stride: the frame stride of its clips in training, which the test keeps.
        au_thresholds: per modality, the decision threshold of each AU chosen on validation.
        package_version: version of this package that wrote it.
    """

    model: FaceTaskModel
    spec: TaskSpec
    encoder_config: ViTConfig
    recipe: dict[str, Any]
    frame_stride: int
    au_thresholds: dict[str, list[float]]
    package_version: str


def inference_parts(config: dict[str, Any], spec: dict[str, Any], source: str) -> tuple[TaskModelConfig, TaskSpec]:
    """The model section and spec a released model is rebuilt from: no frozen backbone, no subject vocabulary."""
    model = config_from_dict(TaskModelConfig, config.get("model", {}), f"{source}: config.model")
    model = dataclasses.replace(model, freeze_backbone=False)
    return model, dataclasses.replace(TaskSpec(**spec), subjects=[], subject_maps={})


def rebuild(encoder_config: ViTConfig, model_config: TaskModelConfig, spec: TaskSpec, state: dict[str, torch.Tensor], source: str) -> FaceTaskModel:
    """The task model for these parts (no identity head) with ``state`` loaded strictly, in eval mode."""
    model = build_task_model(encoder_config, model_config, spec)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{source}: weights do not match the stored config: {error}") from None
    return model.eval()


def recorded_frame_stride(recipe: dict[str, Any]) -> int:
    """The clips' frame stride of a recorded fine-tuning recipe: ``data.clips.frame_stride``, or ``data.clip_stride``
    in releases written before the data sections; 1 when neither is recorded."""
    data = recipe.get("data", {})
    return int(data.get("clips", {}).get("frame_stride", data.get("clip_stride", 1)))


def read_task_release(folder: str | Path) -> TaskRelease:
    """Read and verify a fine-tuned release folder; errors name the file and what is wrong."""
    meta, state = read_release_folder(folder, (KIND,), required=("encoder_config", "config", "spec"))
    encoder_config = config_from_dict(ViTConfig, meta["encoder_config"], f"{folder}: encoder_config")
    model_config, spec = inference_parts(meta["config"], meta["spec"], str(folder))
    model = rebuild(encoder_config, model_config, spec, state, str(folder))
    return TaskRelease(
        model, spec, encoder_config, meta["config"], recorded_frame_stride(meta["config"]), meta.get("au_thresholds", {}), meta.get("package_version", "unknown")
    )


def load_task_model(path_or_uri: str | Path, tracking_uri: str | None = None, flag: str = "") -> TaskRelease:
    """A fine-tuned release from a folder or an MLflow URI (``models:/name@alias``, ``runs:/<id>/model``).

    URIs resolve in ``tracking_uri``, else ``$MLFLOW_TRACKING_URI``; ``flag`` is the command's option for it, named in errors.
    """
    if str(path_or_uri).startswith(URI_SCHEMES):
        return read_task_release(download_release(str(path_or_uri), tracking_uri=tracking_uri, flag=flag))
    if not Path(path_or_uri).exists():
        raise FileNotFoundError(f"{path_or_uri}: no such release folder (or give an MLflow URI: models:/<name>@<alias>, runs:/<id>/model)")
    return read_task_release(path_or_uri)


def task_predictor(folder: str | Path) -> tuple[FacePredictor, dict[str, object]]:
    """The predictor of a fine-tuned release folder, and the label metadata to record with it."""
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
