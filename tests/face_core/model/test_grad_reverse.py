"""Gradient reversal: identity forward, gradient times -lambda backward; the lambda schedules."""

import math

import pytest
import torch

from face_core.model.config import ViTConfig
from face_core.model.task_model import FaceTaskModel, reversal_strength, reverse_gradient
from face_core.model.vit import VisionTransformer


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
    reversed_loss = torch.nn.functional.cross_entropy(head(reverse_gradient(feature, 1.5)), labels)
    reversed_grad, head_grad = torch.autograd.grad(reversed_loss, [feature, head.weight])
    (plain_head_grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(head(feature), labels), head.weight)
    assert torch.allclose(reversed_grad, -1.5 * plain_grad)
    assert torch.allclose(head_grad, plain_head_grad)  # the identity head itself is not reversed


def test_the_identity_head_exists_with_iat_and_takes_lambda_in_forward() -> None:
    """IAT on/off is the identity head's existence; lambda is a forward argument, scaling the encoder's reversed gradient."""
    torch.manual_seed(0)
    encoder = VisionTransformer(ViTConfig(img_size=16, patch_size=8, num_frames=2, embed_dim=16, depth=1, num_heads=2))
    assert "identity" not in FaceTaskModel(encoder, {"au_image": 3})(torch.randn(2, 3, 16, 16), ["au_image"])
    model = FaceTaskModel(VisionTransformer(encoder.config), {"au_image": 3}, num_subjects=4)
    torch.nn.init.normal_(model.identity_head.weight)
    pixels = torch.randn(2, 3, 16, 16)
    kernel = model.encoder.patch_embed.proj.weight

    def encoder_gradient(strength: float) -> torch.Tensor:
        (gradient,) = torch.autograd.grad(model(pixels, [], strength)["identity"].square().sum(), kernel)
        return gradient

    assert torch.count_nonzero(encoder_gradient(0.0)) == 0
    torch.testing.assert_close(encoder_gradient(3.0), 3.0 * encoder_gradient(1.0), rtol=1e-4, atol=1e-4)


def test_schedules() -> None:
    assert reversal_strength(2.0, "constant", 0.0) == 2.0
    assert reversal_strength(2.0, "constant", 0.7) == 2.0
    assert reversal_strength(2.0, "dann", 0.0) == 0.0
    assert math.isclose(reversal_strength(2.0, "dann", 0.5), 2.0 * (2 / (1 + math.exp(-5)) - 1))
    assert reversal_strength(2.0, "dann", 1.0) == pytest.approx(2.0, abs=1e-3)
    with pytest.raises(ValueError, match="linear"):
        reversal_strength(1.0, "linear", 0.5)
