"""The masked autoencoder: encoder on visible tokens, loss on removed patches, pictures back."""

import numpy as np
import pytest
import torch

from face_core.model.config import MAEConfig, ViTConfig
from face_core.model.mae import MaskedAutoencoder
from face_core.model.patches import patchify, unpatchify


def tiny_mae(**overrides: object) -> MaskedAutoencoder:
    encoder = ViTConfig(img_size=32, patch_size=8, num_frames=4, tubelet_size=2, embed_dim=48, depth=2, num_heads=3)
    settings = dict(encoder=encoder, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
    return MaskedAutoencoder(MAEConfig(**{**settings, **overrides}))  # type: ignore[arg-type]


def test_shapes_and_mask_ratio_per_modality() -> None:
    torch.manual_seed(0)
    model = tiny_mae()
    loss, pred, mask = model(torch.randn(2, 3, 32, 32))
    assert loss.ndim == 0 and pred.shape == (2, 16, 2 * 8 * 8 * 3) and mask.shape == (2, 16)
    assert torch.all(mask.sum(1) == 16 - int(16 * 0.25))
    loss, pred, mask = model(torch.randn(2, 3, 4, 32, 32))
    assert pred.shape == (2, 32, 384)
    assert torch.all(mask.sum(1) == 2 * (16 - int(16 * 0.1)))  # tube: 1 of 16 places kept in both slices


def test_noise_makes_masking_reproducible_and_has_a_checked_shape() -> None:
    torch.manual_seed(0)
    model = tiny_mae().eval()
    clip = torch.randn(2, 3, 4, 32, 32)
    noise = torch.rand(model.noise_shape(clip))
    assert noise.shape == (2, 16)
    first, second = model(clip, noise=noise), model(clip, noise=noise)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match=r"noise must have shape \(2, 16\)"):
        model(clip, noise=torch.rand(2, 32))
    random_clips = tiny_mae(clip_masking="random")
    assert random_clips.noise_shape(clip) == (2, 32)


def test_encoder_sees_only_visible_patches() -> None:
    torch.manual_seed(0)
    model = tiny_mae(norm_pix_loss=False).eval()
    image = torch.randn(1, 3, 32, 32)
    noise = torch.rand(1, 16)
    _, pred, mask = model(image, noise=noise)
    removed = int(torch.nonzero(mask[0])[0])
    visible = int(torch.nonzero(mask[0] == 0)[0])
    for token, should_change in ((removed, False), (visible, True)):
        edited = image.clone()
        row, col = divmod(token, 4)
        edited[..., row * 8 : row * 8 + 8, col * 8 : col * 8 + 8] += 5.0
        _, pred_edited, _ = model(edited, noise=noise)
        assert (not torch.allclose(pred, pred_edited)) == should_change


def test_loss_is_mse_over_removed_patches_with_normalised_targets() -> None:
    torch.manual_seed(0)
    model = tiny_mae().eval()
    image = torch.randn(2, 3, 32, 32)
    loss, pred, mask = model(image)
    patches = image.reshape(2, 3, 4, 8, 4, 8).permute(0, 2, 4, 3, 5, 1).reshape(2, 16, 192)  # MAE's patchify
    mean, var = patches.mean(-1, keepdim=True), patches.var(-1, keepdim=True, unbiased=True)
    target = ((patches - mean) / (var + 1e-6) ** 0.5).repeat(1, 1, 2)
    expected = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
    torch.testing.assert_close(loss, expected)
    perfect = torch.where(mask.bool().unsqueeze(-1), target, pred + 100.0)
    assert model.loss(image, perfect, mask).item() < 1e-10  # visible patches do not count


def test_image_targets_are_the_repeat_padded_clip_targets() -> None:
    model = tiny_mae(norm_pix_loss=False)
    image = torch.randn(2, 3, 32, 32)
    static_clip = image.unsqueeze(2).repeat(1, 1, 2, 1, 1)
    torch.testing.assert_close(model.targets(image), model.targets(static_clip))


def test_patchify_round_trip_and_unpatchify_of_predictions() -> None:
    clip = torch.randn(2, 3, 4, 32, 32)
    patches = patchify(clip, 8, 2)
    assert patches.shape == (2, 32, 384)
    torch.testing.assert_close(unpatchify(patches, (2, 4, 4), 8, 2), clip)
    model = tiny_mae(norm_pix_loss=False)
    torch.testing.assert_close(model.unpatchify(model.targets(clip), image=False), clip)
    image = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model.unpatchify(model.targets(image), image=True), image)


@pytest.mark.parametrize(("norm_pix_loss", "per_channel"), [(True, False), (True, True), (False, False)], ids=["patch", "channel", "pixels"])
def test_reconstruction_grid_of_a_perfect_prediction_shows_the_original(norm_pix_loss: bool, per_channel: bool) -> None:
    """Each target kind (MAE's per-patch, VideoMAE's per-channel normalised patches, raw pixels) maps back to the input."""
    torch.manual_seed(0)
    model = tiny_mae(norm_pix_loss=norm_pix_loss, norm_pix_per_channel=per_channel)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    for x in (torch.randn(3, 3, 32, 32).clamp(-1.5, 1.5), torch.randn(2, 3, 4, 32, 32).clamp(-1.5, 1.5)):
        _, _, mask = model(x)
        picture = model.reconstruction_grid(x, model.targets(x), mask, mean=mean, std=std, as_uint8=False)
        frames = 1 if x.ndim == 4 else 4
        if x.ndim == 4:
            assert picture.shape == (3 * 32, 3 * 32, 3)
            masked, recon, original = np.split(picture, 3, axis=1)
        else:
            assert picture.shape == (2 * 3 * 32, frames * 32, 3)
            masked, recon, original = (picture[k * 32 : (k + 1) * 32] for k in range(3))
        np.testing.assert_allclose(recon, original, atol=1e-5)
        assert (masked == 0.5).mean() > 0.5  # removed patches are blank (zero input = the mean colour)
        assert model.reconstruction_grid(x, model.targets(x), mask).dtype == np.uint8


def test_a_few_steps_fit_a_batch() -> None:
    torch.manual_seed(0)
    model = tiny_mae()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = torch.randn(4, 3, 32, 32)
    noise = torch.rand(model.noise_shape(batch))
    losses = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only spin-wait on a busy CPU
    try:
        for _ in range(40):
            loss, _, _ = model(batch, noise=noise)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    finally:
        torch.set_num_threads(threads)
    assert losses[-1] < 0.8 * losses[0]
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("mask_count", ["mae", "videomae"])
@pytest.mark.parametrize("clip_masking", ["tube", "random"])
def test_flop_formula_matches_the_counted_forward(clip_masking: str, mask_count: str) -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from face_core.engine.training_metrics import peak_flops
    from face_core.model.flops import encoder_forward_flops, mae_forward_flops, mae_train_flops_per_sample
    from face_core.model.masking import keep_all, kept_count

    # at ratio 0.9 the two rules keep different counts: int(16 * 0.1) = 1 (MAE), 16 - int(0.9 * 16) = 2 (VideoMAE)
    assert kept_count(16, 0.9, "mae") != kept_count(16, 0.9, "videomae") and kept_count(32, 0.9, "mae") != kept_count(32, 0.9, "videomae")
    model = tiny_mae(clip_masking=clip_masking, mask_count=mask_count, image_mask_ratio=0.9, clip_mask_ratio=0.9)
    for x, modality in ((torch.randn(2, 3, 32, 32), "image"), (torch.randn(2, 3, 4, 32, 32), "clip")):
        for encode_all in (False, True):
            plan = model.mask_plan(x)
            if encode_all:
                plan = keep_all(plan.mask)
            # the math backend runs attention as counted matmuls; the CPU fused kernel is not counted
            with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
                model.forward_with_plan(x, plan)
            assert counter.get_total_flops() / 2 == mae_forward_flops(model.config, modality, encode_all)
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model.encoder.forward_features(x)
        assert counter.get_total_flops() / 2 == encoder_forward_flops(model.config.encoder, modality)
        assert mae_train_flops_per_sample(model.config, modality) == 3 * mae_forward_flops(model.config, modality)
    with pytest.raises(ValueError, match="modality"):
        mae_forward_flops(model.config, "video")
    assert peak_flops("cpu") is None


def test_benchmark_script_runs_and_prints_its_table() -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[3] / "benchmarks" / "mae_step.py"
    args = ["--sizes", "tiny", "--img-size", "32", "--batch", "2", "--steps", "1", "--warmup", "0", "--decoder-dim", "32", "--decoder-heads", "2"]
    out = subprocess.run([sys.executable, str(script), *args], check=True, capture_output=True, text=True).stdout
    assert "speed-up" in out and out.strip().splitlines()[-1].startswith("tiny")
