"""Our releases inside timm: ``timm.create_model("face_vit_*", pretrained=True, pretrained_cfg_overlay=dict(file=...))``.

The timm model must compute what our encoder computes on images (tokens and pooled feature),
at the release's size and at another one, with or without a CLS token, and refuse releases it
cannot represent with a message that says what to do.
"""

from pathlib import Path

import pytest
import timm
import torch
from perturbed_weights import perturbed
from timm.data import resolve_data_config

import face_core.release.timm_models  # noqa: F401  (registers the face_vit_* names)
from face_core import load_model
from face_core.model.config import MAEConfig, ViTConfig
from face_core.model.mae import MaskedAutoencoder
from face_core.model.pos_embed import sincos_2d
from face_core.model.vit import VisionTransformer
from face_core.release.pretrained import write_release

TINY = ViTConfig.preset("tiny", img_size=64)  # 192 wide, 12 blocks, 3 heads; a 4x4 grid keeps it quick


def from_release(folder: Path, name: str = "face_vit_tiny_patch16", **kwargs: object) -> torch.nn.Module:
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(folder / "model.safetensors")), **kwargs).eval()


@pytest.fixture(scope="module")
def mae_release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MaskedAutoencoder]:
    torch.manual_seed(0)
    model = perturbed(MaskedAutoencoder(MAEConfig(encoder=TINY, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=1)), 1)
    return write_release(model, model.config, tmp_path_factory.mktemp("timm") / "mae"), model


def test_timm_model_from_an_mae_release_computes_our_encoder(mae_release: tuple[Path, MaskedAutoencoder]) -> None:
    folder, mae = mae_release
    model = from_release(folder)
    assert isinstance(model, timm.models.vision_transformer.VisionTransformer) and model.num_classes == 0
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(images), mae.encoder.forward_features(images), atol=2e-5, rtol=2e-5)
        torch.testing.assert_close(model(images), mae.encoder(images), atol=2e-5, rtol=2e-5)
    assert resolve_data_config(model=model)["input_size"] == (3, 64, 64)


def test_another_image_size_and_a_new_head_match_our_loader(mae_release: tuple[Path, MaskedAutoencoder]) -> None:
    folder, _ = mae_release
    model = from_release(folder, img_size=96, num_classes=7)
    ours = load_model(folder, encoder_only=True, img_size=96)
    torch.testing.assert_close(model.pos_embed[0], sincos_2d(192, 6, 6).float())  # our fixed table, rebuilt for 6x6
    images = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(images), pre_logits=True)
        torch.testing.assert_close(pooled, ours(images), atol=2e-5, rtol=2e-5)
        assert model(images).shape == (2, 7)


def test_encoder_release_without_cls_token_and_a_learned_table(tmp_path: Path) -> None:
    torch.manual_seed(2)
    encoder = perturbed(VisionTransformer(ViTConfig.preset("tiny", img_size=64, cls_token=False)), 3)
    with torch.no_grad():
        encoder.pos_embed.add_(torch.randn_like(encoder.pos_embed))  # not our sin-cos table: resampled by timm
    folder = write_release(encoder, encoder.config, tmp_path / "encoder")
    model = from_release(folder)
    assert model.cls_token is None
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(images), encoder.forward_features(images), atol=2e-5, rtol=2e-5)
    resized = from_release(folder, img_size=80)
    expected = timm.layers.resample_abs_pos_embed(encoder.pos_embed[:, :16], [5, 5], [4, 4], num_prefix_tokens=0, antialias=False)
    torch.testing.assert_close(resized.pos_embed.detach(), expected)


def test_fresh_model_starts_from_our_table_and_wrong_inputs_are_named(tmp_path: Path, mae_release: tuple[Path, MaskedAutoencoder]) -> None:
    fresh = timm.create_model("face_vit_small_patch16", img_size=32)
    torch.testing.assert_close(fresh.pos_embed[0].detach(), sincos_2d(384, 2, 2).float())
    folder, _ = mae_release
    with pytest.raises(ValueError, match="create 'face_vit_tiny_patch16' instead"):
        from_release(folder, name="face_vit_base_patch16")
    shallow = perturbed(VisionTransformer(ViTConfig.preset("tiny", img_size=32, depth=2)), 5)  # not a standard size
    shallow_folder = write_release(shallow, shallow.config, tmp_path / "shallow")
    with pytest.raises(ValueError, match="not a standard one; pass {'embed_dim': 192, 'depth': 2, 'num_heads': 3}"):
        from_release(shallow_folder)
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(from_release(shallow_folder, depth=2)(images), shallow(images), atol=2e-5, rtol=2e-5)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(FileNotFoundError, match="config.json"):
        from_release(bare)
