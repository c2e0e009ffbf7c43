"""AdamW parameter groups and the warmup + half-cycle cosine learning-rate schedule.

Weight decay never applies to biases, normalisation weights, learned tokens (CLS, mask) or
position embeddings: every 0-/1-D parameter, every parameter named like a bias (also 2-D stacks
of expert biases) and every parameter named like a token or a position table. ``lr_scale`` lets
fine-tuning give each parameter its own learning-rate factor (layer-wise decay,
:func:`layer_decay_scale`); parameters with the same (decay, scale) share one group. The
schedule is a ``LambdaLR`` factor stepped once per optimiser step, so each group keeps its own scaled lr.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

NO_DECAY_NAME_PARTS = ("cls_token", "mask_token", "pos_embed", "dist_token", "reg_token")


def uses_weight_decay(name: str, parameter: torch.Tensor) -> bool:
    """False for biases (also stacked ones such as MoAE's ``up_bias``), norm weights (any 0-/1-D tensor),
    learned tokens and position embeddings."""
    if parameter.ndim <= 1 or name.rsplit(".", 1)[-1].endswith("bias"):
        return False
    return not any(part in name for part in NO_DECAY_NAME_PARTS)


def build_param_groups(
    model: nn.Module, weight_decay: float, lr_scale: Callable[[str], float] | None = None
) -> list[dict]:
    """AdamW groups: ``params``, ``weight_decay`` and ``lr_scale`` (1.0 without ``lr_scale``).

    Frozen parameters are left out. ``lr_scale(name)`` returns the factor multiplying the base
    learning rate of parameter ``name`` (e.g. layer-wise decay); the optimiser builder multiplies
    each group's ``lr`` by it. Groups are ordered by first appearance, so the order is stable.
    """
    groups: dict[tuple[bool, float], dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        decay = uses_weight_decay(name, parameter)
        scale = 1.0 if lr_scale is None else float(lr_scale(name))
        group = groups.setdefault(
            (decay, scale), {"params": [], "param_names": [], "weight_decay": weight_decay if decay else 0.0, "lr_scale": scale}
        )
        group["params"].append(parameter)
        group["param_names"].append(name)
    return list(groups.values())


def scaled_lr(base_lr: float, effective_batch: int) -> float:
    """The linear scaling rule: ``base_lr * effective_batch / 256``."""
    return base_lr * effective_batch / 256


def warmup_cosine(step: int, total: int, warmup: int, base: float, min_lr: float) -> float:
    """Learning rate at optimiser ``step``: linear warmup to ``base``, then half-cycle cosine to ``min_lr``."""
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / max(total - warmup, 1)
    return min_lr + (base - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_factor(step: int, total: int, warmup: int, base: float, min_lr: float) -> float:
    """:func:`warmup_cosine` relative to ``base``: the ``LambdaLR`` factor of each group's initial lr."""
    return warmup_cosine(step, total, warmup, base, min_lr) / base


def build_adamw(
    groups: list[dict], lr: float, betas: tuple[float, float], total_steps: int, warmup_steps: int, min_lr: float
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over ``groups`` (each at ``lr * lr_scale``) and its per-step warmup-cosine scheduler."""
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=betas)
    # A partial (not a closure or an object with attributes): LambdaLR saves nothing of it, so
    # the state stays plain data and a resumed run follows its own config's length (same
    # config: same schedule; a longer run stretches the cosine from the restored step).
    factor = partial(warmup_cosine_factor, total=total_steps, warmup=warmup_steps, base=lr, min_lr=min_lr)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# Layer-wise learning-rate decay (BEiT/MAE fine-tuning): lower blocks learn more slowly. Layer 0 is
# the patch embedding (and CLS token / position table), layer i + 1 is block i (its adapters
# included), layer depth + 1 is everything above the blocks (norms, heads). A parameter at
# layer l gets lr * decay ** (depth + 1 - l).
EMBEDDING_NAMES = ("patch_embed", "cls_token", "pos_embed")


def layer_id(name: str, depth: int, prefix: str = "encoder.") -> int:
    """The layer of parameter ``name`` (as ``model.named_parameters()`` names it)."""
    if not name.startswith(prefix):
        return depth + 1
    inner = name[len(prefix) :]
    if inner.startswith(EMBEDDING_NAMES):
        return 0
    if inner.startswith("blocks."):
        return int(inner.split(".")[1]) + 1
    return depth + 1


def layer_decay_scale(depth: int, decay: float, prefix: str = "encoder.") -> Callable[[str], float]:
    """A function from parameter name to its lr multiplier; ``decay = 1`` scales everything by 1."""
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"layer decay {decay} must be in (0, 1]")

    def scale(name: str) -> float:
        return decay ** (depth + 1 - layer_id(name, depth, prefix))

    return scale
