"""Fine-tuned model releases: encoder + MoAE + task heads as safetensors + JSON, nothing pickled.

The folder has the layout of :mod:`pretrain.release_format` (``model.safetensors`` +
``config.json``, written under a temporary name and renamed when whole) with kind ``task``.
``config.json`` holds what rebuilds the network through :func:`finetune.model_builder.build_task_model`:
the encoder config, the fine-tuning recipe, the task spec (modalities, tasks, AU ids, class
names) and the per-AU decision thresholds chosen on validation, plus the package version and
the weights' SHA-256 (checked on reading).

The identity head of IAT is left out, and so is the subject vocabulary: a released model
predicts AUs and expressions, it does not carry the training subjects' names.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.config import FinetuneConfig, config_from_dict
from pretrain.config import ViTConfig

if TYPE_CHECKING:  # torch stays out of `python -m finetune --help`
    import torch

    from finetune.heads import FaceTaskModel
    from finetune.task_spec import TaskSpec

KIND = "task"
FORMAT_VERSION = 1
THRESHOLD_PREFIX = "threshold_index_au_"


@dataclass
class TaskRelease:
    """A fine-tuned release read from disk (weights verified).

    Args:
        model: the task model in eval mode (no identity head).
        spec: modalities, tasks, AU ids and class names (no subjects).
        encoder_config: the encoder's config (input size and frames).
        recipe: the fine-tuning recipe it came from (IAT off), e.g. for the clip frame stride.
        au_thresholds: per modality, the decision threshold of each AU chosen on validation.
        package_version: version of this package that wrote it.
    """

    model: FaceTaskModel
    spec: TaskSpec
    encoder_config: ViTConfig
    recipe: FinetuneConfig
    au_thresholds: dict[str, list[float]]
    package_version: str


def inference_parts(config: dict[str, Any], spec: dict[str, Any]) -> tuple[FinetuneConfig, TaskSpec]:
    """The recipe and spec a released model is rebuilt from: IAT off, no subject vocabulary."""
    from finetune.task_spec import TaskSpec

    recipe = config_from_dict(FinetuneConfig, config)
    recipe.iat = dataclasses.replace(recipe.iat, strength=0.0)
    recipe.model = dataclasses.replace(recipe.model, freeze_backbone=False)
    return recipe, dataclasses.replace(TaskSpec(**spec), subjects=[], subject_maps={})


def rebuild(encoder_config: ViTConfig, recipe: FinetuneConfig, spec: TaskSpec, state: dict[str, torch.Tensor], source: str) -> FaceTaskModel:
    """The task model for these parts with ``state`` loaded strictly, in eval mode."""
    from finetune.model_builder import build_task_model

    model = build_task_model(encoder_config, recipe, spec)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{source}: weights do not match the stored config: {error}") from None
    return model.eval()


def release_finetuned(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the model of a fine-tuning checkpoint (``<run>/checkpoints/best.ckpt``) to the new folder ``out``."""
    import torch
    from safetensors.torch import save_file

    from finetune.metrics import DEFAULT_THRESHOLDS
    from pretrain.release_format import CONFIG_FILE, FORMAT_NAME, WEIGHTS_FILE, file_sha256, package_version

    source, folder = Path(checkpoint), Path(out)
    if not source.is_file():
        raise FileNotFoundError(f"checkpoint {source}: no such file (a fine-tuning run keeps checkpoints/best.ckpt)")
    stored = torch.load(source, map_location="cpu", weights_only=True)
    hparams = stored.get("hyper_parameters", {})
    if not {"encoder_config", "config", "spec"} <= set(hparams):
        raise ValueError(f"{source}: not a fine-tuning checkpoint of ours (hyper_parameters lack encoder_config/config/spec)")
    state = {k.removeprefix("model."): v for k, v in stored["state_dict"].items() if k.startswith("model.") and not k.startswith("model.identity_head.")}
    thresholds = {
        key.removeprefix(THRESHOLD_PREFIX): [DEFAULT_THRESHOLDS[int(i)] for i in value.tolist()]
        for key, value in stored["state_dict"].items()
        if key.startswith(THRESHOLD_PREFIX)
    }
    encoder_config = ViTConfig(**hparams["encoder_config"])
    recipe, spec = inference_parts(hparams["config"], hparams["spec"])
    rebuild(encoder_config, recipe, spec, state, str(source))  # what is written must load
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder}: release folder exists and is not empty; choose a new folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.partial-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        meta = {
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kind": KIND,
            "encoder_config": dataclasses.asdict(encoder_config), "config": dataclasses.asdict(recipe),
            "spec": dataclasses.asdict(spec), "au_thresholds": thresholds,
            "package_version": package_version(), "weights_sha256": file_sha256(staging / WEIGHTS_FILE),
        }  # fmt: skip
        (staging / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        if folder.exists():
            folder.rmdir()
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def read_task_release(folder: str | Path) -> TaskRelease:
    """Read and verify a fine-tuned release folder; errors name the file and what is wrong."""
    from safetensors.torch import load_file

    from pretrain.release_format import CONFIG_FILE, FORMAT_NAME, WEIGHTS_FILE, file_sha256

    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; a release folder holds {WEIGHTS_FILE} and {CONFIG_FILE}")
    meta = json.loads(config_path.read_text())
    if meta.get("format") != FORMAT_NAME or meta.get("kind") != KIND:
        raise ValueError(f"{config_path}: not a fine-tuned release (format {meta.get('format')!r}, kind {meta.get('kind')!r})")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{config_path}: format_version {meta['format_version']} is newer than this package reads ({FORMAT_VERSION}); upgrade")
    actual = file_sha256(weights_path)
    if actual != meta.get("weights_sha256"):
        raise ValueError(f"{weights_path}: SHA-256 {actual} does not match the one recorded in {CONFIG_FILE}; the file is damaged or altered")
    encoder_config = ViTConfig(**meta["encoder_config"])
    recipe, spec = inference_parts(meta["config"], meta["spec"])
    model = rebuild(encoder_config, recipe, spec, load_file(str(weights_path)), str(folder))
    return TaskRelease(model, spec, encoder_config, recipe, meta.get("au_thresholds", {}), meta.get("package_version", "unknown"))


def load_task_model(path_or_uri: str | Path) -> TaskRelease:
    """A fine-tuned release from a folder or an MLflow URI (``models:/name@alias``, ``runs:/<id>/model``)."""
    if str(path_or_uri).startswith(("models:/", "runs:/")):
        from pretrain.mlflow_release import download_release

        return read_task_release(download_release(str(path_or_uri)))
    return read_task_release(path_or_uri)
