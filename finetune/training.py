"""Run fine-tuning with Lightning: ``run_finetuning(config, extra_callbacks=None) -> FinetuneResult``.

Builds the data module (which reads the manifests into a :class:`~face_core.model.task_model.TaskSpec`),
loads the pretrained encoder (:func:`load_init_encoder`), the Lightning module,
strategy, MLflow logger, ``last.ckpt`` refreshes and a best-on-validation checkpoint; tags the
MLflow run with what the encoder started from (``init.*``: model URI and version, or training run
and weights SHA-256; :func:`face_core.release.registry.source_lineage`); fits; then tests the best
checkpoint (never selected on test) and writes ``result.json``. Launchers (SLURM
requeue, Ray Tune's report callback) pass their callbacks through ``extra_callbacks``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from face_core.engine.checkpointing import LAST_CHECKPOINT, checkpoint_dir, unreadable_reason
from face_core.engine.config import OptimConfig
from face_core.engine.tracking import restores_tracking_uri
from face_core.engine.trainer import CONFIG_RECORD, TrainingRun, build_trainer, effective_batch_size
from face_core.engine.training_metrics import MODALITIES, TrainingMetrics
from face_core.model.config import MoAEConfig, TaskModelConfig, ViTConfig
from face_core.model.flops import encoder_forward_flops, tokens_per_sample
from face_core.model.task_model import TaskSpec, encoder_config_for, parameter_counts
from face_core.model.vit import Block, VisionTransformer
from face_core.release.loading import load_model
from face_core.release.registry import source_lineage
from finetune.config import FinetuneConfig
from finetune.data_module import FinetuneDataModule
from finetune.lightning_module import FinetuneModule
from plumbing.files import write_json_atomic
from plumbing.recipes import ConfigError, config_from_dict

BEST_CHECKPOINT = "best.ckpt"


@dataclass
class FinetuneResult:
    """What a fine-tuning run produced (also written to ``<run_dir>/result.json``).

    ``os.fspath(result)`` is the run folder, so callers that expect a path keep working.
    """

    run_dir: str
    best_checkpoint: str
    monitor: str
    best_score: float | None
    parameters: dict[str, int] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)

    def __fspath__(self) -> str:
        return self.run_dir

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return dataclasses.asdict(self)


def monitor_metric(config: FinetuneConfig, spec: TaskSpec | None = None) -> str:
    """The validation metric that selects the best checkpoint: ``eval.monitor``, or for ``auto``
    ``val/au_f1_<m>`` when modality ``m`` (images first) learns AUs, else ``val/war_<m>``.
    Without ``spec`` every task is assumed on every modality.
    """
    if config.eval.monitor != "auto":
        return config.eval.monitor
    modality = "image" if config.data.images.train else "clip"
    tasks = config.tasks.tasks if spec is None else spec.tasks_for(modality)
    return f"val/au_f1_{modality}" if "au" in tasks else f"val/war_{modality}"


def check_splits(config: FinetuneConfig) -> None:
    """Every training modality needs a validation split: model selection is never done on test."""
    for section in (config.data.images, config.data.clips):
        if section.train and not section.val:
            raise ConfigError(
                f"data.{section.key}.val is empty but data.{section.key}.train is set: give a validation split "
                "(model selection and AU thresholds are never chosen on test), or run `python -m finetune folds`"
            )
        if section.class_balanced and "expression" not in config.tasks.tasks:
            raise ConfigError(f"data.{section.key}.class_balanced=True needs the 'expression' task in tasks.tasks")


def metric_names(config: FinetuneConfig, spec: TaskSpec) -> list[str]:
    """The validation metrics a run logs (what ``eval.monitor`` may name)."""
    names = []
    for modality in spec.modalities:
        if config.data.shards(modality, "val"):
            tasks = spec.tasks_for(modality)
            if "au" in tasks:
                names += [f"val/au_f1_{modality}", f"val/au_f1_valthr_{modality}"]
            if "expression" in tasks:
                names += [f"val/war_{modality}", f"val/uar_{modality}"]
    return names


def check_monitor(config: FinetuneConfig, spec: TaskSpec) -> str:
    """The monitored metric, checked against what the run will log."""
    monitor = monitor_metric(config, spec)
    logged = metric_names(config, spec)
    if monitor not in logged:
        raise ConfigError(f"eval.monitor={config.eval.monitor!r} selects {monitor!r}, which this run does not log; choose one of {logged}")
    return monitor


def load_init_encoder(model: TaskModelConfig) -> VisionTransformer:
    """The encoder of ``model.init`` (any checkpoint, release folder or MLflow URI that
    :func:`face_core.release.loading.load_model` reads), retargeted to ``img_size``/``num_frames`` when set
    (position tables interpolated); a fresh ``model.encoder`` when ``init`` is empty. A file it cannot
    use is a :class:`ConfigError` naming ``model.init`` in one line (torch's own message is a page long)."""
    if not model.init:
        return VisionTransformer(model.encoder)
    overrides = {name: getattr(model, name) for name in ("img_size", "num_frames") if getattr(model, name)}
    try:
        encoder = load_model(model.init, encoder_only=True, **overrides)
    except ValueError as err:
        reason = unreadable_reason(err.__cause__) if err.__cause__ is not None else str(err).strip().splitlines()[0]
        raise ConfigError(f"model.init={model.init!r}: {reason}; give a release folder, a checkpoint of ours or a public MAE/VideoMAE file") from None
    if not isinstance(encoder, VisionTransformer):
        raise ConfigError(f"model.init={model.init!r} gave a {type(encoder).__name__}, not a VisionTransformer encoder")
    return encoder


def init_lineage(init: str, run_store: str) -> tuple[dict[str, str], list[str]]:
    """MLflow tags naming what the encoder started from, and the logged models to link as inputs (rank 0: it hashes the weights)."""
    if not init or rank_zero_only.rank != 0:
        return {}, []
    return source_lineage(init, run_store)


def training_flops_per_sample(encoder: ViTConfig, moae: MoAEConfig, modality: str) -> float:
    """Forward + backward FLOPs of one sample: the encoder on every token plus the routed adapters."""
    tokens = tokens_per_sample(encoder, modality)
    hidden = max(1, round(encoder.embed_dim * moae.hidden_ratio))
    per_token = 2 * encoder.embed_dim * moae.num_experts * 2 + moae.top_k * 2 * 2 * encoder.embed_dim * hidden
    return 3.0 * (encoder_forward_flops(encoder, modality) + moae.top_blocks * tokens * per_token)


@restores_tracking_uri
def run_finetuning(config: FinetuneConfig, extra_callbacks: list | None = None) -> FinetuneResult:
    """Fine-tune as ``config`` says; test the best validation checkpoint; return what was produced.

    Args:
        config: a validated :class:`~finetune.config.FinetuneConfig`.
        extra_callbacks: Lightning callbacks added by a launcher (SLURM requeue, Ray Tune report).
    """
    check_splits(config)
    trainer_config = config.trainer
    run = TrainingRun(trainer_config, config.tracking)
    encoder = load_init_encoder(config.model)
    encoder_config = encoder_config_for(encoder, config.model)
    datamodule = FinetuneDataModule(config, encoder_config)
    spec = datamodule.task_spec()  # reads the manifests: bad paths and missing labels fail here
    if config.tasks.au_balance and "au" in spec.tasks:
        weights = datamodule.au_balance_weights(spec.au_ids)
        config = dataclasses.replace(config, tasks=dataclasses.replace(config.tasks, au_pos_weight=weights))
        datamodule.config = config
        rank_zero_info("AU positive weights (negatives / positives in training): " + " ".join(
            f"AU{au}={w:.2f}" for au, w in zip(spec.au_ids, weights)))
    monitor = check_monitor(config, spec)
    micro_batch = config.data.micro_batch()
    effective_batch = effective_batch_size(micro_batch, trainer_config, config.optim)
    module = FinetuneModule(
        dataclasses.asdict(encoder_config), dataclasses.asdict(config), dataclasses.asdict(spec),
        effective_batch, str(run.run_dir / "pictures"), encoder=encoder,
    )
    counts = parameter_counts(module.model)
    rank_zero_info(
        f"parameters: {counts['trainable']:,} trainable of {counts['total']:,} "
        f"({100 * counts['trainable'] / counts['total']:.2f}%); heads {sorted(spec.head_sizes())}"
        + (f"; identity head over {len(spec.subjects)} subjects, lambda {config.iat.strength}" if module.model.identity_head is not None else "")
    )
    best = ModelCheckpoint(
        dirpath=checkpoint_dir(run.run_dir), filename="best", monitor=monitor, mode="max", save_top_k=1,
        save_last=False, auto_insert_metric_name=False, enable_version_counter=False,
    )
    metrics = TrainingMetrics(
        run.run_dir, trainer_config.log_every_n_steps,
        {m: training_flops_per_sample(encoder_config, config.model.moae, m) for m in MODALITIES},
        {m: tokens_per_sample(encoder_config, m) for m in MODALITIES}, datamodule.skipped_samples,
    )
    trainer = run.trainer(
        config.optim, micro_batch, callbacks=[best, metrics, *(extra_callbacks or [])], wrap_modules=frozenset({Block}), enable_model_summary=False
    )
    derived = {
        "effective_batch": effective_batch, "lr": module.learning_rate, "world_size": trainer.world_size,
        "trainable_parameters": counts["trainable"], "total_parameters": counts["total"], "monitor": monitor,
        **{f"{m}_steps_per_epoch": n for m, n in datamodule.steps_per_epoch().items()},
    }  # fmt: skip
    tags, input_model_ids = init_lineage(config.model.init, run.tracking_uri) if config.tracking.enabled else ({}, [])
    run.record(config, {**dataclasses.asdict(config), "derived": derived}, tags=tags, input_model_ids=input_model_ids)
    trainer.fit(run.prepare(module), datamodule=datamodule, ckpt_path=run.resume_from)

    val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    best_path = best.best_model_path or str(checkpoint_dir(run.run_dir) / LAST_CHECKPOINT)
    score = None if best.best_model_score is None else float(best.best_model_score)
    test: dict[str, float] = {}
    if config.eval.test and (config.data.images.test or config.data.clips.test):
        trainer.test(module, datamodule=datamodule, ckpt_path=best_path, verbose=False)
        test = dict(module.test_results)
    result = FinetuneResult(str(run.run_dir), best_path, monitor, score, counts, val, test)
    if rank_zero_only.rank == 0:
        write_json_atomic(run.run_dir / "result.json", result.as_dict())
        rank_zero_info(f"best {monitor} = {score}; checkpoint {best_path}; test: {json.dumps(test, indent=1)}")
    return result


def evaluate_run(run_dir: str, *, checkpoint: str = "best", image_test: list[str] | None = None, clip_test: list[str] | None = None) -> dict[str, float]:
    """Test a checkpoint of the run in ``run_dir`` (one process) and write ``<run_dir>/evaluation.json``.

    ``checkpoint`` is ``best``, ``last`` or a path; ``image_test``/``clip_test`` replace the
    recipe's test sets. Returns the test metrics (and the identity probe's result).
    """
    folder = Path(run_dir)
    saved = folder / CONFIG_RECORD
    if not saved.is_file():
        raise FileNotFoundError(f"{saved}: not a fine-tuning run folder (no {CONFIG_RECORD})")
    config = config_from_dict(FinetuneConfig, json.loads(saved.read_text()), str(saved))
    named = {"best": checkpoint_dir(folder) / BEST_CHECKPOINT, "last": checkpoint_dir(folder) / LAST_CHECKPOINT}
    path = named.get(checkpoint, Path(checkpoint))
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint={checkpoint!r}: {path} does not exist")
    data = dataclasses.replace(
        config.data,
        images=dataclasses.replace(config.data.images, test=list(config.data.images.test if image_test is None else image_test)),
        clips=dataclasses.replace(config.data.clips, test=list(config.data.clips.test if clip_test is None else clip_test)),
    )
    if not data.images.test and not data.clips.test:
        raise ConfigError("no test sets: the run's recipe has none; pass --image_test or --clip_test")
    trainer_config = dataclasses.replace(config.trainer, devices=1, num_nodes=1, strategy="auto")
    config = dataclasses.replace(config, data=data, trainer=trainer_config)
    module = FinetuneModule.load_from_checkpoint(str(path), map_location="cpu", picture_dir=str(folder / "pictures"), weights_only=True)
    module.config = config
    trainer = build_trainer(
        trainer_config, OptimConfig(), data.images.batch_size, folder, logger=False, callbacks=[], enable_checkpointing=False, enable_model_summary=False
    )
    trainer.test(module, datamodule=FinetuneDataModule(config, ViTConfig(**module.hparams["encoder_config"])), verbose=False)
    results = dict(module.test_results)
    write_json_atomic(folder / "evaluation.json", {"checkpoint": str(path), "test": results})
    return results
