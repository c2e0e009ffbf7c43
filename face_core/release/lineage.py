"""Where a model came from, read from the files a training run leaves in its folder.

A run folder holds ``mlflow_run.json`` (the MLflow run it logged to) and ``config.json`` (its
resolved recipe, whose ``data`` section names the shard manifests). From them:

* :func:`training_lineage`: what a release of one of the run's checkpoints records (the training
  run, the recipe and the SHA-256 of every data manifest it names);
* :func:`checkpoint_lineage`: the tags of a run that starts from a local checkpoint or release
  folder (its path, the SHA-256 of its weights, the MLflow run that trained it).

Shard sets given as brace patterns have no manifest and are not recorded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from face_core.release.folder import CONFIG_FILE, WEIGHTS_FILE
from plumbing.files import file_sha256
from plumbing.tracking_store import CONFIG_RECORD, read_run_record, run_folder_of

MANIFEST_FILE = "manifest.json"


def manifest_checksums(data: Mapping[str, Any]) -> dict[str, str]:
    """SHA-256 of each manifest a recipe's ``data`` section names (a ``.json`` file or a shard-set folder), by entry.

    The per-modality sections (``data.images``, ``data.clips``) are read too. A manifest named but gone is recorded as ``missing``.
    """
    found: dict[str, str] = {}
    for value in data.values():
        if isinstance(value, Mapping):
            found.update(manifest_checksums(value))
            continue
        for entry in value if isinstance(value, list) else [value]:
            if not isinstance(entry, str) or not entry:
                continue
            path = Path(entry)
            manifest = path / MANIFEST_FILE if path.is_dir() else path
            if manifest.suffix == ".json":
                found[entry] = file_sha256(manifest) if manifest.is_file() else "missing"
    return found


def training_lineage(checkpoint: str | Path) -> dict[str, Any]:
    """What a release of ``checkpoint`` records about its training: run, store, recipe, data manifests' SHA-256.

    Empty when the checkpoint is not inside a run folder of ours (a public file, a release folder).
    """
    run_dir = run_folder_of(checkpoint)
    record = read_run_record(run_dir)
    recipe_path = run_dir / CONFIG_RECORD
    recipe = json.loads(recipe_path.read_text()) if recipe_path.is_file() else None
    if record is None and recipe is None:
        return {}
    lineage: dict[str, Any] = {"checkpoint": str(checkpoint)}
    if record is not None:
        lineage.update(training_run_id=record["run_id"], training_tracking_uri=record["tracking_uri"])
    if isinstance(recipe, dict):
        lineage.update(recipe=recipe, data_manifests_sha256=manifest_checksums(recipe.get("data") or {}))
    return lineage


def weights_sha256(path: str | Path) -> str | None:
    """SHA-256 of a checkpoint file, or of a release folder's weights (recorded in its ``config.json``); None otherwise."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    config = path / CONFIG_FILE
    if config.is_file():
        recorded = json.loads(config.read_text()).get("weights_sha256")
        if recorded:
            return str(recorded)
    return file_sha256(path / WEIGHTS_FILE) if (path / WEIGHTS_FILE).is_file() else None


def checkpoint_lineage(path: str | Path) -> dict[str, str]:
    """Tags naming a local starting point: ``init``, ``init.sha256`` and, from its run folder, ``init.run_id``/``init.tracking_uri``."""
    tags = {"init": str(path)}
    checksum = weights_sha256(path)
    if checksum:
        tags["init.sha256"] = checksum
    record = read_run_record(run_folder_of(path))
    if record is not None:
        tags.update({"init.run_id": record["run_id"], "init.tracking_uri": record["tracking_uri"]})
        if record.get("experiment_id"):
            tags["init.experiment_id"] = record["experiment_id"]
    return tags
