"""Pretraining targets and mask counts as VideoMAE/S4D compute them (issue 11), beside the MAE ones."""

import pytest
import torch

from face_core.model.config import MAEConfig, ViTConfig
from face_core.model.mae import MaskedAutoencoder
from face_core.model.masking import kept_count, random_masking, tube_masking
from face_core.model.patches import IMAGENET_MEAN, IMAGENET_STD
from plumbing.recipes import ConfigError, validate

ENCODER = ViTConfig(img_size=32, patch_size=8, num_frames=4, tubelet_size=2, embed_dim=32, depth=1, num_heads=2)


def s4d_targets(clip: torch.Tensor, patch: int, tubelet: int) -> torch.Tensor:
    """S4D's ``MAELoss`` with ``norm_pix_per_channel`` (written out from its description): un-normalise,
    patchify to (B, L, tubelet*p*p, 3), normalise each channel over its values, flatten."""
    shape = (1, 3, 1, 1, 1)
    pixels = clip * torch.tensor(IMAGENET_STD).view(shape) + torch.tensor(IMAGENET_MEAN).view(shape)
    b, c, t, h, w = pixels.shape
    x = pixels.reshape(b, c, t // tubelet, tubelet, h // patch, patch, w // patch, patch)
    x = torch.einsum("nctphqwr->nthwpqrc", x).reshape(b, -1, tubelet * patch * patch, c)
    x = (x - x.mean(dim=-2, keepdim=True)) / (x.var(dim=-2, keepdim=True) + 1e-6) ** 0.5
    return x.flatten(-2)


def test_mask_counts_round_as_each_reference() -> None:
    # 0.9 of 100 tokens (an image at 160 px): MAE keeps int(100 * 0.1) = 9, S4D removes int(0.9 * 100) = 90
    assert kept_count(100, 0.9, "mae") == 9 and kept_count(100, 0.9, "videomae") == 10
    assert kept_count(800, 0.95, "videomae") == 40  # a 16-frame clip at 160 px (8 x 10 x 10 tokens)
    assert kept_count(196, 0.75, "mae") == kept_count(196, 0.75, "videomae") == 49
    noise = torch.rand(3, 100)
    assert random_masking(noise, 0.9, "videomae").mask.sum(dim=1).tolist() == [90.0] * 3
    tube = tube_masking(torch.rand(2, 100), 0.9, frames=8, rounding="videomae")
    assert tube.mask.sum(dim=1).tolist() == [8 * 90.0] * 2 and tube.ids_keep.shape == (2, 80)


def test_model_masks_with_its_configured_rounding() -> None:
    model = MaskedAutoencoder(MAEConfig(encoder=ENCODER, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2,
                                        image_mask_ratio=0.9, clip_mask_ratio=0.9, clip_masking="random", mask_count="videomae"))
    images = torch.randn(2, 3, 32, 32)  # 16 tokens: int(0.9 * 16) = 14 removed (MAE would remove 15)
    assert model.mask_plan(images).mask.sum(dim=1).tolist() == [14.0, 14.0]


def test_per_channel_targets_match_s4d() -> None:
    config = MAEConfig(encoder=ENCODER, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, norm_pix_per_channel=True)
    model = MaskedAutoencoder(config)
    clips = torch.randn(2, 3, 4, 32, 32)
    assert torch.allclose(model.targets(clips), s4d_targets(clips, 8, 2), atol=1e-4)
    images = torch.randn(2, 3, 32, 32)  # S4D pads an image to a 2-frame clip before the loss
    padded = images.unsqueeze(2).repeat(1, 1, 2, 1, 1)
    assert torch.allclose(model.targets(images), s4d_targets(padded, 8, 2), atol=1e-4)
    mae = MaskedAutoencoder(MAEConfig(encoder=ENCODER, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2))
    assert not torch.allclose(mae.targets(clips), model.targets(clips), atol=1e-2)  # really another target


def test_per_channel_needs_norm_pix_loss() -> None:
    with pytest.raises(ConfigError, match="norm_pix_per_channel"):
        validate(MAEConfig(encoder=ENCODER, norm_pix_loss=False, norm_pix_per_channel=True))
