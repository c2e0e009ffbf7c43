"""Command-line entry of fine-tuning: ``python -m finetune {fit,evaluate,folds,sweep,release,score} ...``.

Typed signatures are the documentation: ``python -m finetune fit --help`` lists every key of a
recipe with its type and default. Heavy libraries are imported inside the commands.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from typing import Any, Literal

from face_core.engine.config import TrackingConfig, TrainerConfig
from finetune.config import (
    DEFAULT_TRACKING,
    DEFAULT_TRAINER,
    EvalConfig,
    FinetuneConfig,
    FinetuneDataConfig,
    FinetuneOptimConfig,
    IATConfig,
    TaskModelConfig,
    TasksConfig,
)
from plumbing.recipes import ConfigError, validate


def fit(
    model: TaskModelConfig = TaskModelConfig(),
    tasks: TasksConfig = TasksConfig(),
    iat: IATConfig = IATConfig(),
    data: FinetuneDataConfig = FinetuneDataConfig(),
    optim: FinetuneOptimConfig = FinetuneOptimConfig(),
    trainer: TrainerConfig = DEFAULT_TRAINER,
    tracking: TrackingConfig = DEFAULT_TRACKING,
    eval: EvalConfig = EvalConfig(),
) -> str:
    """Fine-tune a pretrained encoder for AU detection and/or expression recognition; returns the run folder.

    The best checkpoint (on the validation split) is tested at the end; the run folder holds
    ``checkpoints/``, ``pictures/``, ``config.json`` and ``result.json``.

    Args:
        model: the pretrained encoder to start from, MoAE, freezing.
        tasks: AU detection and/or expression recognition, loss options.
        iat: identity-adversarial training.
        data: shard sets per split and modality, batches, augmentation, test views.
        optim: AdamW, layer-wise lr decay, warmup and cosine.
        trainer: devices, strategy, precision, duration, checkpoints.
        tracking: MLflow tracking.
        eval: model selection and the final evaluation.
    """
    config = validate(FinetuneConfig(model, tasks, iat, data, optim, trainer, tracking, eval))
    from finetune.training import run_finetuning

    return str(run_finetuning(config).run_dir)


def takes_the_recipe(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``command`` (which takes ``**recipe``) the recipe sections of :func:`fit` as its own typed parameters.

    The command line is built from the signature, type hints and docstring, so ``folds`` and
    ``sweep`` list every recipe key with its type, default and help exactly as ``fit`` does; a
    section the command's own docstring describes keeps that wording.
    """
    own = inspect.signature(command)
    sections = inspect.signature(fit).parameters
    kept = [p for p in own.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    command.__signature__ = own.replace(parameters=[*kept, *sections.values()])
    command.__annotations__ = {**{k: v for k, v in command.__annotations__.items() if k != "recipe"}, **{k: fit.__annotations__[k] for k in sections}}
    described = set(re.findall(r"^ {8}(\w+):", command.__doc__ or "", re.M))
    fit_docs = re.findall(r"^( {8}(\w+):.*(?:\n {12}.*)*)", fit.__doc__ or "", re.M)
    missing = "".join(f"\n{text}" for text, name in fit_docs if name in sections and name not in described)
    command.__doc__ = (command.__doc__ or "").rstrip() + missing + "\n"
    return command


def evaluate(run_dir: str, checkpoint: str = "best", image_test: list[str] | None = None, clip_test: list[str] | None = None) -> dict[str, float]:
    """Test a fine-tuned run's checkpoint (on its recipe's test sets, or the ones given); prints the metrics.

    Args:
        run_dir: the run folder written by ``fit`` (holds ``config.json`` and ``checkpoints/``).
        checkpoint: ``best`` (selected on validation), ``last``, or a checkpoint path.
        image_test: image shard sets to test on instead of the recipe's ``data.images.test``.
        clip_test: clip shard sets to test on instead of the recipe's ``data.clips.test``.
    """
    from finetune.training import evaluate_run

    results = evaluate_run(run_dir, checkpoint=checkpoint, image_test=image_test, clip_test=clip_test)
    print(json.dumps(results, indent=1))
    return results


@takes_the_recipe
def folds(
    k: int = 0,
    partition: Literal["auto", "published", "random"] = "auto",
    seeds: list[int] | None = None,
    val_fraction: float = 0.15,
    only: list[int] | None = None,
    **recipe: Any,
) -> str:
    """Subject-exclusive k-fold fine-tuning of one recipe, each fold once per seed; returns the summary file.

    The subjects of ``data.images.train`` / ``data.clips.train`` are split by the published
    partition of their dataset (BP4D and DISFA: 3 folds, BP4D+: 4) or dealt at random into
    ``k`` folds; fold ``i`` tests on fold ``i``'s subjects and selects its model on validation
    subjects carved out of the others. Each fold runs in ``<trainer.output_dir>/fold<i>`` (one
    seed) or ``fold<i>/seed<s>`` (several), as MLflow child runs of one parent run; per fold, the
    mean, std and 95% interval of every test metric go to ``<trainer.output_dir>/folds.json``,
    the console and the parent run. ``only`` runs a subset of folds; the summary then covers the
    runs finished so far.

    Args:
        k: number of folds; 0 = the partition's count (BP4D 3, BP4D+ 4, DISFA 3; random: 3).
        partition: ``auto`` = the published partition when one holds every subject, else random;
            ``published`` (refused when none does); ``random`` (seeded by ``trainer.seed``).
        seeds: run every fold once per seed, e.g. ``--seeds [0,1,2]``; empty = the recipe's ``trainer.seed``.
        val_fraction: share of each fold's training subjects used for validation.
        only: fold indices to run; empty = all.
        data: the pooled shard sets (``images.train``, ``clips.train``) that the folds split by subject.
    """
    config = FinetuneConfig(**recipe)
    from finetune.folds import run_folds

    return str(run_folds(config, k=k, val_fraction=val_fraction, only=only or [], partition=partition, seeds=seeds or []))


@takes_the_recipe
def sweep(
    search_space: str = "",
    num_samples: int = 4,
    scheduler: Literal["", "asha", "pbt"] = "",
    address: str = "",
    num_cpus: int = 0,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    max_concurrent_trials: int = 0,
    sweep_dir: str = "",
    **recipe: Any,
) -> str:
    """Ray Tune sweep of a fine-tuning recipe (``--config``) over a sweep file; prints the best trial.

    One Lightning fine-tune per trial; ASHA stops weak trials (or PBT clones strong ones); each
    trial is an MLflow child run of the sweep's run. Writes ``<sweep_dir>/best/config.yaml``,
    ``best/checkpoint.ckpt`` and ``best/summary.json``; returns the best checkpoint's path.

    Args:
        search_space: sweep file (``configs/sweeps/tiny.yaml``): recipe keys, distributions, scheduler, metric.
        num_samples: trials to sample (times the size of any ``grid``).
        scheduler: ``asha`` or ``pbt`` instead of the sweep file's; empty = the file's.
        address: Ray cluster to join (``auto``, ``host:port``); empty = start Ray in this process.
        num_cpus: cores for a Ray started here; 0 = all.
        cpus_per_trial: cores reserved per trial.
        gpus_per_trial: GPUs reserved per trial.
        max_concurrent_trials: trials at once; 0 = as many as the resources allow.
        sweep_dir: sweep folder; empty = ``<trainer.output_dir>-sweep``.
        trainer: devices, strategy, precision, duration, checkpoints (per trial).
        tracking: MLflow tracking (the sweep's run and its trials).
        eval: model selection (``eval.monitor`` is the default sweep metric).
    """
    if not search_space:
        raise ConfigError("--search_space: give the sweep file, e.g. --search_space configs/sweeps/tiny.yaml")
    from finetune.sweep.driver import SweepResources, SweepSettings, sweep_recipe

    resources = SweepResources(
        address=address or None, num_cpus=num_cpus or None, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
        max_concurrent_trials=max_concurrent_trials,
    )  # fmt: skip
    settings = SweepSettings(search_space, num_samples, output_dir=sweep_dir or None, scheduler=scheduler or None, resources=resources)
    outcome = sweep_recipe(FinetuneConfig(**recipe), settings)
    return str(outcome.best_checkpoint)


def release(checkpoint: str, *, out: str, name: str = "", alias: str = "", tracking_uri: str = "") -> str:
    """Write a fine-tuned model as a release folder (model.safetensors + config.json); optionally register it in MLflow.

    Args:
        checkpoint: a fine-tuning checkpoint, e.g. ``runs/demo/finetune/checkpoints/best.ckpt``.
        out: the new release folder (must not exist or be empty).
        name: also register the folder in the MLflow model registry under this name (``face-au-tiny``).
        alias: with ``name``, point this alias (``champion``) at the new version.
        tracking_uri: MLflow store for ``name``; empty = ``$MLFLOW_TRACKING_URI``, else the checkpoint's training run's.
    """
    from face_core.release.registry import register_trained_release
    from finetune.release import LOADER_MODULE, release_finetuned

    folder = release_finetuned(checkpoint, out)
    print(f"released the fine-tuned model of {checkpoint} to {folder}")
    if name:
        register_trained_release(folder, name, alias or None, tracking_uri or None, checkpoint, LOADER_MODULE)
    return str(folder)


def score(
    model: str, image_test: list[str] | None = None, clip_test: list[str] | None = None, batch_size: int = 32, tracking_uri: str = ""
) -> dict[str, float]:
    """Load a released fine-tuned model (folder or MLflow URI) and print its test metrics as JSON.

    Beside the metrics, ``test/samples_*`` count the samples scored, expected from the manifests,
    missing and skipped (corrupt samples, truncated shards); missing samples are also reported on stderr.

    Args:
        model: a release folder or an MLflow URI (``models:/face-au-tiny@champion``, ``runs:/<id>/model``).
        image_test: image shard sets to test on.
        clip_test: clip shard sets to test on.
        batch_size: samples per forward pass.
        tracking_uri: MLflow store that resolves a URI ``model``; empty = ``$MLFLOW_TRACKING_URI``.
    """
    from face_core.evaluation.scoring import score_release

    results = score_release(model, image_test=image_test or [], clip_test=clip_test or [], batch_size=batch_size, tracking_uri=tracking_uri or None)
    print(json.dumps({"model": model, **results}, indent=2))
    return results
