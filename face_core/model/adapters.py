"""Mixture of Adapter Experts (S4D's MoAE), run beside a transformer block's MLP.

Each expert is an AdaptFormer bottleneck: ``Linear(D, H) -> GELU -> Linear(H, D)``, the
up-projection initialised to zero and the output multiplied by ``scale`` (0.1), so a freshly
attached mixture adds exactly nothing and the pretrained encoder is unchanged at step 0.

A noisy top-k router picks ``top_k`` of ``num_experts`` experts per token: ``logits = x W_g``,
plus ``randn * softplus(x W_n)`` in training only (evaluation is deterministic: the reference
left the noise on). The kept logits are softmaxed into gates. The Switch-style load-balancing
loss uses router *probabilities* (softmax over all experts), not raw logits:
``E * sum_e load_e * mean_prob_e`` with ``load_e`` the fraction of routing slots sent to ``e``;
it is 1 for perfectly uniform routing. No token is ever dropped (no capacity limit).

Two dispatch modes compute the same numbers:

- ``sparse``: tokens are sorted by expert and each expert runs on its own tokens only (top-k
  of E experts' FLOPs); the per-expert token counts are read on the host once per layer.
- ``dense``: every expert runs on every token and unselected outputs get a zero gate (E / top_k
  times the FLOPs, no host synchronisation; batched matmuls suit GPUs).
- ``auto`` (the default): ``dense`` on CUDA, where a host read per layer would stall the GPU's
  queue, ``sparse`` elsewhere. The expert load is counted on the device either way.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Dispatch = Literal["auto", "sparse", "dense"]


class MixtureOfAdapterExperts(nn.Module):
    """Top-k routed bottleneck adapters over tokens ``(B, N, D) -> (B, N, D)``.

    After each forward, ``balance_loss`` holds the load-balancing loss (a scalar tensor with
    gradient) and ``expert_load`` the detached fraction of routing slots per expert ``(E,)``.
    """

    def __init__(
        self,
        dim: int,
        num_experts: int = 8,
        top_k: int = 2,
        hidden_dim: int | None = None,
        scale: float = 0.1,
        router_noise: bool = True,
        dispatch: Dispatch = "auto",
    ) -> None:
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k={top_k} must be in [1, num_experts={num_experts}]")
        if dispatch not in ("auto", "sparse", "dense"):
            raise ValueError(f"dispatch={dispatch!r} must be 'auto', 'sparse' or 'dense'")
        hidden = hidden_dim or max(1, dim // 4)
        self.num_experts, self.top_k, self.scale = num_experts, top_k, scale
        self.router_noise, self.dispatch = router_noise, dispatch
        self.router = nn.Linear(dim, num_experts, bias=False)
        self.noise = nn.Linear(dim, num_experts, bias=False)
        self.down_weight = nn.Parameter(torch.empty(num_experts, dim, hidden))
        self.down_bias = nn.Parameter(torch.zeros(num_experts, hidden))
        self.up_weight = nn.Parameter(torch.zeros(num_experts, hidden, dim))
        self.up_bias = nn.Parameter(torch.zeros(num_experts, dim))
        bound = 1.0 / math.sqrt(dim)  # nn.Linear's default initialisation, per expert
        nn.init.uniform_(self.down_weight, -bound, bound)
        nn.init.zeros_(self.router.weight)
        nn.init.zeros_(self.noise.weight)
        self.balance_loss: torch.Tensor = torch.zeros(())
        self.expert_load: torch.Tensor = torch.zeros(num_experts)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens ``(T, D)`` -> (expert ids ``(T, k)``, gates ``(T, k)``, probabilities ``(T, E)``)."""
        logits = self.router(x)
        if self.training and self.router_noise:
            logits = logits + torch.randn_like(logits) * F.softplus(self.noise(x))
        top_logits, experts = logits.topk(self.top_k, dim=-1)
        return experts, top_logits.softmax(dim=-1), logits.softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Adapter output for each token, to be added beside the block's MLP output."""
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])
        experts, gates, probs = self.route(tokens)
        slots = experts.reshape(-1)
        load = torch.zeros(self.num_experts, dtype=probs.dtype, device=probs.device).index_add_(0, slots, torch.ones_like(slots, dtype=probs.dtype))
        load = load / slots.numel()
        self.expert_load = load
        self.balance_loss = self.num_experts * (load * probs.mean(dim=0)).sum()
        if self.resolved_dispatch(tokens.device) == "dense":
            out = self._dense(tokens, experts, gates)
        else:
            out = self._sparse(tokens, experts, gates)
        return (out * self.scale).reshape(shape)

    def resolved_dispatch(self, device: torch.device) -> str:
        """``sparse`` or ``dense``: the configured mode, or for ``auto`` the one that suits ``device``."""
        if self.dispatch != "auto":
            return self.dispatch
        return "dense" if torch.device(device).type == "cuda" else "sparse"

    def _expert(self, index: int, x: torch.Tensor) -> torch.Tensor:
        hidden = F.gelu(torch.addmm(self.down_bias[index], x, self.down_weight[index]))
        return torch.addmm(self.up_bias[index], hidden, self.up_weight[index])

    def _sparse(self, tokens: torch.Tensor, experts: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        flat_experts = experts.reshape(-1)
        order = flat_experts.argsort(stable=True)
        token_of_slot = order // self.top_k
        counts = torch.bincount(flat_experts, minlength=self.num_experts).tolist()  # the host read
        grouped = tokens.index_select(0, token_of_slot).split(counts)
        outputs = [self._expert(e, chunk) for e, chunk in enumerate(grouped) if chunk.shape[0]]
        weighted = torch.cat(outputs) * gates.reshape(-1)[order].unsqueeze(-1).to(tokens.dtype)
        return torch.zeros_like(tokens).index_add_(0, token_of_slot, weighted)

    def _dense(self, tokens: torch.Tensor, experts: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        hidden = F.gelu(torch.einsum("td,edh->eth", tokens, self.down_weight) + self.down_bias[:, None])
        outputs = torch.einsum("eth,ehd->etd", hidden, self.up_weight) + self.up_bias[:, None]
        weights = torch.zeros(tokens.shape[0], self.num_experts, dtype=tokens.dtype, device=tokens.device)
        weights.scatter_(1, experts, gates.to(tokens.dtype))
        return torch.einsum("etd,te->td", outputs, weights)

    def extra_repr(self) -> str:
        return f"experts={self.num_experts}, top_k={self.top_k}, scale={self.scale}, dispatch={self.dispatch}"


def attach_moae(
    encoder: nn.Module,
    top_blocks: int,
    num_experts: int = 8,
    top_k: int = 2,
    hidden_ratio: float = 0.25,
    scale: float = 0.1,
    router_noise: bool = True,
    dispatch: Dispatch = "auto",
) -> list[MixtureOfAdapterExperts]:
    """Put a fresh mixture into the ``parallel_branch`` slot of the top ``top_blocks`` blocks.

    ``encoder.blocks`` must be blocks with a ``parallel_branch`` slot (``face_core.model.vit.Block``).
    Returns the attached mixtures, bottom first.
    """
    blocks = list(encoder.blocks)
    if not 1 <= top_blocks <= len(blocks):
        raise ValueError(f"top_blocks={top_blocks} must be in [1, {len(blocks)}] (the encoder's depth)")
    attached = []
    for block in blocks[len(blocks) - top_blocks :]:
        if not hasattr(block, "parallel_branch"):
            raise TypeError(f"{type(block).__name__} has no parallel_branch slot for adapters")
        dim = block.norm2.normalized_shape[0]
        block.parallel_branch = MixtureOfAdapterExperts(
            dim, num_experts, top_k, max(1, round(dim * hidden_ratio)), scale, router_noise, dispatch
        )
        attached.append(block.parallel_branch)
    return attached
