"""Build the fine-tuning model: pretrained encoder (any checkpoint kind), MoAE, heads, freezing."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from finetune.adapters import attach_moae
from finetune.config import FinetuneConfig, FinetuneModelConfig
from finetune.heads import FaceTaskModel, freeze_backbone
from finetune.task_spec import TaskSpec
from pretrain.config import ViTConfig
from pretrain.vit import VisionTransformer


def load_encoder(model: FinetuneModelConfig) -> VisionTransformer:
    """The encoder of ``model.init`` (any checkpoint, release folder or MLflow URI that
    :func:`pretrain.loading.load_model` reads), retargeted to ``img_size``/``num_frames`` when set
    (position tables interpolated); a fresh ``model.encoder`` when ``init`` is empty.
    """
    if not model.init:
        return VisionTransformer(model.encoder)
    from pretrain.loading import load_model

    overrides = {name: getattr(model, name) for name in ("img_size", "num_frames") if getattr(model, name)}
    encoder = load_model(model.init, encoder_only=True, **overrides)
    if not isinstance(encoder, VisionTransformer):
        raise TypeError(f"model.init={model.init!r} gave a {type(encoder).__name__}, not a VisionTransformer encoder")
    return encoder


def encoder_config_for(encoder: VisionTransformer, model: FinetuneModelConfig) -> ViTConfig:
    """The encoder's config with the fine-tuning drop-path rate (what a checkpoint must rebuild)."""
    return dataclasses.replace(encoder.config, drop_path_rate=model.drop_path_rate)


def build_task_model(encoder_config: ViTConfig, config: FinetuneConfig, spec: TaskSpec, encoder: nn.Module | None = None) -> FaceTaskModel:
    """Encoder (``encoder`` or a fresh one from ``encoder_config``) + MoAE + heads (+ identity head with IAT).

    Drop-path rates are set from ``encoder_config`` (linear to the last block); with
    ``model.freeze_backbone`` only adapters, the feature norm and the heads train.
    """
    encoder = encoder if encoder is not None else VisionTransformer(encoder_config)
    encoder.config = encoder_config
    rates = torch.linspace(0, encoder_config.drop_path_rate, len(encoder.blocks)).tolist()
    for block, rate in zip(encoder.blocks, rates):
        block.drop_path.rate = rate
    moae = config.model.moae
    if moae.top_blocks:
        attach_moae(encoder, moae.top_blocks, moae.num_experts, moae.top_k, moae.hidden_ratio, moae.scale, moae.router_noise, moae.dispatch)
    identities = len(spec.subjects) if config.iat.strength > 0 else 0
    model = FaceTaskModel(encoder, spec.head_sizes(), identities, config.iat.strength)
    if config.model.freeze_backbone:
        freeze_backbone(model)
    return model.train()  # loaders hand back eval-mode encoders; drop path and router noise need train mode
