"""Where a run's MLflow tracking lives: the server probe and the run record kept in a run folder.

A training run records its tracking URI and MLflow run id in ``<run_dir>/mlflow_run.json``, so a
resumed run keeps logging into the same MLflow run and a release made from its checkpoint is
logged into it. A remote server is probed before anything trains or uploads, so an unreachable
one fails at once with its URI in the message.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from plumbing.files import write_json_atomic
from plumbing.recipes import ConfigError

RUN_RECORD = "mlflow_run.json"


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
