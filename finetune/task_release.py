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
    from finetune.metrics import DEFAULT_THRESHOLDS
    from pretrain.release_format import write_release_folder

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
    meta = {
        "kind": KIND, "encoder_config": dataclasses.asdict(encoder_config), "config": dataclasses.asdict(recipe),
        "spec": dataclasses.asdict(spec), "au_thresholds": thresholds,
    }  # fmt: skip
    return write_release_folder(folder, state, meta)


def read_task_release(folder: str | Path) -> TaskRelease:
    """Read and verify a fine-tuned release folder; errors name the file and what is wrong."""
    from pretrain.release_format import read_release_folder

    meta, state = read_release_folder(folder, (KIND,), required=("encoder_config", "config", "spec"))
    encoder_config = ViTConfig(**meta["encoder_config"])
    recipe, spec = inference_parts(meta["config"], meta["spec"])
    model = rebuild(encoder_config, recipe, spec, state, str(folder))
    return TaskRelease(model, spec, encoder_config, recipe, meta.get("au_thresholds", {}), meta.get("package_version", "unknown"))


def load_task_model(path_or_uri: str | Path) -> TaskRelease:
    """A fine-tuned release from a folder or an MLflow URI (``models:/name@alias``, ``runs:/<id>/model``)."""
    if str(path_or_uri).startswith(("models:/", "runs:/")):
        from pretrain.mlflow_release import download_release

        return read_task_release(download_release(str(path_or_uri)))
    return read_task_release(path_or_uri)
