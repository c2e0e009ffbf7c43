"""What a sweep leaves behind: the MLflow runs settled, the best trial written out and printed.

The sweep's MLflow run is opened before any trial (:func:`open_sweep_run`); after the trials,
the best one (best value at any validation) is written to ``<sweep>/best/``: ``config.yaml`` (the
whole recipe, runnable with ``python -m finetune fit --config``), ``checkpoint.ckpt`` and
``summary.json``; the trial runs stopped by the scheduler are marked ``KILLED``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.config import FinetuneConfig
from finetune.sweep.report import CHECKPOINT_FILE
from finetune.sweep.search_space import apply_overrides
from plumbing.files import atomic_path, write_text_atomic


@dataclass
class SweepOutcome:
    """What a sweep leaves behind.

    Args:
        folder: the sweep folder (trials, Ray's records, ``best/``).
        metric: the optimised validation metric; ``mode`` says whether higher is better.
        mode: ``max`` or ``min``.
        best_value: the best trial's best value of ``metric``.
        best_params: the best trial's sampled values (dotted recipe keys).
        best_config: ``best/config.yaml``: the whole recipe of the best trial.
        best_checkpoint: ``best/checkpoint.ckpt``: the best trial's checkpoint at its best validation.
        parent_run_id: the sweep's MLflow run; each trial is a child run of it.
        tracking_uri: where that run lives.
        trials: number of trials run.
        pruned: trials stopped before ``trainer.max_epochs`` validations.
    """

    folder: Path
    metric: str
    mode: str
    best_value: float
    best_params: dict[str, Any]
    best_config: Path
    best_checkpoint: Path
    parent_run_id: str
    tracking_uri: str
    trials: int
    pruned: int


@dataclass(frozen=True)
class SweepRun:
    """The sweep under way: what it optimises, where it writes and its MLflow run.

    Args:
        metric: the optimised validation metric.
        mode: ``max`` or ``min``.
        folder: the sweep folder.
        tracking_uri: the MLflow store of the sweep's run and its trials.
        parent_run_id: the sweep's MLflow run, parent of the trials' runs.
    """

    metric: str
    mode: str
    folder: Path
    tracking_uri: str
    parent_run_id: str


def open_sweep_run(client: Any, config: FinetuneConfig, folder: Path, space_path: Path, num_samples: int, metric: str, mode: str, kind: str) -> str:
    """Create the sweep's MLflow run (the trials' parent) with the sweep's settings; return its id."""
    experiment = client.get_experiment_by_name(config.tracking.experiment)
    if experiment is None:
        local = client.tracking_uri.startswith("sqlite:///")
        location = (folder / "mlartifacts").as_uri() if local else None
        experiment_id = client.create_experiment(config.tracking.experiment, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
    run_name = config.tracking.run_name or f"sweep-{folder.name}"
    run = client.create_run(experiment_id, run_name=run_name, tags={"face.sweep": "true"})
    for key, value in {"num_samples": num_samples, "metric": metric, "mode": mode, "scheduler": kind, "search_space": space_path.name}.items():
        client.log_param(run.info.run_id, key, value)
    client.log_artifact(run.info.run_id, str(space_path))
    return run.info.run_id


def write_best(results: Any, config: FinetuneConfig, run: SweepRun) -> SweepOutcome:
    """Pick the best trial (best value at any validation) and write its recipe, checkpoint and summary."""
    import yaml

    metric, mode, folder = run.metric, run.mode, run.folder
    errors = [result.error for result in results if result.error is not None]
    if len(errors) == len(results):
        raise RuntimeError(f"every trial of the sweep failed; the first error: {errors[0]!r}")
    best = results.get_best_result(metric=metric, mode=mode, scope="all")
    checkpoint = best.get_best_checkpoint(metric=metric, mode=mode)
    if checkpoint is None:
        raise RuntimeError(f"the best trial ({best.path}) reported no checkpoint")
    params = {key: best.config[key] for key in sorted(best.config)}
    values = best.metrics_dataframe[metric]
    best_value = float(values.max() if mode == "max" else values.min())
    out = folder / "best"
    out.mkdir(exist_ok=True)
    best_config = out / "config.yaml"
    recipe = dataclasses.asdict(apply_overrides(config, params))
    write_text_atomic(best_config, yaml.safe_dump(json.loads(json.dumps(recipe)), sort_keys=False))
    best_checkpoint = out / CHECKPOINT_FILE
    with checkpoint.as_directory() as local, atomic_path(best_checkpoint) as partial:
        shutil.copyfile(Path(local) / CHECKPOINT_FILE, partial)
    iterations = [int(r.metrics.get("training_iteration", 0)) for r in results if r.metrics]
    outcome = SweepOutcome(
        folder=folder, metric=metric, mode=mode, best_value=best_value, best_params=params,
        best_config=best_config, best_checkpoint=best_checkpoint, parent_run_id=run.parent_run_id,
        tracking_uri=run.tracking_uri, trials=len(results), pruned=sum(i < config.trainer.max_epochs for i in iterations),
    )  # fmt: skip
    summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(outcome).items()}
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return outcome


def settle_child_runs(client: Any, parent: str, results: Any, kind: str) -> None:
    """Mark trial runs the scheduler stopped (ASHA pruning, PBT hand-overs) as KILLED, not FAILED or RUNNING.

    A stopped trial's process is interrupted, which leaves its MLflow run RUNNING or FAILED; only
    trials that really raised keep FAILED.
    """
    errored = [Path(result.path).name for result in results if result.error is not None]  # <trial name>_<n>_<values>
    experiment_id = client.get_run(parent).info.experiment_id
    for run in client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'", max_results=10000):
        name = run.data.tags.get("ray.trial_name", "")
        raised = run.info.status == "FAILED" and any(folder.startswith(f"{name}_") for folder in errored)
        if run.info.status == "FINISHED" or raised:
            continue
        client.set_tag(run.info.run_id, "sweep.stopped_by", kind)
        client.set_terminated(run.info.run_id, status="KILLED")


def log_outcome(client: Any, parent: str, outcome: SweepOutcome) -> None:
    """Record the best trial on the sweep's MLflow run and close it."""
    value = outcome.best_value if math.isfinite(outcome.best_value) else float("nan")
    client.log_metric(parent, f"best_{outcome.metric.replace('/', '_')}", value)
    client.log_metric(parent, "trials", outcome.trials)
    client.log_metric(parent, "pruned_trials", outcome.pruned)
    for key, param in outcome.best_params.items():
        client.log_param(parent, f"best.{key}", param)
    client.log_artifact(parent, str(outcome.best_config))
    client.log_artifact(parent, str(outcome.best_config.parent / "summary.json"))
    client.set_terminated(parent, status="FINISHED")


def print_outcome(outcome: SweepOutcome) -> None:
    """Print the best trial for the person who ran the sweep."""
    print(f"[sweep] {outcome.trials} trials ({outcome.pruned} stopped early) in {outcome.folder}")
    print(f"[sweep] best {outcome.metric} = {outcome.best_value:.4f} ({outcome.mode}) with:")
    for key, value in outcome.best_params.items():
        print(f"[sweep]   {key}: {value}")
    print(f"[sweep] best recipe: {outcome.best_config}")
    print(f"[sweep] best checkpoint: {outcome.best_checkpoint}")
    print(f"[sweep] MLflow: run {outcome.parent_run_id} at {outcome.tracking_uri}")
