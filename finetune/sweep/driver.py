"""Ray Tune sweeps over fine-tuning: one Lightning fine-tune per trial, ASHA or PBT, MLflow child runs.

:func:`run_sweep` reads a fine-tuning recipe and the sweep file of its :class:`SweepSettings`
(:mod:`finetune.sweep.search_space`), checks both before anything starts, opens the sweep's MLflow
run, starts Ray (in-process with the cores given, or joins a cluster by address: the SLURM
launcher starts one per allocation) and runs ``num_samples`` trials. Each trial is :func:`finetune.training.run_finetuning` on the
recipe with the trial's values, reporting the monitored validation metric after every
validation through :class:`finetune.sweep.report.TuneReportCallback`; its MLflow run is a child
of the sweep's. At the end the best trial's recipe (``best/config.yaml``), checkpoint
(``best/checkpoint.ckpt``) and a summary (``best/summary.json``) are written, logged to the
sweep's run and printed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from face_core.engine.tracking import resolve_tracking_uri
from finetune.config import FinetuneConfig
from finetune.sweep.results import (
    SweepOutcome,
    SweepRun,
    log_outcome,
    open_sweep_run,
    print_outcome,
    settle_child_runs,
    write_best,
)
from finetune.sweep.search_space import SearchSpace, apply_overrides, load_search_space, sample_values, to_tune
from finetune.sweep.trial import train_trial
from finetune.training import monitor_metric
from plumbing.recipes import ConfigError, load_recipe, validate
from plumbing.tracking_store import check_reachable

LOWER_IS_BETTER = ("loss", "error", "mae", "mse")
PBT_KEEP = 3  # latest checkpoints kept per trial under PBT: a clone must still find its donor's


@dataclass(frozen=True)
class SweepResources:
    """Where the trials run and what each one reserves.

    Args:
        address: Ray cluster to join (``auto`` or ``host:port``); None = start Ray in this process.
        num_cpus: cores for a Ray started here; None = all.
        cpus_per_trial: cores reserved per trial.
        gpus_per_trial: GPUs reserved per trial (0 on CPU machines).
        max_concurrent_trials: trials running at once; 0 = as many as the resources allow.
    """

    address: str | None = None
    num_cpus: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent_trials: int = 0


@dataclass(frozen=True)
class SweepSettings:
    """Everything of a sweep but the recipe: the sweep file, the trials, the folder and the resources.

    Args:
        search_space: sweep file (``configs/sweeps/*.yaml``).
        num_samples: trials to sample (times the size of any ``grid``).
        output_dir: sweep folder; None = ``<trainer.output_dir>-sweep``.
        scheduler: ``asha`` or ``pbt`` to override the sweep file's scheduler; None = the file's.
        resources: the Ray cluster and what each trial reserves.
    """

    search_space: str | Path
    num_samples: int
    output_dir: str | Path | None = None
    scheduler: str | None = None
    resources: SweepResources = SweepResources()


def objective(space: SearchSpace, config: FinetuneConfig) -> tuple[str, str]:
    """The metric and mode to optimise: the sweep file's, else the recipe's monitored metric."""
    metric = space.metric or monitor_metric(config)
    if not metric.startswith("val/"):
        raise ConfigError(f"sweep metric {metric!r} must be a validation metric (val/...): trials are never selected on test")
    mode = space.mode or ("min" if any(word in metric for word in LOWER_IS_BETTER) else "max")
    return metric, mode


def load_finetune_recipe(config_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> FinetuneConfig:
    """The fine-tuning recipe as ``python -m finetune fit --config`` would read it, validated."""
    return validate(FinetuneConfig(**load_recipe(FinetuneConfig, str(config_path), list(overrides))), source=str(config_path))


def run_sweep(config_path: str | Path, settings: SweepSettings, overrides: list[str] | tuple[str, ...] = ()) -> SweepOutcome:
    """Sweep the fine-tuning recipe at ``config_path`` (plus ``--key value`` ``overrides``); return (and print) the best trial."""
    return sweep_recipe(load_finetune_recipe(config_path, overrides), settings)


def sweep_recipe(config: FinetuneConfig, settings: SweepSettings) -> SweepOutcome:
    """:func:`run_sweep` on a recipe already read (the ``sweep`` command builds it from its flags)."""
    import mlflow

    if settings.num_samples < 1:
        raise ConfigError(f"--num_samples={settings.num_samples}: must be >= 1")
    validate(config)
    space = load_search_space(settings.search_space)
    if settings.scheduler:
        space.scheduler.kind = settings.scheduler  # type: ignore[assignment]
        validate(space, source=f"{settings.search_space} with --scheduler {settings.scheduler}")
    validate(apply_overrides(config, sample_values(space)), source=str(settings.search_space))
    metric, mode = objective(space, config)
    folder = Path(settings.output_dir or f"{config.trainer.output_dir}-sweep").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    tracking_uri = sweep_tracking_uri(config, folder)
    check_reachable(tracking_uri)  # before Ray starts, not after the first trial
    client = mlflow.MlflowClient(tracking_uri)
    parent = open_sweep_run(client, config, folder, Path(settings.search_space), settings.num_samples, metric, mode, space.scheduler.kind)
    run = SweepRun(metric, mode, folder, tracking_uri, parent)
    try:
        results = tune_trials(config, space, settings.num_samples, run, settings.resources)
        outcome = write_best(results, config, run)
    except BaseException:
        client.set_terminated(parent, status="FAILED")
        raise
    settle_child_runs(client, parent, results, space.scheduler.kind)
    log_outcome(client, parent, outcome)
    print_outcome(outcome)
    return outcome


def sweep_tracking_uri(config: FinetuneConfig, folder: Path) -> str:
    """The recipe's tracking URI, else ``$MLFLOW_TRACKING_URI``, else a SQLite store in the sweep folder."""
    return resolve_tracking_uri(config.tracking, folder)


def tune_trials(config: FinetuneConfig, space: SearchSpace, num_samples: int, run: SweepRun, resources: SweepResources) -> Any:
    """Start or join Ray and run ``num_samples`` trials of ``space`` for ``run``; returns Ray Tune's ``ResultGrid``."""
    import ray
    from ray import tune

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"  # trials read the recipe's relative paths from our folder
    started_here = not ray.is_initialized()
    if started_here:
        if resources.address:
            ray.init(address=resources.address, log_to_driver=False)
        else:
            # "local": a new Ray of our own, even when a `ray start` cluster runs on this machine
            ray.init(address="local", num_cpus=resources.num_cpus, include_dashboard=False, log_to_driver=False)
    metric, mode = run.metric, run.mode
    try:
        trainable = tune.with_resources(
            tune.with_parameters(
                train_trial, base_config=config, metric=metric, parent_run_id=run.parent_run_id,
                tracking_uri=run.tracking_uri, trials_dir=str(run.folder / "trials"), workdir=os.getcwd(),
            ),
            {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial},
        )  # fmt: skip
        tuner = tune.Tuner(
            trainable,
            param_space=to_tune(space),
            tune_config=tune.TuneConfig(
                metric=metric, mode=mode, num_samples=num_samples, scheduler=make_scheduler(space, metric, mode, config.trainer.max_epochs),
                max_concurrent_trials=resources.max_concurrent_trials or None,
            ),
            run_config=tune.RunConfig(
                name="ray", storage_path=str(run.folder), verbose=1,
                checkpoint_config=checkpoint_policy(space, metric, mode),
            ),
        )  # fmt: skip
        return tuner.fit()
    finally:
        if started_here:
            ray.shutdown()


def checkpoint_policy(space: SearchSpace, metric: str, mode: str) -> Any:
    """Which trial checkpoints Ray keeps: ASHA the best one; PBT the 3 latest (it clones the latest)."""
    from ray import tune

    if space.scheduler.kind == "pbt":
        return tune.CheckpointConfig(num_to_keep=PBT_KEEP)
    return tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=metric, checkpoint_score_order=mode)


def make_scheduler(space: SearchSpace, metric: str, mode: str, max_epochs: int) -> Any:
    """ASHA (stop weak trials at rungs of validation rounds) or PBT (exploit/explore), per the sweep file."""
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    settings = space.scheduler
    if settings.kind == "pbt":
        return PopulationBasedTraining(
            time_attr="training_iteration", perturbation_interval=settings.perturbation_interval,
            hyperparam_mutations=to_tune(space), quantile_fraction=settings.quantile_fraction,
        )  # fmt: skip
    if settings.grace_period > max_epochs:
        raise ConfigError(f"scheduler.grace_period={settings.grace_period} exceeds trainer.max_epochs={max_epochs}: no trial could ever be stopped")
    return ASHAScheduler(time_attr="training_iteration", max_t=max_epochs, grace_period=settings.grace_period, reduction_factor=settings.reduction_factor)
