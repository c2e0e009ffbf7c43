"""``face_core.load_model``: one call for releases, Lightning checkpoints, public files and MLflow URIs."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from face_core.model.checkpoint_formats import export_mae_state_dict
from face_core.model.config import MAEConfig, ViTConfig
from face_core.model.mae import MaskedAutoencoder
from face_core.model.vit import VisionTransformer
from face_core.release.pretrained import read_release, write_release

ENCODER = ViTConfig(img_size=32, patch_size=8, num_frames=4, tubelet_size=2, embed_dim=48, depth=2, num_heads=3)
CONFIG = MAEConfig(encoder=ENCODER, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=1)


def trained_mae(seed: int = 0) -> MaskedAutoencoder:
    torch.manual_seed(seed)
    return MaskedAutoencoder(CONFIG)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    left, right = a.state_dict(), b.state_dict()
    assert left.keys() == right.keys()
    for key in left:
        assert torch.equal(left[key], right[key]), key


def test_import_pretrain_stays_light() -> None:
    code = "import sys, face_core; assert 'torch' not in sys.modules; assert callable(face_core.load_model)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_release_folder_round_trip_for_mae_and_encoder(tmp_path: Path) -> None:
    from face_core import load_model

    model = trained_mae()
    folder = write_release(model, CONFIG, tmp_path / "mae-release")
    meta = json.loads((folder / "config.json").read_text())
    assert meta["kind"] == "mae" and meta["config"] == dataclasses.asdict(CONFIG)
    assert len(meta["weights_sha256"]) == 64 and meta["package_version"]
    loaded = load_model(folder)
    assert isinstance(loaded, MaskedAutoencoder) and not loaded.training
    assert_same_weights(loaded, model)

    encoder_folder = write_release(model.encoder, ENCODER, tmp_path / "encoder-release")
    encoder = load_model(encoder_folder)
    assert isinstance(encoder, VisionTransformer)
    assert_same_weights(encoder, model.encoder)
    assert isinstance(load_model(folder, encoder_only=True), VisionTransformer)
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_release_refuses_damage_and_overwrites(tmp_path: Path) -> None:
    model = trained_mae()
    folder = write_release(model, CONFIG, tmp_path / "release")
    with pytest.raises(FileExistsError, match="not empty"):
        write_release(model, CONFIG, folder)
    with pytest.raises(TypeError, match="ViTConfig"):
        write_release(model.encoder, CONFIG, tmp_path / "mismatch")
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model\.safetensors: SHA-256 .* does not match"):
        read_release(folder)
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        read_release(folder)


def test_a_failed_write_leaves_no_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.torch

    def disk_full(*args: object, **kwargs: object) -> None:  # fault injection: the disk fills up mid-write
        raise OSError("No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_release(trained_mae(), CONFIG, tmp_path / "release")
    assert list(tmp_path.iterdir()) == []


def lightning_checkpoint(tmp_path: Path, model: MaskedAutoencoder) -> Path:
    """A real Lightning checkpoint after one step, of a module with the training module's
    contract: the MAE at attribute ``model``, ``hyper_parameters['model_config']`` = asdict(MAEConfig)."""
    import lightning.pytorch as pl

    class Wrapper(pl.LightningModule):
        def __init__(self, model_config: dict) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.model = MaskedAutoencoder(CONFIG)

        def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
            return self.model(batch)[0]

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    module = Wrapper(dataclasses.asdict(CONFIG))
    module.model.load_state_dict(model.state_dict())
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    loader = torch.utils.data.DataLoader(torch.randn(2, 3, 32, 32), batch_size=2)
    trainer.fit(module, loader)
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    model.load_state_dict(module.model.state_dict())  # the weights after the step
    return path


def test_lightning_checkpoint_gives_the_trained_mae(tmp_path: Path) -> None:
    from face_core import load_model

    model = trained_mae()
    path = lightning_checkpoint(tmp_path, model)
    loaded = load_model(path)
    assert isinstance(loaded, MaskedAutoencoder)
    assert_same_weights(loaded, model)
    bigger = load_model(path, img_size=48, num_frames=8)
    assert bigger.encoder.grid == (4, 6, 6)
    assert bigger(torch.randn(1, 3, 8, 48, 48))[1].shape == (1, 4 * 36, 2 * 8 * 8 * 3)


def test_public_mae_file_and_encoder_only_choice(tmp_path: Path) -> None:
    from face_core import load_model

    model = trained_mae().eval()
    full, encoder = tmp_path / "mae_full.pth", tmp_path / "mae_encoder.pth"
    torch.save({"model": export_mae_state_dict(model)}, full)  # the public MAE layout
    torch.save({"model": export_mae_state_dict(model.encoder)}, encoder)
    loaded = load_model(full, config=CONFIG)
    assert isinstance(loaded, MaskedAutoencoder)
    image = torch.randn(2, 3, 32, 32)
    noise = torch.rand(2, 16)
    torch.testing.assert_close(loaded.encoder.forward_features(image), model.encoder.forward_features(image), atol=1e-5, rtol=1e-5)
    (loss, pred, mask), (ref_loss, ref_pred, ref_mask) = loaded(image, noise=noise), model(image, noise=noise)
    assert torch.equal(mask, ref_mask)
    # the public layout predicts one frame: our two decoder_pred slots are averaged, which can
    # only lower the loss on a repeat-padded image target
    torch.testing.assert_close(pred, ref_pred.reshape(2, 16, 2, -1).mean(2).repeat(1, 1, 2), atol=1e-5, rtol=1e-5)
    assert loss <= ref_loss
    assert isinstance(load_model(encoder, config=ENCODER), VisionTransformer)
    assert isinstance(load_model(full, config=CONFIG, encoder_only=True), VisionTransformer)


def test_unreadable_inputs_are_named(tmp_path: Path) -> None:
    from face_core import load_model

    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_model(tmp_path / "nowhere.pth")
    odd = tmp_path / "odd.pth"
    torch.save({"model": {"conv.weight": torch.zeros(2)}}, odd)
    with pytest.raises(ValueError, match=r"odd\.pth.*Expected.*patch_embed\.proj\.weight.*found \['conv\.weight'\]"):
        load_model(odd)
    bare = tmp_path / "bare.pth"
    torch.save(trained_mae().state_dict(), bare)
    with pytest.raises(ValueError, match="carries no config"):
        load_model(bare)
    assert isinstance(load_model(bare, config=CONFIG), MaskedAutoencoder)
    deepspeed = tmp_path / "epoch=0.ckpt"
    (deepspeed / "checkpoint").mkdir(parents=True)
    (deepspeed / "checkpoint" / "mp_rank_00_model_states.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="convert_zero_checkpoint_to_fp32_state_dict"):
        load_model(deepspeed)


def s4d_finetuned_file(path: Path) -> Path:
    """An S4D fine-tuned file (VideoMAE layout, q/v biases, mean pooling) with MoAE adapters in its last block."""
    torch.manual_seed(3)
    encoder = VisionTransformer(dataclasses.replace(ENCODER, cls_token=False))
    state = {k: v for k, v in encoder.state_dict().items() if k not in ("pos_embed", "norm.weight", "norm.bias")}
    for i in range(ENCODER.depth):
        q, _, v = state.pop(f"blocks.{i}.attn.qkv.bias").chunk(3)
        state[f"blocks.{i}.attn.q_bias"], state[f"blocks.{i}.attn.v_bias"] = q, v
    state["blocks.1.moe_layer.router.topkroute_linear.weight"] = torch.randn(4, 48)
    state["blocks.1.moe_layer.experts.0.fc1.weight"] = torch.randn(12, 48)
    state.update({"fc_norm.weight": torch.ones(48), "fc_norm.bias": torch.zeros(48), "head.video.weight": torch.zeros(7, 48), "head.video.bias": torch.zeros(7)})
    torch.save({"model": state}, path)
    return path


def test_s4d_file_warns_about_its_adapters_and_a_size_other_than_160(tmp_path: Path) -> None:
    from face_core import load_model

    path = s4d_finetuned_file(tmp_path / "s4d_ft.pth")
    with pytest.warns(UserWarning) as caught:
        model = load_model(path)
    assert model.config.img_size == 160
    messages = sorted(str(w.message) for w in caught)  # the adapters and the heads: S4D's own size was assumed
    assert len(messages) == 2 and "S4D MoAE adapter tensors in blocks [1]" in messages[0]
    assert "holds no fc_norm, head.video (4 tensors" in messages[1] and "left out" in messages[1]
    with pytest.warns(UserWarning) as caught:
        load_model(path, img_size=32, num_frames=4)
    assert sum("S4D file (trained at 160 px) built for img_size=32" in str(w.message) for w in caught) == 1


def test_a_finetuned_files_head_is_named_when_left_out(tmp_path: Path) -> None:
    from public_checkpoints import random_mae_state

    from face_core import load_model

    path = tmp_path / "fmae_finetuned.pth"
    torch.save({"model": random_mae_state(decoder=False, finetuned=True), "epoch": 3}, path)  # FMAE-IAT's fine-tuned files
    with pytest.warns(UserWarning, match=r"fmae_finetuned\.pth: the model returned holds no fc_norm, head \(4 tensors.*left out"):
        assert isinstance(load_model(path), VisionTransformer)


def test_s4d_pretraining_files_are_told_by_their_trainer_keys_and_load_at_160(tmp_path: Path) -> None:
    import warnings

    from public_checkpoints import random_videomae_state

    from face_core import load_model

    state = random_videomae_state()
    s4d, videomae = tmp_path / "s4d_pretrain.pt", tmp_path / "videomae_pretrain.pth"
    torch.save({"model": state, "optimizer": {}, "epoch": 99, "loss": {}, "steps": {"train": 1000, "val": 0}}, s4d)  # S4D's trainer
    torch.save({"model": state, "epoch": 99}, videomae)  # VideoMAE's own
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # S4D's own size: nothing to warn about, nothing left out
        assert load_model(s4d).encoder.config.img_size == 160
        assert load_model(videomae).encoder.config.img_size == 224
    with pytest.warns(UserWarning, match=r"s4d_pretrain\.pt: an S4D pretraining file \(trained at 160 px\).*img_size=160"):
        assert load_model(s4d, img_size=32, num_frames=4).encoder.config.img_size == 32


@pytest.mark.slow
def test_mlflow_model_uri_loads_the_registered_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real MLflow registry (SQLite store): register a release, then load it by URI."""
    from face_core import load_model
    from face_core.release.registry import register_release

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    model = trained_mae()
    folder = write_release(model.encoder, ENCODER, tmp_path / "release")
    version = register_release(folder, "face-test", alias="champion", tracking_uri=uri)
    for address in ("models:/face-test@champion", f"models:/face-test/{version.version}"):
        loaded = load_model(address)
        assert isinstance(loaded, VisionTransformer)
        assert_same_weights(loaded, model.encoder)
