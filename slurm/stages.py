"""Each stage's recipe turned into the jobs of one submission.

A recipe is read by :func:`plumbing.recipes.load_recipe` against the stage's own config
(``PretrainConfig``, ``FinetuneConfig``) or command (``data_shards.cli.build``), so a recipe that
the stage's CLI accepts is accepted here, with the same error messages. Training configs get the
trainer layout of the allocation (:func:`slurm.resources.trainer_layout`) and absolute output
folders. Fine-tuning fans out over seeds and subject-exclusive folds (the splits, folders and
summary of ``python -m finetune folds``), shard building over parts; both end with a single job
that summarises or merges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

from data_shards.cli import build
from finetune.config import FinetuneConfig
from finetune.folds import finish_folds, fold_runs, folds_tracking_uri, plan_folds
from finetune.sweep.driver import SweepResources, SweepSettings
from plumbing.recipes import ConfigError, load_recipe, validate
from plumbing.tracking_store import create_sqlite_store
from pretrain.config import PretrainConfig
from slurm.jobs import FinetuneJob, PretrainJob, ShardMergeJob, ShardPartJob
from slurm.ray_cluster import RaySweepJob
from slurm.resources import SlurmResources, trainer_layout


@dataclass
class PlannedJob:
    """One job of a plan: the callable submitit pickles, what it is, and its resolved config."""

    name: str
    output: str
    job: Any
    config: Any


@dataclass
class Fanout:
    """How one recipe fans out into a job array.

    Args:
        seeds: fine-tuning: one run per seed (``trainer.seed``) in ``<output_dir>/seed<s>`` (with folds:
            ``fold<i>/seed<s>``); empty = the recipe's seed.
        folds: fine-tuning: subject-exclusive k-fold as ``python -m finetune folds`` runs it, one job per
            fold x seed, then one job that summarises (``folds.json``, MLflow parent run); 0 = no folds,
            unless ``fold_partition`` is given (then the partition's count).
        fold_partition: fine-tuning folds: ``auto`` (the published partition of the data's subjects, else
            random), ``published`` or ``random``; empty = ``auto`` when ``folds`` is given.
        val_fraction: fine-tuning folds: share of each fold's training subjects used for validation.
        num_parts: shard building: parts of the job array (one shard range each); 1 = one job.
        search_space: sweep: the sweep file (``configs/sweeps/*.yaml``).
        num_samples: sweep: trials to sample.
        cpus_per_trial: sweep: cores reserved per trial.
    """

    seeds: Sequence[int] = ()
    folds: int = 0
    fold_partition: Literal["", "auto", "published", "random"] = ""
    val_fraction: float = 0.15
    num_parts: int = 1
    search_space: str = ""
    num_samples: int = 4
    cpus_per_trial: float = 1.0

    def problems(self) -> list[tuple[str, str]]:
        """Impossible settings as (field, reason) pairs."""
        found = []
        if self.folds == 1 or self.folds < 0:
            found.append(("folds", "must be 0 (no folds) or >= 2"))
        if self.fold_partition not in ("", "auto", "published", "random"):
            found.append(("fold_partition", "must be auto, published or random (or empty)"))
        if self.num_parts < 1:
            found.append(("num_parts", "must be >= 1"))
        if len(set(self.seeds)) != len(self.seeds):
            found.append(("seeds", "must not repeat"))
        if self.num_samples < 1 or self.cpus_per_trial <= 0:
            found.append(("num_samples", "num_samples must be >= 1 and cpus_per_trial > 0"))
        return found


def _fit_trainer(trainer: Any, resources: SlurmResources) -> Any:
    """The trainer config fitted to the allocation, its output folder made absolute."""
    layout = trainer_layout(resources, trainer.strategy)
    return replace(trainer, **layout, output_dir=str(Path(trainer.output_dir).resolve()))


def pretrain_jobs(recipe: str, overrides: Sequence[str], resources: SlurmResources) -> list[PlannedJob]:
    """One pretraining job of the whole allocation."""
    config = PretrainConfig(**load_recipe(PretrainConfig, recipe, overrides))
    config.trainer = _fit_trainer(config.trainer, resources)
    validate(config, source=recipe)
    return [PlannedJob("pretrain", config.trainer.output_dir, PretrainJob(config, resources.max_requeues), config)]


def finetune_jobs(
    recipe: str, overrides: Sequence[str], resources: SlurmResources, fanout: Fanout
) -> tuple[list[PlannedJob], PlannedJob | None]:
    """One fine-tuning job per seed, or per (fold, seed) followed by the job that summarises the folds."""
    base = FinetuneConfig(**load_recipe(FinetuneConfig, recipe, overrides))
    base.trainer = _fit_trainer(base.trainer, resources)
    if fanout.folds or fanout.fold_partition:
        return _fold_jobs(recipe, base, resources, fanout)
    jobs: list[PlannedJob] = []
    for seed in fanout.seeds or [None]:
        config = base
        if seed is not None:
            trainer = replace(base.trainer, seed=seed, output_dir=str(Path(base.trainer.output_dir) / f"seed{seed}"))
            config = replace(base, trainer=trainer)
        validate(config, source=recipe)
        jobs.append(PlannedJob(f"seed={seed}" if seed is not None else "finetune", config.trainer.output_dir, FinetuneJob(config, resources.max_requeues), config))
    return jobs, None


def _fold_jobs(recipe: str, base: FinetuneConfig, resources: SlurmResources, fanout: Fanout) -> tuple[list[PlannedJob], PlannedJob]:
    """The runs of ``python -m finetune folds`` as array elements, logging to one store; then :func:`finetune.folds.finish_folds`."""
    try:
        splits, source = plan_folds(base, fanout.folds, fanout.val_fraction, fanout.fold_partition or "auto", fanout.seeds)
    except ConfigError as err:
        raise ConfigError(f"--folds {fanout.folds} --fold_partition {fanout.fold_partition or 'auto'}: {err}") from None
    tracking_uri = folds_tracking_uri(base)
    create_sqlite_store(tracking_uri)  # before the elements start: one store for all of them, created once
    base = replace(base, tracking=replace(base.tracking, tracking_uri=tracking_uri or base.tracking.tracking_uri))
    jobs = []
    for run in fold_runs(base, splits, fanout.seeds, tracking_uri):
        config = validate(run.config, source=recipe)
        jobs.append(PlannedJob(f"fold={run.fold} seed={run.seed}", config.trainer.output_dir, FinetuneJob(config, resources.max_requeues), config))
    output = base.trainer.output_dir
    summary = {"output_dir": output, "k": len(splits), "seeds": list(fanout.seeds), "partition": source}
    job = partial(finish_folds, base, splits, list(fanout.seeds), source)
    return jobs, PlannedJob(f"folds.json of {len(splits)} folds", output, job, summary)


def shard_jobs(
    recipe: str, overrides: Sequence[str], resources: SlurmResources, fanout: Fanout
) -> tuple[list[PlannedJob], PlannedJob | None]:
    """One single-task job per part of the shard set; with several parts, a merge job after them."""
    if resources.nodes * resources.devices_per_node != 1:
        raise ConfigError(
            f"--nodes={resources.nodes} --tasks_per_node={resources.devices_per_node}: shard building runs one task per "
            "array element; use --num_parts for more machines and shards.workers for more processes per part"
        )
    args = load_recipe(build, recipe, overrides)
    args["out"] = str(Path(args["out"]).resolve())
    jobs = []
    for part in range(fanout.num_parts):
        part_args = {**args, "shards": replace(args["shards"], num_parts=fanout.num_parts, part=part, progress=False)}
        jobs.append(PlannedJob(f"part {part}/{fanout.num_parts}", args["out"], ShardPartJob(part_args, resources.max_requeues), part_args))
    merge = PlannedJob("merge manifest", args["out"], ShardMergeJob(args["out"]), {"out": args["out"]}) if fanout.num_parts > 1 else None
    return jobs, merge


def sweep_jobs(recipe: str, overrides: Sequence[str], resources: SlurmResources, fanout: Fanout) -> list[PlannedJob]:
    """One job of one task per node: a Ray cluster over the allocation running a Ray Tune sweep of ``recipe``."""
    if not fanout.search_space:
        raise ConfigError("--search_space is required for a sweep: the sweep file (configs/sweeps/*.yaml)")
    if not Path(fanout.search_space).is_file():
        raise FileNotFoundError(f"--search_space: sweep file not found: {fanout.search_space}")
    config = validate(FinetuneConfig(**load_recipe(FinetuneConfig, recipe, overrides)), source=recipe)  # fail here, not on the nodes
    folder = str(Path(f"{config.trainer.output_dir}-sweep").resolve())
    settings = SweepSettings(
        search_space=str(Path(fanout.search_space).resolve()), num_samples=fanout.num_samples, output_dir=folder,
        resources=SweepResources(cpus_per_trial=fanout.cpus_per_trial, gpus_per_trial=1.0 if resources.gpus_per_node else 0.0),
    )  # fmt: skip
    job = RaySweepJob(str(Path(recipe).resolve()), settings, list(overrides), resources.gpus_per_node)
    resolved = {"config_path": job.config_path, "overrides": job.overrides, **asdict(settings)}
    return [PlannedJob(f"Ray Tune sweep, {fanout.num_samples} samples", folder, job, resolved)]
