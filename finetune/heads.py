"""The fine-tuning model: a pretrained encoder, the pooled feature, task heads and the identity head.

Plain PyTorch (no trainer). The pooled feature is the mean of the patch tokens followed by a
LayerNorm (``fc_norm``, as MAE fine-tuning with global pooling does; the encoder's own final
norm is replaced by the identity so the feature is normalised once). Every task head is a
linear layer on that feature; heads are named ``<task>_<modality>`` (``au_image``,
``expression_clip``...), so images and clips get separate heads (S4D). The identity head sits
behind a :class:`~finetune.grad_reverse.GradientReversal` on the same feature (IAT).
"""

from __future__ import annotations

import torch
from torch import nn

from finetune.grad_reverse import GradientReversal

LAYER_NORM_EPS = 1e-6


def head_name(task: str, modality: str) -> str:
    """The key of a task head: ``<task>_<modality>``."""
    return f"{task}_{modality}"


class FaceTaskModel(nn.Module):
    """Encoder + pooled feature + one linear head per (task, modality) + optional identity head.

    Args:
        encoder: a ``pretrain.vit.VisionTransformer`` (or any module with ``forward_features``,
            ``num_prefix_tokens``, ``norm`` and ``config.embed_dim``).
        head_sizes: output width of each head by :func:`head_name`.
        num_subjects: classes of the identity head; 0 = no identity head.
        reversal_strength: initial lambda of the gradient reversal.
    """

    def __init__(self, encoder: nn.Module, head_sizes: dict[str, int], num_subjects: int = 0, reversal_strength: float = 0.0) -> None:
        super().__init__()
        dim = encoder.config.embed_dim
        self.encoder = encoder
        self.encoder.norm = nn.Identity()
        self.fc_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.heads = nn.ModuleDict({name: nn.Linear(dim, size) for name, size in head_sizes.items()})
        self.reversal = GradientReversal(reversal_strength)
        self.identity_head = nn.Linear(dim, num_subjects) if num_subjects > 0 else None
        for head in [*self.heads.values(), *([self.identity_head] if self.identity_head else [])]:
            nn.init.trunc_normal_(head.weight, std=2e-5)
            nn.init.zeros_(head.bias)

    def pooled(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised float pixels (images or clips) -> pooled feature ``(B, D)``."""
        tokens = self.encoder.forward_features(pixels)[:, self.encoder.num_prefix_tokens :]
        return self.fc_norm(tokens.mean(dim=1))

    def forward(self, pixels: torch.Tensor, heads: list[str]) -> dict[str, torch.Tensor]:
        """Logits of the named heads, plus ``feature`` and (with an identity head) ``identity``."""
        feature = self.pooled(pixels)
        out = {name: self.heads[name](feature) for name in heads}
        out["feature"] = feature
        if self.identity_head is not None:
            out["identity"] = self.identity_head(self.reversal(feature))
        return out


def freeze_backbone(model: FaceTaskModel) -> None:
    """Train only adapters (``parallel_branch``), ``fc_norm`` and heads: parameter-efficient tuning."""
    for name, param in model.encoder.named_parameters():
        param.requires_grad = ".parallel_branch." in name


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """``{"total": ..., "trainable": ...}`` parameter counts."""
    params = list(model.parameters())
    return {"total": sum(p.numel() for p in params), "trainable": sum(p.numel() for p in params if p.requires_grad)}
