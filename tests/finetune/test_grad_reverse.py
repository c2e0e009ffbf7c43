"""Gradient reversal: identity forward, gradient times -lambda backward; the lambda schedules."""

import math

import pytest
import torch

from finetune.grad_reverse import GradientReversal, reversal_strength, reverse_gradient


@pytest.mark.parametrize("strength", [0.0, 0.5, 2.0])
def test_forward_identity_backward_scaled_and_negated(strength: float) -> None:
    x = torch.randn(4, 3, requires_grad=True)
    upstream = torch.randn(4, 3)
    out = reverse_gradient(x, strength)
    assert torch.equal(out, x)
    out.backward(upstream)
    assert torch.allclose(x.grad, -strength * upstream)


def test_reversal_flips_the_sign_of_a_descent_step() -> None:
    """A head behind the layer learns normally; the layer below receives the opposite gradient."""
    torch.manual_seed(0)
    feature = torch.randn(8, 5, requires_grad=True)
    head = torch.nn.Linear(5, 3)
    labels = torch.randint(0, 3, (8,))
    plain = torch.nn.functional.cross_entropy(head(feature), labels)
    (plain_grad,) = torch.autograd.grad(plain, feature)
    layer = GradientReversal(1.5)
    reversed_loss = torch.nn.functional.cross_entropy(head(layer(feature)), labels)
    reversed_grad, head_grad = torch.autograd.grad(reversed_loss, [feature, head.weight])
    (plain_head_grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(head(feature), labels), head.weight)
    assert torch.allclose(reversed_grad, -1.5 * plain_grad)
    assert torch.allclose(head_grad, plain_head_grad)  # the identity head itself is not reversed


def test_strength_can_change_between_steps() -> None:
    layer = GradientReversal(1.0)
    layer.strength = 3.0
    x = torch.ones(2, requires_grad=True)
    layer(x).sum().backward()
    assert torch.equal(x.grad, torch.full((2,), -3.0))


def test_schedules() -> None:
    assert reversal_strength(2.0, "constant", 0.0) == 2.0
    assert reversal_strength(2.0, "constant", 0.7) == 2.0
    assert reversal_strength(2.0, "dann", 0.0) == 0.0
    assert math.isclose(reversal_strength(2.0, "dann", 0.5), 2.0 * (2 / (1 + math.exp(-5)) - 1))
    assert reversal_strength(2.0, "dann", 1.0) == pytest.approx(2.0, abs=1e-3)
    with pytest.raises(ValueError, match="linear"):
        reversal_strength(1.0, "linear", 0.5)
