"""Release a fine-tuning checkpoint as the ``task`` release kind (:mod:`face_core.release.task`).

The folder gets the encoder + MoAE + task heads (the IAT identity head and the subject
vocabulary are left out), the recipe (IAT off), the task spec, the per-AU decision thresholds
chosen on validation and the ``lineage`` of the checkpoint it was made from; what is written is
loaded back before the folder is kept.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from face_core.evaluation.metrics import DEFAULT_THRESHOLDS
from face_core.model.config import ViTConfig
from face_core.release.folder import write_release_folder
from face_core.release.pretrained import release_lineage
from face_core.release.task import KIND, LOADER_MODULE, inference_parts, rebuild
from finetune.config import FinetuneConfig
from plumbing.recipes import config_from_dict

THRESHOLD_PREFIX = "threshold_index_au_"


def release_finetuned(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the model of a fine-tuning checkpoint (``<run>/checkpoints/best.ckpt``) to the new folder ``out``."""
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
    encoder_config = config_from_dict(ViTConfig, hparams["encoder_config"], f"{source}: encoder_config")
    model_config, spec = inference_parts(hparams["config"], hparams["spec"], str(source))
    recipe = config_from_dict(FinetuneConfig, hparams["config"], f"{source}: config")
    recipe = dataclasses.replace(recipe, iat=dataclasses.replace(recipe.iat, strength=0.0), model=model_config)
    rebuild(encoder_config, model_config, spec, state, str(source))  # what is written must load
    meta = {
        "kind": KIND, "loader_module": LOADER_MODULE, "encoder_config": dataclasses.asdict(encoder_config), "config": dataclasses.asdict(recipe),
        "spec": dataclasses.asdict(spec), "au_thresholds": thresholds, "lineage": release_lineage(source),
    }  # fmt: skip
    return write_release_folder(folder, state, meta)
