"""MLflow tracking of a training run through Lightning's ``MLFlowLogger``.

The tracking URI is ``tracking.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else a SQLite
store ``<run_dir>/mlflow.db`` (MLflow 3 refuses the plain file store); a SQLite store keeps its
artifacts in ``mlartifacts/`` beside its database, so one store shared by every stage keeps them
in one place. A remote server is probed before anything trains, so an unreachable one
fails at once with its URI in the message. A resumed run keeps logging into the same MLflow
run (its id is kept in ``<run_dir>/mlflow_run.json``). A stage may add tags (what it started from)
and link the MLflow models it started from as the run's inputs.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from face_core.engine.config import TrackingConfig
from plumbing.recipes import ConfigError
from plumbing.tracking_store import check_reachable, create_sqlite_store, read_run_record, sqlite_artifact_location, write_run_record

Run = TypeVar("Run", bound=Callable[..., Any])


def restores_tracking_uri(run: Run) -> Run:
    """Decorate a training entry point so MLflow's process-wide tracking URI is restored when it ends.

    Lightning's ``MLFlowLogger`` calls ``mlflow.set_tracking_uri``, which also sets
    ``$MLFLOW_TRACKING_URI``: without this, a second run in the same process (k folds, a test
    session) would resolve the first run's store as if the user had chosen it.
    """

    @functools.wraps(run)
    def restoring(*args: Any, **kwargs: Any) -> Any:
        before = os.environ.get("MLFLOW_TRACKING_URI")
        try:
            return run(*args, **kwargs)
        finally:
            mlflow = sys.modules.get("mlflow")  # not imported: nothing set it (tracking off)
            if mlflow is not None:
                mlflow.set_tracking_uri(before)

    return restoring  # type: ignore[return-value]


def resolve_tracking_uri(tracking: TrackingConfig, run_dir: str | Path) -> str:
    """The tracking URI: the config's, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<run_dir>/mlflow.db``."""
    uri = tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    return uri or f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"


def make_mlflow_logger(tracking: TrackingConfig, run_dir: str | Path, resume: bool = False) -> MLFlowLogger:
    """Lightning's MLFlowLogger for ``tracking``, checked to be reachable before training starts.

    With ``resume``, the MLflow run recorded in ``run_dir`` (same URI) is continued.
    """
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError("tracking.enabled=true but the mlflow package is not installed: install it, or pass --tracking.enabled false")
    run_dir = Path(run_dir)
    uri = resolve_tracking_uri(tracking, run_dir)
    check_reachable(uri)
    create_sqlite_store(uri)
    saved = read_run_record(run_dir) if resume else None
    run_id = saved["run_id"] if saved and saved.get("tracking_uri") == uri else None
    return MLFlowLogger(
        experiment_name=tracking.experiment,
        run_name=tracking.run_name or None,
        tracking_uri=uri,
        artifact_location=sqlite_artifact_location(uri),  # used when the experiment is new
        run_id=run_id,
    )


@rank_zero_only
def start_tracked_run(
    logger: MLFlowLogger,
    tracking_uri: str,
    params: dict[str, Any],
    run_dir: str | Path,
    tags: Mapping[str, str] | None = None,
    input_model_ids: Sequence[str] = (),
) -> None:
    """Create (or reopen) the MLflow run, record its id in ``run_dir``, log ``params`` (nested dicts) and ``tags``.

    ``input_model_ids`` are MLflow logged models the run started from, linked as its inputs.
    Re-logging a changed value into a resumed run is refused by MLflow; the first value is kept
    and a warning says so.
    """
    from mlflow.entities import LoggedModelInput
    from mlflow.exceptions import MlflowException

    write_run_record(run_dir, tracking_uri, logger.experiment_id, logger.run_id)
    for key, value in (tags or {}).items():
        logger.experiment.set_tag(logger.run_id, key, value)
    if input_model_ids:
        logger.experiment.log_inputs(logger.run_id, models=[LoggedModelInput(model_id) for model_id in input_model_ids])
    try:
        logger.log_hyperparams(params)
    except MlflowException as err:
        rank_zero_warn(f"MLflow kept the parameters first logged in run {logger.run_id}: {err}")
