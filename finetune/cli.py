"""Command-line entry of fine-tuning: ``python -m finetune {fit,evaluate,folds} ...``.

Typed signatures are the documentation: ``python -m finetune fit --help`` lists every key of a
recipe with its type and default. Heavy libraries are imported inside the commands.
"""

from __future__ import annotations

from data_shards.config_checks import validate
from finetune.config import (
    EvalConfig,
    FinetuneConfig,
    FinetuneDataConfig,
    FinetuneModelConfig,
    FinetuneOptimConfig,
    IATConfig,
    TasksConfig,
)
from pretrain.config import TrackingConfig, TrainerConfig

DEFAULT_TRAINER = TrainerConfig(output_dir="runs/finetune", max_epochs=20)
DEFAULT_TRACKING = TrackingConfig(experiment="face-finetune")


def fit(
    model: FinetuneModelConfig = FinetuneModelConfig(),
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


def evaluate(run_dir: str, checkpoint: str = "best", image_test: list[str] | None = None, clip_test: list[str] | None = None) -> dict[str, float]:
    """Test a fine-tuned run's checkpoint (on its recipe's test sets, or the ones given); prints the metrics.

    Args:
        run_dir: the run folder written by ``fit`` (holds ``config.json`` and ``checkpoints/``).
        checkpoint: ``best`` (selected on validation), ``last``, or a checkpoint path.
        image_test: image shard sets to test on instead of the recipe's ``data.image_test``.
        clip_test: clip shard sets to test on instead of the recipe's ``data.clip_test``.
    """
    import json

    from finetune.training import evaluate_run

    results = evaluate_run(run_dir, checkpoint, image_test, clip_test)
    print(json.dumps(results, indent=1))
    return results


def folds(
    k: int = 3,
    val_fraction: float = 0.15,
    only: list[int] | None = None,
    model: FinetuneModelConfig = FinetuneModelConfig(),
    tasks: TasksConfig = TasksConfig(),
    iat: IATConfig = IATConfig(),
    data: FinetuneDataConfig = FinetuneDataConfig(),
    optim: FinetuneOptimConfig = FinetuneOptimConfig(),
    trainer: TrainerConfig = DEFAULT_TRAINER,
    tracking: TrackingConfig = DEFAULT_TRACKING,
    eval: EvalConfig = EvalConfig(),
) -> str:
    """Subject-exclusive k-fold fine-tuning (BP4D-style) of one recipe; returns the summary file.

    All subjects of ``data.image_train`` / ``data.clip_train`` are dealt into ``k`` folds; fold
    ``i`` tests on fold ``i``'s subjects and selects its model on validation subjects carved out
    of the others. Each fold runs in ``<trainer.output_dir>/fold<i>``; the mean and spread of
    the test metrics go to ``<trainer.output_dir>/folds.json``. ``only`` runs a subset of folds
    (one per SLURM array task); the summary then covers the folds finished so far.

    Args:
        k: number of folds.
        val_fraction: share of each fold's training subjects used for validation.
        only: fold indices to run; empty = all.
        model: the pretrained encoder to start from, MoAE, freezing.
        tasks: AU detection and/or expression recognition, loss options.
        iat: identity-adversarial training.
        data: the pooled shard sets (``*_train``) that the folds split by subject.
        optim: AdamW, layer-wise lr decay, warmup and cosine.
        trainer: devices, strategy, precision, duration, checkpoints.
        tracking: MLflow tracking.
        eval: model selection and the final evaluation.
    """
    config = FinetuneConfig(model, tasks, iat, data, optim, trainer, tracking, eval)
    from finetune.fold_runs import run_folds

    return str(run_folds(config, k, val_fraction, only or []))
