"""Release folders to the MLflow model registry, and back, with nothing executed from the artifact.

A release folder (``model.safetensors`` + ``config.json``, see :mod:`pretrain.release.folder`)
is logged as an MLflow ``python_function`` model of the *loader-module* kind: the artifact holds
only data (the folder under ``data/release``, the MLmodel file with the signature, an input
example and pinned requirements) and names as its loader the module that the release kind
records in its ``config.json`` (``loader_module``), which the *installed* package provides. No pickle, no code copied into the artifact. The MLmodel
metadata records the package version and the SHA-256 of every released file;
:func:`download_release` checks them before anyone reads the weights.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata as package_metadata
from pathlib import Path
from typing import TYPE_CHECKING

from plumbing.files import file_sha256
from plumbing.recipes import ConfigError
from plumbing.tracking_store import check_reachable, read_run_record
from pretrain.release.folder import CONFIG_FILE, package_version
from pretrain.release.pretrained import KINDS as PRETRAINED_KINDS
from pretrain.release.pretrained import LOADER_MODULE as PRETRAINED_LOADER

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

PACKAGE = "face-foundation"
MODEL_NAME_IN_RUN = "model"
RELEASE_SUBDIR = "release"
DEFAULT_EXPERIMENT = "face-releases"
CACHE_ENV = "FACE_RELEASE_CACHE"
# What a fresh environment needs to serve the model; pinned so MLflow infers nothing (~10 s).
RUNTIME_PACKAGES = ("torch", "safetensors", "numpy", "mlflow")


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


@contextmanager
def tracking_at(tracking_uri: str | None) -> Iterator[str]:
    """Point MLflow (tracking, and so the registry) at ``tracking_uri`` for the block; restore afterwards.

    None keeps ``$MLFLOW_TRACKING_URI``; with neither, a ``ConfigError`` says what to set.
    The server (or database) is checked before anything is uploaded.
    """
    import mlflow

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        raise ConfigError("no MLflow tracking URI: pass --tracking_uri (e.g. sqlite:///runs/mlflow.db or http://host:5000) or set MLFLOW_TRACKING_URI")
    check_reachable(uri)
    before = os.environ.get("MLFLOW_TRACKING_URI")  # set_tracking_uri mirrors itself there
    mlflow.set_tracking_uri(uri)
    try:
        yield uri
    finally:
        mlflow.set_tracking_uri(before)


def use_experiment(name: str, uri: str) -> None:
    """Make ``name`` the active experiment; a new one on a SQLite store keeps artifacts beside the database."""
    import mlflow

    if uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(name) is None:
        database = Path(uri.removeprefix("sqlite:///"))
        mlflow.create_experiment(name, artifact_location=(database.parent.resolve() / "mlartifacts").as_uri())
    mlflow.set_experiment(name)


def loader_module_for(folder: Path, default: str | None = None) -> str:
    """The loader module that ``folder/config.json`` names for its release kind.

    Folders written before releases named their loader carry none: the pretrained kinds get
    :mod:`pretrain.release.pretrained`, any other kind ``default`` (its release command passes it).
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
) -> ModelVersion:
    """Log ``release_folder`` as a pyfunc model and register it as a new version of ``name``.

    Args:
        release_folder: a folder written by :func:`pretrain.release.pretrained.write_release`.
        name: registered model name (``face-mae-vit-b``).
        alias: alias to point at the new version (``champion``); None sets none.
        tracking_uri: MLflow tracking URI; None = ``$MLFLOW_TRACKING_URI``.
        run_id: log the model into this existing run (e.g. the training run, so
            ``runs:/<run_id>/model`` resolves); None = a new run in ``experiment``.
        experiment: experiment of the new run when ``run_id`` is None.
        loader_module: the loader of a folder whose ``config.json`` names none (written before
            releases named their loader); ignored when it names one.

    Returns the registered ``ModelVersion`` (its ``version`` is a string over HTTP).
    """
    import mlflow
    from mlflow import MlflowClient

    folder = Path(release_folder)
    loader_module = loader_module_for(folder, loader_module)
    with tracking_at(tracking_uri) as uri, tempfile.TemporaryDirectory(prefix="face-release-") as staging:
        description = importlib.import_module(loader_module).describe_release(folder)  # reads and checks it
        checksums = folder_checksums(folder)
        staged = Path(staging) / RELEASE_SUBDIR  # the basename MLflow keeps under data/
        shutil.copytree(folder, staged)
        if run_id is None:
            use_experiment(experiment, uri)
        else:  # fluent MLflow refuses a run outside the active experiment
            mlflow.set_experiment(experiment_id=MlflowClient().get_run(run_id).info.experiment_id)
        with mlflow.start_run(run_id=run_id, run_name=None if run_id else f"release-{name}") as run:
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME_IN_RUN,
                loader_module=loader_module,
                data_path=str(staged),
                pip_requirements=pip_requirements(),
                signature=description.signature,
                input_example=description.input_example,
                metadata={**description.metadata, "package_version": package_version(), "sha256": checksums, "kind": description.kind},
                registered_model_name=name,
            )
        client = MlflowClient()
        version = info.registered_model_version
        if version is None:  # registration is synchronous on every store we support; make sure
            raise RuntimeError(f"MLflow logged the model in run {run.info.run_id} but did not register it as {name!r}")
        client.set_model_version_tag(name, str(version), "package_version", package_version())
        client.set_model_version_tag(name, str(version), "run_id", run.info.run_id)
        if alias:
            client.set_registered_model_alias(name, alias, str(version))
        return client.get_model_version(name, str(version))


def training_run_record(checkpoint: str | Path) -> dict[str, str] | None:
    """The MLflow run that trained ``checkpoint`` (``<run>/checkpoints/*.ckpt``), from ``<run>/mlflow_run.json``."""
    path = Path(checkpoint)
    return read_run_record(path.parent.parent if path.parent.name == "checkpoints" else path.parent)


def register_trained_release(
    release_folder: str | Path,
    name: str,
    alias: str | None = None,
    tracking_uri: str | None = None,
    checkpoint: str | Path | None = None,
    loader_module: str | None = None,
) -> ModelVersion:
    """Register a release made from ``checkpoint`` and print how to load it (the ``release --name`` flag).

    The tracking URI is ``tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else the one the
    checkpoint's training run logged to; when that is the same store, the model is logged into
    the training run itself, so ``runs:/<training run>/model`` names it and its lineage is kept.
    ``loader_module`` is passed on to :func:`register_release`.
    """
    record = training_run_record(checkpoint) if checkpoint is not None else None
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "") or (record or {}).get("tracking_uri", "")
    run_id = record["run_id"] if record and record["tracking_uri"] == uri else None
    version = register_release(release_folder, name, alias, uri or None, run_id, loader_module=loader_module)
    by_alias = f"models:/{name}@{alias}, " if alias else ""
    print(f"registered {name} version {version.version} at {uri}; load it by {by_alias}models:/{name}/{version.version} or runs:/{version.run_id}/{MODEL_NAME_IN_RUN}")
    return version


def release_cache() -> Path:
    """Where downloaded releases are kept, by content: ``$FACE_RELEASE_CACHE``, else ``~/.cache/face-foundation/releases``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "face-foundation" / "releases")


def download_release(uri: str, dst: str | Path | None = None, tracking_uri: str | None = None) -> Path:
    """Download a released model (``models:/name@alias``, ``models:/name/3``, ``runs:/<id>/model``).

    Only files are fetched; every released file's SHA-256 is checked against the MLmodel
    metadata, so a truncated or altered artifact raises :class:`ReleaseChecksumError`. Without
    ``dst`` the release lands in :func:`release_cache` under a key made of its checksums: a
    release already there (and still intact) is not downloaded again, only its MLmodel.

    Args:
        uri: the model URI.
        dst: folder to download into; None = the cache.
        tracking_uri: MLflow tracking URI (also the registry's); None = ``$MLFLOW_TRACKING_URI``.

    Returns the local release folder (``model.safetensors`` + ``config.json``).
    """
    with tracking_at(tracking_uri):
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
