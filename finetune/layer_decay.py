"""Layer-wise learning-rate decay (BEiT/MAE fine-tuning): lower blocks learn more slowly.

Layer 0 is the patch embedding (and CLS token / position table), layer ``i + 1`` is block ``i``
(its adapters included), layer ``depth + 1`` is everything above the blocks (norms, heads). A
parameter at layer ``l`` gets ``lr * decay ** (depth + 1 - l)``.
"""

from __future__ import annotations

from collections.abc import Callable

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
