"""Release folders to the MLflow model registry, and back, with nothing executed from the artifact.

A release folder (``model.safetensors`` + ``config.json``, see :mod:`face_core.release.folder`)
is logged as an MLflow ``python_function`` model of the *loader-module* kind: the artifact holds
only data (the folder under ``data/release``, the MLmodel file with the signature, an input
example and pinned requirements) and names as its loader the module that the release kind
records in its ``config.json`` (``loader_module``), which the *installed* package provides. No pickle, no code copied into the artifact. The MLmodel
metadata records the package version and the SHA-256 of every released file;
:func:`download_release` checks them before anyone reads the weights.

Lineage: a release made from a checkpoint of a training run records that run, its recipe and the
SHA-256 of its data manifests (MLmodel metadata ``lineage``, version tags), and the version's
description says how to load it. :func:`source_lineage` gives the tags (and MLflow links) of a
run that starts from a model URI, a release folder or a checkpoint. A URI that names nothing in
the store (an unknown model, alias, version or run) is a :class:`ConfigError` naming the URI and
the store.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata as package_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from face_core.release.folder import CONFIG_FILE, package_version
from face_core.release.lineage import checkpoint_lineage, training_lineage, weights_sha256
from face_core.release.pretrained import KINDS as PRETRAINED_KINDS
from face_core.release.pretrained import LOADER_MODULE as PRETRAINED_LOADER
from plumbing.console import interactive_console
from plumbing.files import file_sha256
from plumbing.recipes import ConfigError
from plumbing.tracking_store import check_reachable, sqlite_artifact_location

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

PACKAGE = "face-foundation"
URI_SCHEMES = ("models:/", "runs:/")
# MLflow's codes for a model, alias, version, run or artifact that the store does not hold.
NOT_FOUND_CODES = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
MODEL_NAME_IN_RUN = "model"
RELEASE_SUBDIR = "release"
DEFAULT_EXPERIMENT = "face-releases"
CACHE_ENV = "FACE_RELEASE_CACHE"
# What a fresh environment needs to serve the model; pinned so MLflow infers nothing (~10 s).
RUNTIME_PACKAGES = ("torch", "safetensors", "numpy", "mlflow")
# How to load a pretrained release; other kinds' loader modules define LOAD_HINT themselves.
PRETRAINED_LOAD_HINT = 'In Python: `face_core.load_model("{uri}")` (the MAE or its ViT encoder, plain PyTorch).'


class ReleaseChecksumError(ValueError):
    """A downloaded release file is missing or its SHA-256 differs from the one recorded at release."""


def folder_checksums(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, keyed by its POSIX path relative to ``folder``."""
    return {path.relative_to(folder).as_posix(): file_sha256(path) for path in sorted(folder.rglob("*")) if path.is_file()}


def pip_requirements() -> list[str]:
    """Pinned requirements of a released model: this project plus its runtime, at installed versions."""
    version = package_version()
    pins = [f"{PACKAGE}=={version}" if version != "unknown" else PACKAGE]
    for name in RUNTIME_PACKAGES:
        try:
            pins.append(f"{name}=={package_metadata.version(name)}")
        except package_metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def store_advice(flag: str = "") -> str:
    """How to point a command at an MLflow store: its ``flag`` when it has one, else ``$MLFLOW_TRACKING_URI``."""
    return f"pass {flag} or set MLFLOW_TRACKING_URI" if flag else "set MLFLOW_TRACKING_URI"


@contextmanager
def tracking_at(tracking_uri: str | None, flag: str = "") -> Iterator[str]:
    """Point MLflow (tracking, and so the registry) at ``tracking_uri`` for the block; restore afterwards.

    None keeps ``$MLFLOW_TRACKING_URI``; with neither, a ``ConfigError`` says what to set (the
    command's ``flag``, when it has one). The server (or database) is checked before anything is
    uploaded. Outside an interactive terminal MLflow's download bars are off (logs keep lines).
    """
    import mlflow

    if not interactive_console(sys.stderr):
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        raise ConfigError(f"no MLflow tracking URI: {store_advice(flag)} (e.g. sqlite:///runs/mlflow.db or http://host:5000)")
    check_reachable(uri)
    before = os.environ.get("MLFLOW_TRACKING_URI")  # set_tracking_uri mirrors itself there
    mlflow.set_tracking_uri(uri)
    try:
        yield uri
    finally:
        mlflow.set_tracking_uri(before)


@contextmanager
def resolving(uri: str, store: str, flag: str = "") -> Iterator[None]:
    """Turn MLflow's "not found" for the model ``uri`` into a ``ConfigError`` naming the URI, the store and its models."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as err:
        if err.error_code not in NOT_FOUND_CODES:
            raise
        message = re.sub(r"^[A-Z_]+: ", "", " ".join(str(err.message).split())).rstrip(".")  # over HTTP it starts with the code
        known = registered_names_hint() if uri.startswith("models:/") else ""
        raise ConfigError(f"{uri}: {message} in the MLflow store {store}{known}; {store_advice(flag)} to the store it was released to") from None


def registered_names_hint(limit: int = 10) -> str:
    """`` (its registered models: a, b)``: some model names of the current store, to spot a typo or the wrong store."""
    from mlflow import MlflowClient

    names = [model.name for model in MlflowClient().search_registered_models(max_results=limit)]
    return f" (its registered models: {', '.join(names)})" if names else " (it holds no registered models)"


def use_experiment(name: str, uri: str) -> None:
    """Make ``name`` the active experiment; a new one on a SQLite store keeps artifacts beside the database."""
    import mlflow

    if uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(name) is None:
        mlflow.create_experiment(name, artifact_location=sqlite_artifact_location(uri))
    mlflow.set_experiment(name)


def loader_module_for(folder: Path, default: str | None = None) -> str:
    """The loader module that ``folder/config.json`` names for its release kind.

    Folders written before releases named their loader carry none: the pretrained kinds get
    :mod:`face_core.release.pretrained`, any other kind ``default`` (its release command passes it).
    """
    config = folder / CONFIG_FILE
    if not config.is_file():
        raise FileNotFoundError(f"{config}: missing; release a checkpoint into a folder first (python -m pretrain release)")
    try:
        meta = json.loads(config.read_text())
        kind, module = meta.get("kind"), meta.get("loader_module") or default
    except (json.JSONDecodeError, AttributeError) as err:
        raise ConfigError(f"{config}: not a release config ({err})") from None
    module = module or (PRETRAINED_LOADER if kind in PRETRAINED_KINDS else None)
    if not module:
        raise ConfigError(f"{config}: kind={kind!r} names no loader_module; release the checkpoint again with this version")
    try:
        loader = importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(f"{config}: loader_module={module!r} cannot be imported ({err})") from None
    if not callable(getattr(loader, "_load_pyfunc", None)) or not callable(getattr(loader, "describe_release", None)):
        raise ConfigError(f"{config}: loader_module={module!r} defines no _load_pyfunc/describe_release")
    return module


def register_release(
    release_folder: str | Path,
    name: str,
    alias: str | None = None,
    tracking_uri: str | None = None,
    run_id: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    loader_module: str | None = None,
    lineage: Mapping[str, Any] | None = None,
    flag: str = "",
) -> ModelVersion:
    """Log ``release_folder`` as a pyfunc model and register it as a new version of ``name``.

    Args:
        release_folder: a folder written by :func:`face_core.release.pretrained.write_release`.
        name: registered model name (``face-mae-vit-b``).
        alias: alias to point at the new version (``champion``); None sets none.
        tracking_uri: MLflow tracking URI; None = ``$MLFLOW_TRACKING_URI``.
        run_id: log the model into this existing run (e.g. the training run, so
            ``runs:/<run_id>/model`` resolves); None = a new run in ``experiment``.
        experiment: experiment of the new run when ``run_id`` is None.
        loader_module: the loader of a folder whose ``config.json`` names none (written before
            releases named their loader); ignored when it names one.
        lineage: where the model came from (:func:`face_core.release.lineage.training_lineage`):
            kept whole in the MLmodel metadata, its run and data checksums also as version tags.
        flag: the command's option for the tracking URI, named when none is set.

    Returns the registered ``ModelVersion`` (its ``version`` is a string over HTTP); its
    description says how to load it and where it came from.
    """
    import mlflow
    from mlflow import MlflowClient

    folder = Path(release_folder)
    loader_module = loader_module_for(folder, loader_module)
    lineage = dict(lineage or {})
    with tracking_at(tracking_uri, flag) as uri, tempfile.TemporaryDirectory(prefix="face-release-") as staging:
        description = importlib.import_module(loader_module).describe_release(folder)  # reads and checks it
        checksums = folder_checksums(folder)
        staged = Path(staging) / RELEASE_SUBDIR  # the basename MLflow keeps under data/
        shutil.copytree(folder, staged)
        if run_id is None:
            use_experiment(experiment, uri)
        else:  # fluent MLflow refuses a run outside the active experiment
            mlflow.set_experiment(experiment_id=MlflowClient().get_run(run_id).info.experiment_id)
        metadata = {**description.metadata, "package_version": package_version(), "sha256": checksums, "kind": description.kind}
        with mlflow.start_run(run_id=run_id, run_name=None if run_id else f"release-{name}") as run:
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME_IN_RUN,
                loader_module=loader_module,
                data_path=str(staged),
                pip_requirements=pip_requirements(),
                signature=description.signature,
                input_example=description.input_example,
                metadata={**metadata, "lineage": lineage} if lineage else metadata,
                registered_model_name=name,
            )
        client = MlflowClient()
        version = info.registered_model_version
        if version is None:  # registration is synchronous on every store we support; make sure
            raise RuntimeError(f"MLflow logged the model in run {run.info.run_id} but did not register it as {name!r}")
        tags = {"package_version": package_version(), "run_id": run.info.run_id, **lineage_tags(lineage)}
        for key, value in tags.items():
            client.set_model_version_tag(name, str(version), key, value)
        if alias:
            client.set_registered_model_alias(name, alias, str(version))
        client.update_model_version(name, str(version), description=version_description(f"models:/{name}/{version}", loader_module, lineage))
        latest = f"models:/{name}@{alias}" if alias else f"models:/{name}/latest"
        client.update_registered_model(name, description=load_instructions(latest, loader_module))
        return client.get_model_version(name, str(version))


def lineage_tags(lineage: Mapping[str, Any]) -> dict[str, str]:
    """The version tags of a release's lineage: training run, its store, checkpoint, data manifests' SHA-256 (JSON)."""
    tags = {key: str(lineage[key]) for key in ("training_run_id", "training_tracking_uri", "checkpoint") if lineage.get(key)}
    if lineage.get("data_manifests_sha256"):
        tags["data_manifests_sha256"] = json.dumps(lineage["data_manifests_sha256"], sort_keys=True)
    return tags


def load_instructions(uri: str, loader_module: str) -> str:
    """Markdown: how to load the model at ``uri`` (the kind's ``LOAD_HINT``) and how to serve it with plain MLflow."""
    hint = getattr(importlib.import_module(loader_module), "LOAD_HINT", "") or (PRETRAINED_LOAD_HINT if loader_module == PRETRAINED_LOADER else "")
    serve = f'Serve it with plain MLflow: `mlflow.pyfunc.load_model("{uri}").predict(pixels)` on uint8 pixels (shape in the signature).'
    return "\n\n".join(text for text in (hint.format(uri=uri), serve) if text)


def version_description(uri: str, loader_module: str, lineage: Mapping[str, Any]) -> str:
    """Markdown description of a model version: how to load it, then where it came from."""
    parts = [load_instructions(uri, loader_module)]
    if lineage.get("training_run_id"):
        parts.append(f"Trained in MLflow run `{lineage['training_run_id']}` ({lineage.get('training_tracking_uri', '')}) from `{lineage.get('checkpoint', '')}`.")
    manifests = lineage.get("data_manifests_sha256") or {}
    if manifests:
        parts.append("Data manifests (SHA-256): " + "; ".join(f"`{path}` {digest}" for path, digest in manifests.items()) + ".")
    if lineage.get("recipe"):
        parts.append("The training recipe is in the MLmodel metadata (`lineage.recipe`).")
    return "\n\n".join(parts)


def register_trained_release(
    release_folder: str | Path,
    name: str,
    alias: str | None = None,
    tracking_uri: str | None = None,
    checkpoint: str | Path | None = None,
    loader_module: str | None = None,
) -> ModelVersion:
    """Register a release made from ``checkpoint`` with its lineage and print how to load it (the ``release --name`` flag).

    The tracking URI is ``tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else the one the
    checkpoint's training run logged to; when that is the same store, the model is logged into
    the training run itself, so ``runs:/<training run>/model`` names it. The training run, its
    recipe and its data manifests' SHA-256 are recorded (:func:`face_core.release.lineage.training_lineage`).
    ``loader_module`` is passed on to :func:`register_release`.
    """
    lineage = training_lineage(checkpoint) if checkpoint is not None else {}
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "") or lineage.get("training_tracking_uri", "")
    run_id = lineage.get("training_run_id") if lineage.get("training_tracking_uri") == uri else None
    version = register_release(release_folder, name, alias, uri or None, run_id, loader_module=loader_module, lineage=lineage, flag="--tracking_uri")
    by_alias = f"models:/{name}@{alias}, " if alias else ""
    print(f"registered {name} version {version.version} at {uri}; load it by {by_alias}models:/{name}/{version.version} or runs:/{version.run_id}/{MODEL_NAME_IN_RUN}")
    return version


def model_version_of(client: MlflowClient, uri: str) -> ModelVersion | None:
    """The registered version ``models:/name@alias`` or ``models:/name/3`` names; None for other URIs."""
    if not uri.startswith("models:/"):
        return None
    reference = uri.removeprefix("models:/").split("/")
    if "@" in reference[0]:
        name, alias = reference[0].split("@", 1)
        return client.get_model_version_by_alias(name, alias)
    if len(reference) > 1 and reference[1].isdigit():
        return client.get_model_version(reference[0], reference[1])
    return None


def source_lineage(path_or_uri: str | Path, run_store: str) -> tuple[dict[str, str], list[str]]:
    """Tags naming what a run starts from, and the MLflow logged models to link as the run's inputs.

    A model URI is resolved in ``$MLFLOW_TRACKING_URI`` (where it was loaded from): ``init``,
    ``init.model_name``, ``init.model_version``, ``init.run_id``, ``init.experiment_id``,
    ``init.tracking_uri`` and ``init.sha256`` (of the released weights). A checkpoint or release
    folder gets :func:`face_core.release.lineage.checkpoint_lineage`. The tag ``mlflow.note.content``
    (the run's description) names the source, with links into the MLflow UI when it lives in
    ``run_store``, the store of the run being tagged.
    """
    from mlflow import MlflowClient

    source = str(path_or_uri)
    version = None
    if source.startswith(URI_SCHEMES):
        with tracking_at(None) as store, resolving(source, store):
            client = MlflowClient()
            version = model_version_of(client, source)
            run_id = version.run_id if version is not None else source.removeprefix("runs:/").split("/")[0]
            tags = {"init": source, "init.tracking_uri": store}
            if version is not None:
                tags.update({"init.model_name": version.name, "init.model_version": str(version.version)})
            if run_id:
                tags.update({"init.run_id": run_id, "init.experiment_id": client.get_run(run_id).info.experiment_id})
            checksum = weights_sha256(download_release(source))  # cached: only the MLmodel is fetched again
            if checksum:
                tags["init.sha256"] = checksum
    else:
        tags = checkpoint_lineage(source)
    linked = tags.get("init.tracking_uri") == run_store
    tags["mlflow.note.content"] = source_note(tags, linked)
    model_id = logged_model_id(version) if version is not None else None
    return tags, [model_id] if linked and model_id else []


def logged_model_id(version: ModelVersion) -> str | None:
    """The MLflow logged model behind a registered version (MLflow 3 names it in ``source`` as ``models:/m-...``)."""
    if getattr(version, "model_id", None):
        return version.model_id
    source = version.source or ""
    return source.removeprefix("models:/") if source.startswith("models:/m-") else None


def source_note(tags: Mapping[str, str], linked: bool) -> str:
    """Markdown naming a run's starting point (from :func:`source_lineage`'s tags); UI links when ``linked``."""
    source = tags["init"]
    if linked and tags.get("init.model_version"):
        source = f"[{source}](#/models/{tags['init.model_name']}/versions/{tags['init.model_version']})"
    else:
        source = f"`{source}`"
    text = f"Started from {source}"
    if tags.get("init.sha256"):
        text += f" (SHA-256 `{tags['init.sha256']}`)"
    run_id = tags.get("init.run_id")
    if run_id:
        run = f"[{run_id}](#/experiments/{tags['init.experiment_id']}/runs/{run_id})" if linked and tags.get("init.experiment_id") else f"`{run_id}`"
        text += f", trained in MLflow run {run}" + ("" if linked else f" of {tags.get('init.tracking_uri', 'another store')}")
    return text + "."


def release_cache() -> Path:
    """Where downloaded releases are kept, by content: ``$FACE_RELEASE_CACHE``, else ``~/.cache/face-foundation/releases``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "face-foundation" / "releases")


def download_release(uri: str, dst: str | Path | None = None, tracking_uri: str | None = None, flag: str = "") -> Path:
    """Download a released model (``models:/name@alias``, ``models:/name/3``, ``runs:/<id>/model``).

    Only files are fetched; every released file's SHA-256 is checked against the MLmodel
    metadata, so a truncated or altered artifact raises :class:`ReleaseChecksumError`. Without
    ``dst`` the release lands in :func:`release_cache` under a key made of its checksums: a
    release already there (and still intact) is not downloaded again, only its MLmodel.

    Args:
        uri: the model URI.
        dst: folder to download into; None = the cache.
        tracking_uri: MLflow tracking URI (also the registry's); None = ``$MLFLOW_TRACKING_URI``.
        flag: the command's option for the tracking URI, named in errors.

    Returns the local release folder (``model.safetensors`` + ``config.json``). A URI naming
    nothing in the store is a ``ConfigError`` naming the URI and the store.
    """
    with tracking_at(tracking_uri, flag) as store, resolving(uri, store, flag):
        if dst is not None:
            return fetch_verified(uri, Path(dst))
        recorded = recorded_checksums(uri)
        cached = release_cache() / hashlib.sha256(json.dumps(recorded, sort_keys=True).encode()).hexdigest()[:32]
        if cached.is_dir():
            try:
                verify_checksums(cached, recorded, uri)
                return cached
            except ReleaseChecksumError:
                shutil.rmtree(cached)  # damaged in the cache: fetch it again
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cached.parent, prefix=".download-") as scratch:
            release = fetch_verified(uri, Path(scratch))
            verify_checksums(release, recorded, f"{uri} (changed while downloading; retry)")
            try:
                release.rename(cached)  # whole or not at all
            except OSError:
                if not cached.is_dir():  # else another process cached it first
                    raise
        return cached


def recorded_checksums(uri: str) -> dict[str, str]:
    """The SHA-256 of every released file, from the model's MLmodel alone (a few KB)."""
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="face-mlmodel-") as scratch:
        model = Model.load(download_artifacts(artifact_uri=f"{uri.rstrip('/')}/MLmodel", dst_path=scratch))
    recorded: dict[str, str] = (model.metadata or {}).get("sha256", {})
    if not recorded:
        raise ReleaseChecksumError(f"{uri} is not a face-foundation release (no recorded checksums in its MLmodel)")
    return recorded


def fetch_verified(uri: str, target: Path) -> Path:
    """Download the whole model under ``target`` and check its release folder; return that folder."""
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    target.mkdir(parents=True, exist_ok=True)
    local = Path(download_artifacts(artifact_uri=uri, dst_path=str(target)))
    model = Model.load(str(local))
    release = local / "data" / RELEASE_SUBDIR
    recorded: dict[str, str] = (model.metadata or {}).get("sha256", {})
    if not recorded or not release.is_dir():
        raise ReleaseChecksumError(f"{uri} is not a face-foundation release (no data/{RELEASE_SUBDIR} or no recorded checksums in its MLmodel)")
    verify_checksums(release, recorded, uri)
    return release


def verify_checksums(folder: Path, recorded: dict[str, str], source: str) -> None:
    """Raise :class:`ReleaseChecksumError` unless ``folder`` holds exactly the recorded files and bytes."""
    found = folder_checksums(folder)
    missing = sorted(set(recorded) - set(found))
    extra = sorted(set(found) - set(recorded))
    changed = sorted(name for name in set(recorded) & set(found) if recorded[name] != found[name])
    if missing or extra or changed:
        raise ReleaseChecksumError(
            f"release {source} downloaded to {folder} does not match its recorded checksums: "
            f"missing {missing}, unexpected {extra}, changed {changed}"
        )
