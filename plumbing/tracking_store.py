"""Where a run's MLflow tracking lives: the server probe, the artifact folder of a SQLite store, and
the records kept in a run folder.

A training run records its tracking URI and MLflow run id in ``<run_dir>/mlflow_run.json``, so a
resumed run keeps logging into the same MLflow run and a release made from its checkpoint is
logged into it; its resolved recipe is ``<run_dir>/config.json``. A remote server is probed before
anything trains or uploads, so an unreachable one fails at once with its URI in the message. A
SQLite store keeps its artifacts in ``mlartifacts/`` beside the database file, whichever stage or
release writes to it (MLflow's own default is ``./mlruns`` under the current directory). Its tables
are created under a file lock beside the database, so processes that open a new store at the same
moment (a pipeline's side-by-side stages, the ranks of a job, the jobs of an array) do not race.
"""

from __future__ import annotations

import fcntl
import json
import urllib.error
import urllib.request
from pathlib import Path

from plumbing.files import write_json_atomic
from plumbing.recipes import ConfigError

RUN_RECORD = "mlflow_run.json"
CONFIG_RECORD = "config.json"
CHECKPOINT_FOLDER = "checkpoints"


def check_reachable(uri: str, timeout_s: float = 10.0) -> None:
    """Raise :class:`ConfigError` naming ``uri`` if an ``http(s)`` tracking server does not answer ``/health``."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as answer:
            if answer.status == 200:
                return
            problem = f"/health answered HTTP {answer.status}"
    except (urllib.error.URLError, OSError) as err:
        problem = str(getattr(err, "reason", err))
    raise ConfigError(
        f"MLflow tracking server {uri} is unreachable ({problem}); start it, or set tracking.tracking_uri "
        "(or MLFLOW_TRACKING_URI) to a reachable server, or leave both empty for a local SQLite store"
    )


def sqlite_artifact_location(uri: str) -> str | None:
    """``file://`` URI of ``mlartifacts/`` beside the database of a ``sqlite:///`` store; None for other stores."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()


def create_sqlite_store(uri: str) -> None:
    """Create the tables of a ``sqlite:///`` store once, under a file lock beside the database; other stores are left alone.

    MLflow creates missing tables when a client first opens a store; two processes doing so at the
    same moment race, and one fails with "table ... already exists".
    """
    if not uri.startswith("sqlite:///"):
        return
    from mlflow.tracking import MlflowClient  # lazily: plumbing is imported by every command's --help

    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.parent / f".{database.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        MlflowClient(uri).search_experiments(max_results=1)  # opening the store creates its tables


def run_folder_of(checkpoint: str | Path) -> Path:
    """The run folder of a checkpoint (``<run>/checkpoints/x.ckpt``), else the checkpoint's own folder."""
    path = Path(checkpoint)
    return path.parent.parent if path.parent.name == CHECKPOINT_FOLDER else path.parent


def write_run_record(run_dir: str | Path, tracking_uri: str, experiment_id: str, run_id: str) -> None:
    """Record which MLflow run a run folder logs to (``<run_dir>/mlflow_run.json``)."""
    record = {"tracking_uri": tracking_uri, "experiment_id": experiment_id, "run_id": run_id}
    write_json_atomic(Path(run_dir) / RUN_RECORD, record)


def read_run_record(run_dir: str | Path) -> dict[str, str] | None:
    """The record written by :func:`write_run_record`, or None when the folder has none."""
    path = Path(run_dir) / RUN_RECORD
    if not path.is_file():
        return None
    values = json.loads(path.read_text())
    return values if {"tracking_uri", "run_id"} <= set(values) else None
