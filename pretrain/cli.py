"""Command-line entry of pretraining: ``python -m pretrain {fit,release,export} ...``.

Typed signatures are the documentation: ``python -m pretrain fit --help`` lists every key of
the recipe with its type and default. Heavy libraries are imported inside the commands.
"""

from __future__ import annotations

from typing import Literal

from face_core.engine.config import OptimConfig, TrackingConfig, TrainerConfig
from face_core.model.config import MAEConfig
from plumbing.recipes import ConfigError, validate
from pretrain.config import PretrainConfig, PretrainDataConfig, RepresentationProbeConfig


def fit(
    model: MAEConfig = MAEConfig(),
    data: PretrainDataConfig = PretrainDataConfig(),
    optim: OptimConfig = OptimConfig(),
    trainer: TrainerConfig = TrainerConfig(),
    tracking: TrackingConfig = TrackingConfig(),
    probe: RepresentationProbeConfig = RepresentationProbeConfig(),
) -> str:
    """Pretrain the masked autoencoder on image and/or clip shards; returns the run folder.

    Args:
        model: encoder, decoder and masking.
        data: shard streams and batch sizes.
        optim: optimiser and schedule.
        trainer: devices, strategy, precision, duration, checkpoints.
        tracking: MLflow tracking.
        probe: the online linear probe of the encoder on labelled image sets (off without train_shards).
    """
    config = validate(PretrainConfig(model, data, optim, trainer, tracking, probe))
    from pretrain.training import run_pretraining

    return run_pretraining(config)


def release(checkpoint: str, *, out: str, with_decoder: bool = False, name: str = "", alias: str = "", tracking_uri: str = "") -> str:
    """Write a trained model as a release folder (model.safetensors + config.json); returns the folder.

    Args:
        checkpoint: a checkpoint of ours (``.ckpt`` file or DeepSpeed checkpoint folder, e.g.
            ``runs/demo/pretrain/checkpoints/last.ckpt``), a public MAE/VideoMAE file, or a release folder.
        out: the new release folder (must not exist or be empty).
        with_decoder: release the whole masked autoencoder instead of the encoder alone.
        name: also register the folder in the MLflow model registry under this name (``face-mae-vit-b``).
        alias: with ``name``, point this alias (``champion``) at the new version.
        tracking_uri: MLflow store for ``name``; empty = ``$MLFLOW_TRACKING_URI``, else the checkpoint's training run's.
    """
    from face_core.release.loading import release_checkpoint

    folder = release_checkpoint(checkpoint, out, with_decoder)
    print(f"released {'the MAE' if with_decoder else 'the encoder'} of {checkpoint} to {folder}")
    if name:
        from face_core.release.registry import register_trained_release

        register_trained_release(folder, name, alias or None, tracking_uri or None, checkpoint)
    return str(folder)


def export(release: str, *, out: str, to: Literal["transformers"] = "transformers") -> str:
    """Write a release's encoder in another library's format; returns the new folder.

    ``--to transformers``: a folder that ``transformers.ViTMAEModel.from_pretrained`` (encoders with
    a CLS token: images) or ``VideoMAEModel.from_pretrained`` (without: clips) loads; it is loaded
    back and compared with our encoder before it appears (docs/model.md).

    Args:
        release: a release folder (model.safetensors + config.json, e.g. from ``python -m pretrain release``).
        out: the new folder (must not exist or be empty).
        to: the target library.
    """
    try:
        from face_core.release.transformers_export import export_transformers
    except ModuleNotFoundError as missing:
        if (missing.name or "").split(".")[0] != "transformers":
            raise
        raise ConfigError(f"--to {to}: needs the transformers package; pip install 'face-foundation[export]'") from None
    folder = export_transformers(release, out)
    print(f"exported the encoder of {release} for {to} to {folder}")
    return str(folder)
