"""Losses skip missing labels instead of treating them as negatives; mixing keeps label mass."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from finetune.losses import masked_bce, one_hot_targets, soft_cross_entropy
from finetune.mixup import draw_mix, mix_targets


def test_masked_bce_ignores_missing_entries() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]], requires_grad=True)
    targets = torch.tensor([[1.0, math.nan], [0.0, math.nan]])
    loss = masked_bce(logits, targets)
    expected = (F.softplus(torch.tensor(-2.0)) + F.softplus(torch.tensor(0.5))) / 2
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert logits.grad[:, 1].abs().sum() == 0  # missing AUs get no gradient at all


def test_masked_bce_pos_weight_and_all_missing() -> None:
    logits = torch.tensor([[0.0, 0.0]])
    targets = torch.tensor([[1.0, 1.0]])
    weighted = masked_bce(logits, targets, pos_weight=torch.tensor([1.0, 3.0]))
    assert weighted.item() == pytest.approx(math.log(2) * (1 + 3) / 2)
    empty = torch.zeros(2, 2, requires_grad=True)
    loss = masked_bce(empty, torch.full((2, 2), math.nan))
    assert loss.item() == 0.0
    loss.backward()  # still part of the graph (same backward on every DDP rank)


def test_smoothed_targets_and_soft_cross_entropy() -> None:
    targets, present = one_hot_targets(torch.tensor([1, -1]), 4, smoothing=0.2)
    assert targets[0].tolist() == pytest.approx([0.05, 0.85, 0.05, 0.05])
    assert targets[1].sum() == 0 and present.tolist() == [1.0, 0.0]
    logits = torch.randn(2, 4)
    hard, _ = one_hot_targets(torch.tensor([1, 3]), 4)
    assert soft_cross_entropy(logits, hard, torch.ones(2)).item() == pytest.approx(F.cross_entropy(logits, torch.tensor([1, 3])).item(), rel=1e-5)
    smooth_ref = F.cross_entropy(logits[:1], torch.tensor([1]), label_smoothing=0.2)
    assert soft_cross_entropy(logits, targets, present).item() == pytest.approx(smooth_ref.item(), rel=1e-5)


@pytest.mark.parametrize("shape", [(6, 3, 16, 16), (6, 3, 4, 16, 16)])
def test_mixup_and_cutmix(shape: tuple[int, ...]) -> None:
    generator = np.random.default_rng(0)
    pixels = torch.arange(6, dtype=torch.float32).view(6, *[1] * (len(shape) - 1)).expand(shape).clone()
    mix = draw_mix(pixels, mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, switch_prob=1.0, rng=generator)
    assert mix is not None and 0.0 <= mix.lam <= 1.0
    kept = (pixels == torch.arange(6).view(6, *[1] * (len(shape) - 1))).float().mean(dim=tuple(range(1, len(shape))))
    moved = mix.perm != torch.arange(6)
    assert torch.allclose(kept[moved], torch.full_like(kept[moved], mix.lam))  # lam = area kept
    targets, present = one_hot_targets(torch.tensor([0, 1, 2, 0, 1, -1]), 3)
    mixed, mixed_present = mix_targets(targets, present, mix)
    assert torch.allclose(mixed[mixed_present > 0].sum(dim=1), torch.ones(int(mixed_present.sum())))
    assert draw_mix(pixels, 0.0, 0.0, 1.0, 0.5, generator) is None


@pytest.mark.parametrize("shape", [(4, 3, 8, 8), (4, 3, 2, 8, 8)])
def test_mixup_blends_each_sample_with_the_unscaled_partner(shape: tuple[int, ...]) -> None:
    """Regression (issue 11, error 1): the partner was read after the in-place scaling, giving
    ``lam * x + lam * (1 - lam) * partner`` while the labels said ``lam`` / ``1 - lam``."""
    values = torch.tensor([0.0, 10.0, 20.0, 30.0]).view(4, *[1] * (len(shape) - 1))
    pixels = values.expand(shape).clone()
    mix = draw_mix(pixels, mixup_alpha=1.0, cutmix_alpha=0.0, prob=1.0, switch_prob=0.0, rng=np.random.default_rng(3))
    assert mix is not None and 0.0 < mix.lam < 1.0
    expected = mix.lam * values + (1.0 - mix.lam) * values[mix.perm]
    assert torch.allclose(pixels, expected.expand(shape), atol=1e-5)
    targets = torch.eye(4)
    mixed, _ = mix_targets(targets, torch.ones(4), mix)
    for row in range(4):  # the label weights are the pixel weights
        assert mixed[row, row].item() == pytest.approx(mix.lam) and mixed[row, mix.perm[row]].item() == pytest.approx(1.0 - mix.lam)


def test_mix_draws_only_from_the_given_generator() -> None:
    """Regression (issue 11, error 1): lambda came from the global torch RNG, not the seeded generator."""
    draws = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        np.random.seed(global_seed)
        pixels = torch.rand(6, 3, 8, 8)
        mix = draw_mix(pixels, 0.8, 1.0, 1.0, 0.5, np.random.default_rng(7))
        assert mix is not None
        draws.append((mix.lam, mix.perm.tolist()))
    assert draws[0] == draws[1]
