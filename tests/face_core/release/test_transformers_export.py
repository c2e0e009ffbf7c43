"""``python -m pretrain export RELEASE --to transformers``: folders that ViTMAEModel / VideoMAEModel load.

Each test loads the exported folder with the installed transformers, requires that no tensor is
missing, unexpected or mismatched, compares the outputs with our encoder, and checks the
attention biases by value (transformers 5 once loaded VideoMAE's q/v biases as zeros without a
word). The weights are perturbed away from their initialisation so a zeroed tensor shows.
"""

from pathlib import Path

import pytest
import torch
import transformers
from perturbed_weights import perturbed
from safetensors.torch import load_file, save_file

from face_core.model.config import MAEConfig, ViTConfig
from face_core.model.mae import MaskedAutoencoder
from face_core.model.pos_embed import videomae_sinusoid
from face_core.model.vit import VisionTransformer
from face_core.release.pretrained import write_release
from face_core.release.transformers_export import check_export, export_transformers, transformers_outputs
from plumbing.recipes import ConfigError
from pretrain.cli import export

SMALL = ViTConfig.preset("tiny", img_size=32, num_frames=4, depth=2)  # 192 wide, 3 heads, a 2x2 grid, 2 temporal slices


def loaded(cls: type, folder: Path) -> torch.nn.Module:
    model, info = cls.from_pretrained(str(folder), output_loading_info=True)
    assert not any(info.get(key) for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")), info
    return model.eval()


def clip_encoder(seed: int) -> VisionTransformer:
    """A clip encoder as imported from a VideoMAE/S4D file: no CLS token, VideoMAE's fixed table."""
    encoder = perturbed(VisionTransformer(ViTConfig(**{**SMALL.__dict__, "cls_token": False})), seed)
    encoder.pos_embed.copy_(videomae_sinusoid(encoder.pos_embed.shape[1], encoder.pos_embed.shape[2])[None])
    return encoder


def test_image_encoder_of_an_mae_release_becomes_vitmae(tmp_path: Path) -> None:
    torch.manual_seed(0)
    mae = perturbed(MaskedAutoencoder(MAEConfig(encoder=SMALL, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=1)), 1)
    release = write_release(mae, mae.config, tmp_path / "release")
    folder = Path(export(str(release), out=str(tmp_path / "vitmae")))
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    model = loaded(transformers.ViTMAEModel, folder)
    assert model.config.mask_ratio == 0.0 and model.config.layer_norm_eps == 1e-6
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ours = mae.encoder.forward_features(images)
        torch.testing.assert_close(transformers_outputs(model, images), ours, atol=1e-5, rtol=1e-5)
        unordered = model(pixel_values=images).last_hidden_state  # default noise: tokens shuffled, CLS first
        torch.testing.assert_close(unordered[:, 0], ours[:, 0], atol=1e-5, rtol=1e-5)
    state = model.state_dict()
    ours_bias = mae.encoder.blocks[1].attn.qkv.bias.detach()
    stored_biases = [state[k] for k in sorted(state) if ".1." in k and k.endswith(("q_proj.bias", "query.bias"))]
    assert len(stored_biases) == 1 and torch.equal(stored_biases[0], ours_bias[:192])
    assert not torch.equal(state["embeddings.cls_token"], torch.zeros_like(state["embeddings.cls_token"]))


def test_clip_encoder_becomes_videomae_with_its_q_and_v_biases(tmp_path: Path) -> None:
    encoder = clip_encoder(2)
    assert encoder.blocks[0].attn.qkv.bias[192:384].abs().sum() > 0  # a key bias VideoMAE has no slot for
    folder = export_transformers(write_release(encoder, encoder.config, tmp_path / "release"), tmp_path / "videomae")
    model = loaded(transformers.VideoMAEModel, folder)
    assert model.config.use_mean_pooling is False and model.config.num_frames == 4
    clips = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(transformers_outputs(model, clips), encoder.forward_features(clips), atol=1e-5, rtol=1e-5)
    state = model.state_dict()
    for block in range(2):
        bias = encoder.blocks[block].attn.qkv.bias.detach()
        query = [v for k, v in state.items() if f".{block}." in k and k.endswith(("query.bias", "q_bias"))]
        value = [v for k, v in state.items() if f".{block}." in k and k.endswith(("value.bias", "v_bias"))]
        assert len(query) == len(value) == 1
        assert torch.equal(query[0], bias[:192]) and torch.equal(value[0], bias[384:])


def test_the_check_refuses_zeroed_or_dropped_tensors(tmp_path: Path) -> None:
    encoder = clip_encoder(3)
    folder = export_transformers(write_release(encoder, encoder.config, tmp_path / "release"), tmp_path / "videomae")
    weights = load_file(str(folder / "model.safetensors"))
    key = "encoder.layer.1.attention.attention.q_bias"
    zeroed = {**weights, key: torch.zeros_like(weights[key])}  # the transformers 5 failure: loaded, but as zeros
    save_file(zeroed, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="does not reproduce our encoder"):
        check_export(folder, encoder)
    save_file({k: v for k, v in weights.items() if k != key}, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="does not take every tensor"):
        check_export(folder, encoder)


def test_encoders_transformers_cannot_hold_are_refused_and_nothing_is_left(tmp_path: Path) -> None:
    ours = perturbed(VisionTransformer(ViTConfig(**{**SMALL.__dict__, "cls_token": False})), 4)  # our own 3-D table
    release = write_release(ours, ours.config, tmp_path / "release")
    with pytest.raises(ConfigError, match="not VideoMAE's fixed sinusoid"):
        export(str(release), out=str(tmp_path / "out"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release"]
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(ConfigError, match="--out"):
        export(str(release), out=str(tmp_path / "taken"))
