"""The fine-tuning model: a pretrained encoder, the pooled feature, task heads and the IAT identity head.

Plain PyTorch (no trainer). The pooled feature is the mean of the patch tokens followed by a
LayerNorm (``fc_norm``, as MAE fine-tuning with global pooling does; the encoder's own final
norm is replaced by the identity so the feature is normalised once). Every task head is a
linear layer on that feature; heads are named ``<task>_<modality>`` (``au_image``,
``expression_clip``...), so images and clips get separate heads (S4D).

Identity-Adversarial Training (FMAE-IAT): with IAT on, an identity head sits on the same
feature behind a gradient reversal (Ganin & Lempitsky 2015): the identity in the forward pass,
the gradient times ``-lambda`` in the backward pass, so the head learns who a face is while the
encoder is pushed to forget it. Whether the head exists is decided once, when the model is
built; lambda is an argument of :meth:`FaceTaskModel.forward` (0 cuts the encoder off from the
identity loss while the head still trains).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from timm.layers import DropPath
from torch import nn

from face_core.model.adapters import attach_moae
from face_core.model.config import TaskModelConfig, ViTConfig
from face_core.model.vit import LAYER_NORM_EPS, VisionTransformer


def head_name(task: str, modality: str) -> str:
    """The key of a task head: ``<task>_<modality>``."""
    return f"{task}_{modality}"


@dataclass
class TaskSpec:
    """Modalities, tasks and label vocabularies of a run, read from the training manifests.

    ``subjects`` is the identity vocabulary of the IAT head; ``subject_maps[modality]`` maps the
    subject index of that modality's training batches to it. ``class_maps[modality]`` maps a
    modality's expression labels onto ``class_names`` when its shards name the classes otherwise
    (-1 = a class outside ``class_names``); absent = the same names. ``modality_tasks`` lists, per
    modality, the tasks whose labels its shards carry (absent = every task): a run may learn
    expression from images and AUs from clips.
    """

    modalities: list[str]
    tasks: list[str]
    au_ids: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    subject_maps: dict[str, list[int]] = field(default_factory=dict)
    class_maps: dict[str, list[int]] = field(default_factory=dict)
    modality_tasks: dict[str, list[str]] = field(default_factory=dict)

    def tasks_for(self, modality: str) -> list[str]:
        """The tasks that have a head for ``modality``."""
        return list(self.modality_tasks.get(modality, self.tasks))

    def head_sizes(self) -> dict[str, int]:
        """Output width of every head, keyed by :func:`head_name`."""
        sizes = {"au": len(self.au_ids), "expression": len(self.class_names)}
        return {head_name(task, modality): sizes[task] for modality in self.modalities for task in self.tasks_for(modality)}


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * -ctx.strength, None


def reverse_gradient(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Identity forward; the gradient flowing back through it is multiplied by ``-strength``."""
    return _ReverseGradient.apply(x, float(strength))


def reversal_strength(peak: float, schedule: str, progress: float, gamma: float = 10.0) -> float:
    """Lambda at training ``progress`` in [0, 1].

    ``constant`` returns ``peak`` throughout (the FMAE-IAT reference); ``dann`` ramps from 0 to
    ``peak`` as ``peak * (2 / (1 + exp(-gamma * progress)) - 1)`` (Ganin et al.), which keeps the
    adversary from disturbing the first steps when the identity head is still random.
    """
    if schedule == "constant":
        return peak
    if schedule == "dann":
        progress = min(max(progress, 0.0), 1.0)
        return peak * (2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0)
    raise ValueError(f"unknown reversal schedule {schedule!r}; expected 'constant' or 'dann'")


class FaceTaskModel(nn.Module):
    """Encoder + pooled feature + one linear head per (task, modality) + optional identity head.

    Args:
        encoder: a ``face_core.model.vit.VisionTransformer`` (or any module with ``forward_features``,
            ``num_prefix_tokens``, ``norm`` and ``config.embed_dim``).
        head_sizes: output width of each head by :func:`head_name`.
        num_subjects: classes of the identity head; 0 = no identity head (IAT off).
    """

    def __init__(self, encoder: nn.Module, head_sizes: dict[str, int], num_subjects: int = 0) -> None:
        super().__init__()
        dim = encoder.config.embed_dim
        self.encoder = encoder
        self.encoder.norm = nn.Identity()
        self.fc_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.heads = nn.ModuleDict({name: nn.Linear(dim, size) for name, size in head_sizes.items()})
        self.identity_head = nn.Linear(dim, num_subjects) if num_subjects > 0 else None
        for head in [*self.heads.values(), *([self.identity_head] if self.identity_head else [])]:
            nn.init.trunc_normal_(head.weight, std=2e-5)
            nn.init.zeros_(head.bias)

    def pooled(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised float pixels (images or clips) -> pooled feature ``(B, D)``."""
        tokens = self.encoder.forward_features(pixels)[:, self.encoder.num_prefix_tokens :]
        return self.fc_norm(tokens.mean(dim=1))

    def forward(self, pixels: torch.Tensor, heads: list[str], reversal_strength: float = 0.0) -> dict[str, torch.Tensor]:
        """Logits of the named heads, plus ``feature`` and (with an identity head) ``identity``.

        ``reversal_strength`` is lambda of the gradient reversal in front of the identity head.
        """
        feature = self.pooled(pixels)
        out = {name: self.heads[name](feature) for name in heads}
        out["feature"] = feature
        if self.identity_head is not None:
            out["identity"] = self.identity_head(reverse_gradient(feature, reversal_strength))
        return out


def freeze_backbone(model: FaceTaskModel) -> None:
    """Train only adapters (``parallel_branch``), ``fc_norm`` and heads: parameter-efficient tuning."""
    for name, param in model.encoder.named_parameters():
        param.requires_grad = ".parallel_branch." in name


def learn_position_table(encoder: nn.Module) -> None:
    """Turn the encoder's fixed position table (a buffer) into a trained parameter with the same values.

    MAE-lineage fine-tuning (timm's ViT, FMAE-IAT) learns ``pos_embed`` from the pretrained sin-cos
    table; the state-dict key stays ``pos_embed``, so checkpoints load either way.
    """
    table = encoder.pos_embed
    if not isinstance(table, nn.Parameter):
        delattr(encoder, "pos_embed")
        encoder.pos_embed = nn.Parameter(table.detach().clone())


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """``{"total": ..., "trainable": ...}`` parameter counts."""
    params = list(model.parameters())
    return {"total": sum(p.numel() for p in params), "trainable": sum(p.numel() for p in params if p.requires_grad)}


def encoder_config_for(encoder: VisionTransformer, model: TaskModelConfig) -> ViTConfig:
    """The encoder's config with the fine-tuning drop-path rate (what a checkpoint must rebuild)."""
    return dataclasses.replace(encoder.config, drop_path_rate=model.drop_path_rate)


def build_task_model(
    encoder_config: ViTConfig, model_config: TaskModelConfig, spec: TaskSpec, *, identity_head: bool = False, encoder: nn.Module | None = None
) -> FaceTaskModel:
    """Encoder (``encoder`` or a fresh one from ``encoder_config``) + MoAE + heads (+ the IAT identity head with ``identity_head``).

    Drop-path rates are set from ``encoder_config`` (linear to the last block); the position
    table is learned with ``model_config.learn_pos_embed``; with ``model_config.freeze_backbone`` only
    adapters, the feature norm and the heads train.
    """
    encoder = encoder if encoder is not None else VisionTransformer(encoder_config)
    encoder.config = encoder_config
    rates = torch.linspace(0, encoder_config.drop_path_rate, len(encoder.blocks)).tolist()
    for block, rate in zip(encoder.blocks, rates):  # timm's blocks: one DropPath per residual branch
        block.drop_path1 = DropPath(rate) if rate > 0 else nn.Identity()
        block.drop_path2 = DropPath(rate) if rate > 0 else nn.Identity()
    if model_config.learn_pos_embed:
        learn_position_table(encoder)
    moae = model_config.moae
    if moae.top_blocks:
        attach_moae(encoder, moae.top_blocks, moae.num_experts, moae.top_k, moae.hidden_ratio, moae.scale, moae.router_noise, moae.dispatch)
    model = FaceTaskModel(encoder, spec.head_sizes(), len(spec.subjects) if identity_head else 0)
    if model_config.freeze_backbone:
        freeze_backbone(model)
    return model.train()  # loaders hand back eval-mode encoders; drop path and router noise need train mode
