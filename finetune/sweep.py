"""Ray Tune sweeps over fine-tuning: one Lightning fine-tune per trial, ASHA or PBT, MLflow child runs.

:func:`run_sweep` reads a fine-tuning recipe and a sweep file (:mod:`finetune.search_space`),
checks both before anything starts, opens the sweep's MLflow run, starts Ray (in-process with
the cores given, or joins a cluster by address: the SLURM launcher starts one per allocation)
and runs ``num_samples`` trials. Each trial is :func:`finetune.training.run_finetuning` on the
recipe with the trial's values, reporting the monitored validation metric after every
validation through :class:`finetune.tune_report.TuneReportCallback`; its MLflow run is a child
of the sweep's. At the end the best trial's recipe (``best/config.yaml``), checkpoint
(``best/checkpoint.ckpt``) and a summary (``best/summary.json``) are written, logged to the
sweep's run and printed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_shards.config_checks import ConfigError, validate
from finetune.config import FinetuneConfig
from finetune.search_space import SearchSpace, apply_overrides, load_search_space, sample_values, to_tune

LOWER_IS_BETTER = ("loss", "error", "mae", "mse")
PBT_KEEP = 3  # latest checkpoints kept per trial under PBT: a clone must still find its donor's


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


def objective(space: SearchSpace, config: FinetuneConfig) -> tuple[str, str]:
    """The metric and mode to optimise: the sweep file's, else the recipe's monitored metric."""
    from finetune.training import monitor_metric

    metric = space.metric or monitor_metric(config)
    if not metric.startswith("val/"):
        raise ConfigError(f"sweep metric {metric!r} must be a validation metric (val/...): trials are never selected on test")
    mode = space.mode or ("min" if any(word in metric for word in LOWER_IS_BETTER) else "max")
    return metric, mode


def load_finetune_recipe(config_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> FinetuneConfig:
    """The fine-tuning recipe as ``python -m finetune fit --config`` would read it, validated."""
    from data_shards.cli_support import load_recipe
    from finetune.cli import fit

    return validate(FinetuneConfig(**load_recipe(fit, str(config_path), list(overrides))), source=str(config_path))


def run_sweep(
    config_path: str | Path,
    search_space_path: str | Path,
    num_samples: int,
    address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    max_concurrent_trials: int = 0,
    output_dir: str | Path | None = None,
    scheduler: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> SweepOutcome:
    """Sweep the fine-tuning recipe at ``config_path`` over ``search_space_path``; return (and print) the best trial.

    Args:
        config_path: fine-tuning recipe (``configs/finetune/*.yaml``).
        search_space_path: sweep file (``configs/sweeps/*.yaml``).
        num_samples: trials to sample (times the size of any ``grid``).
        address: Ray cluster to join (``auto`` or ``host:port``); None = start Ray in this process.
        num_cpus: cores for a Ray started here; None = all.
        cpus_per_trial: cores reserved per trial.
        gpus_per_trial: GPUs reserved per trial (0 on CPU machines).
        max_concurrent_trials: trials running at once; 0 = as many as the resources allow.
        output_dir: sweep folder; None = ``<trainer.output_dir>-sweep``.
        scheduler: ``asha`` or ``pbt`` to override the sweep file's scheduler.
        overrides: ``--key value`` overrides of the recipe, as on the command line.
    """
    config = load_finetune_recipe(config_path, overrides)
    return sweep_recipe(
        config, search_space_path, num_samples, address, num_cpus, cpus_per_trial, gpus_per_trial,
        max_concurrent_trials, output_dir, scheduler,
    )  # fmt: skip


def sweep_recipe(
    config: FinetuneConfig,
    search_space_path: str | Path,
    num_samples: int,
    address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    max_concurrent_trials: int = 0,
    output_dir: str | Path | None = None,
    scheduler: str | None = None,
) -> SweepOutcome:
    """:func:`run_sweep` on a recipe already read (the ``sweep`` command builds it from its flags)."""
    import mlflow

    from pretrain.tracking import check_reachable

    if num_samples < 1:
        raise ConfigError(f"--num_samples={num_samples}: must be >= 1")
    validate(config)
    space = load_search_space(search_space_path)
    if scheduler:
        space.scheduler.kind = scheduler  # type: ignore[assignment]
        validate(space, source=f"{search_space_path} with --scheduler {scheduler}")
    validate(apply_overrides(config, sample_values(space)), source=str(search_space_path))
    metric, mode = objective(space, config)
    folder = Path(output_dir or f"{config.trainer.output_dir}-sweep").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    tracking_uri = sweep_tracking_uri(config, folder)
    check_reachable(tracking_uri)  # before Ray starts, not after the first trial
    client = mlflow.MlflowClient(tracking_uri)
    parent = open_sweep_run(client, config, folder, Path(search_space_path), num_samples, metric, mode, space.scheduler.kind)
    try:
        results = tune_trials(config, space, metric, mode, num_samples, folder, tracking_uri, parent, address, num_cpus, cpus_per_trial, gpus_per_trial, max_concurrent_trials)
        outcome = write_best(results, config, metric, mode, folder, tracking_uri, parent)
    except BaseException:
        client.set_terminated(parent, status="FAILED")
        raise
    settle_child_runs(client, parent, results, space.scheduler.kind)
    log_outcome(client, parent, outcome)
    print_outcome(outcome)
    return outcome


def sweep_tracking_uri(config: FinetuneConfig, folder: Path) -> str:
    """The recipe's tracking URI, else ``$MLFLOW_TRACKING_URI``, else a SQLite store in the sweep folder."""
    from pretrain.tracking import resolve_tracking_uri

    return resolve_tracking_uri(config.tracking, folder)


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


def tune_trials(
    config: FinetuneConfig,
    space: SearchSpace,
    metric: str,
    mode: str,
    num_samples: int,
    folder: Path,
    tracking_uri: str,
    parent_run_id: str,
    address: str | None,
    num_cpus: int | None,
    cpus_per_trial: float,
    gpus_per_trial: float,
    max_concurrent_trials: int,
) -> Any:
    """Start or join Ray and run the trials; returns Ray Tune's ``ResultGrid``."""
    import ray
    from ray import tune

    from finetune.sweep_trial import train_trial

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"  # trials read the recipe's relative paths from our folder
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            # "local": a new Ray of our own, even when a `ray start` cluster runs on this machine
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        trainable = tune.with_resources(
            tune.with_parameters(
                train_trial, base_config=config, metric=metric, parent_run_id=parent_run_id,
                tracking_uri=tracking_uri, trials_dir=str(folder / "trials"), workdir=os.getcwd(),
            ),
            {"cpu": cpus_per_trial, "gpu": gpus_per_trial},
        )  # fmt: skip
        tuner = tune.Tuner(
            trainable,
            param_space=to_tune(space),
            tune_config=tune.TuneConfig(
                metric=metric, mode=mode, num_samples=num_samples, scheduler=make_scheduler(space, metric, mode, config.trainer.max_epochs),
                max_concurrent_trials=max_concurrent_trials or None,
            ),
            run_config=tune.RunConfig(
                name="ray", storage_path=str(folder), verbose=1,
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


def write_best(results: Any, config: FinetuneConfig, metric: str, mode: str, folder: Path, tracking_uri: str, parent: str) -> SweepOutcome:
    """Pick the best trial (best value at any validation) and write its recipe, checkpoint and summary."""
    import yaml

    from finetune.tune_report import CHECKPOINT_FILE

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
    write_atomically(best_config, yaml.safe_dump(json.loads(json.dumps(recipe)), sort_keys=False))
    best_checkpoint = out / CHECKPOINT_FILE
    with checkpoint.as_directory() as local:
        shutil.copyfile(Path(local) / CHECKPOINT_FILE, best_checkpoint.with_suffix(".tmp"))
        best_checkpoint.with_suffix(".tmp").replace(best_checkpoint)
    iterations = [int(r.metrics.get("training_iteration", 0)) for r in results if r.metrics]
    outcome = SweepOutcome(
        folder=folder, metric=metric, mode=mode, best_value=best_value, best_params=params,
        best_config=best_config, best_checkpoint=best_checkpoint, parent_run_id=parent,
        tracking_uri=tracking_uri, trials=len(results), pruned=sum(i < config.trainer.max_epochs for i in iterations),
    )  # fmt: skip
    summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(outcome).items()}
    write_atomically(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return outcome


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary name beside ``path``, then rename it into place."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


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
