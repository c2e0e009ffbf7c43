"""Mixture of Adapter Experts: zero at init, deterministic in eval, sparse == dense, balance loss."""

import pytest
import torch

from face_core.model.adapters import MixtureOfAdapterExperts, attach_moae
from face_core.model.config import ViTConfig
from face_core.model.vit import VisionTransformer


def trained_like(moae: MixtureOfAdapterExperts) -> MixtureOfAdapterExperts:
    """Give the zero-initialised router and up-projections values, as after some training."""
    torch.manual_seed(1)
    with torch.no_grad():
        for param in (moae.router.weight, moae.noise.weight, moae.up_weight, moae.up_bias):
            param.normal_(0, 0.5)
    return moae


def test_fresh_mixture_adds_nothing() -> None:
    moae = MixtureOfAdapterExperts(16, num_experts=4, top_k=2)
    x = torch.randn(2, 5, 16)
    assert torch.equal(moae(x), torch.zeros_like(x))


def test_eval_is_deterministic_and_training_is_noisy() -> None:
    moae = trained_like(MixtureOfAdapterExperts(16, num_experts=6, top_k=2))
    x = torch.randn(3, 7, 16)
    moae.eval()
    first, second = moae(x), moae(x)
    assert torch.equal(first, second)
    moae.train()
    torch.manual_seed(0)
    noisy = moae(x)
    torch.manual_seed(1)
    assert not torch.equal(noisy, moae(x))  # router noise changes the routing in training only


def test_sparse_and_dense_dispatch_agree_with_a_per_token_loop() -> None:
    moae = trained_like(MixtureOfAdapterExperts(12, num_experts=5, top_k=2, hidden_dim=4)).eval()
    x = torch.randn(2, 6, 12)
    sparse = moae(x)  # auto on the CPU
    moae.dispatch = "dense"
    dense = moae(x)
    tokens = x.reshape(-1, 12)
    experts, gates, _ = moae.route(tokens)
    expected = torch.stack([
        sum(gates[t, j] * moae._expert(int(experts[t, j]), tokens[t : t + 1])[0] for j in range(2)) for t in range(tokens.shape[0])
    ]).reshape(x.shape) * moae.scale
    assert torch.allclose(sparse, expected, atol=1e-5)
    assert torch.allclose(dense, expected, atol=1e-5)


def test_auto_dispatch_is_dense_on_cuda_and_counts_the_load_on_the_device() -> None:
    """No host read per layer on a GPU (the sparse split needs per-expert counts on the host)."""
    moae = trained_like(MixtureOfAdapterExperts(8, num_experts=4, top_k=2)).eval()
    assert moae.resolved_dispatch(torch.device("cuda")) == "dense"
    assert moae.resolved_dispatch(torch.device("cpu")) == "sparse"
    moae.dispatch = "sparse"
    assert moae.resolved_dispatch(torch.device("cuda")) == "sparse"
    x = torch.randn(3, 5, 8)
    moae(x)
    experts, _, _ = moae.route(x.reshape(-1, 8))
    expected = torch.bincount(experts.reshape(-1), minlength=4).float() / experts.numel()
    assert torch.allclose(moae.expert_load, expected) and moae.expert_load.sum().item() == pytest.approx(1.0)


def test_gradients_reach_experts_router_and_input() -> None:
    moae = trained_like(MixtureOfAdapterExperts(8, num_experts=4, top_k=2))
    x = torch.randn(2, 3, 8, requires_grad=True)
    (moae(x).square().sum() + moae.balance_loss).backward()
    for param in (moae.down_weight, moae.up_weight, moae.router.weight):
        assert param.grad is not None and param.grad.abs().sum() > 0
    assert x.grad.abs().sum() > 0


def test_balance_loss_and_load() -> None:
    moae = MixtureOfAdapterExperts(8, num_experts=4, top_k=1, router_noise=False)
    with torch.no_grad():
        moae.router.weight.zero_()
        moae.router.weight[0].fill_(10.0)  # every token prefers expert 0
    moae(torch.rand(1, 10, 8) + 0.1)
    assert torch.allclose(moae.expert_load, torch.tensor([1.0, 0.0, 0.0, 0.0]))
    assert moae.balance_loss.item() == pytest.approx(4.0, rel=1e-3)  # E * 1 * ~1: maximally unbalanced
    uniform = MixtureOfAdapterExperts(8, num_experts=4, top_k=4, router_noise=False)
    uniform(torch.randn(1, 10, 8))
    assert uniform.balance_loss.item() == pytest.approx(1.0)  # perfectly balanced


def test_attach_to_top_blocks_keeps_output_until_trained() -> None:
    encoder = VisionTransformer(ViTConfig(img_size=32, patch_size=8, num_frames=2, embed_dim=32, depth=4, num_heads=2)).eval()
    x = torch.randn(2, 3, 32, 32)
    before = encoder.forward_features(x)
    attached = attach_moae(encoder, top_blocks=2, num_experts=3, top_k=2)
    assert [b.parallel_branch is not None for b in encoder.blocks] == [False, False, True, True]
    assert attached[0].down_weight.shape == (3, 32, 8)
    assert torch.allclose(encoder.forward_features(x), before)
    with pytest.raises(ValueError, match="top_blocks=5"):
        attach_moae(encoder, top_blocks=5)
