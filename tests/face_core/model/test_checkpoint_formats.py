"""Public MAE and VideoMAE/S4D files load into our model and give the same numbers.

No real checkpoint can be downloaded here, so each test writes a file in the public layout
with random weights and checks our model against an independent reference forward written
below with plain tensor ops on the public key names (Conv2d/Conv3d patch embedding, explicit
softmax attention, the reference masking recipe).
"""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from public_checkpoints import (
    DEC_DEPTH,
    DEC_HEADS,
    DEC_WIDTH,
    DEPTH,
    HEADS,
    PATCH,
    SIDE,
    WIDTH,
    random_mae_state,
    random_videomae_state,
)

from face_core.model.checkpoint_formats import (
    export_mae_state_dict,
    import_state_dict,
    load_checkpoint_file,
    unwrap_state_dict,
)
from face_core.model.config import MAEConfig, ViTConfig
from face_core.model.mae import MaskedAutoencoder
from face_core.model.vit import VisionTransformer


# ---------------------------------------------------------------- reference implementation
def videomae_table(count: int, dim: int) -> torch.Tensor:
    angles = np.array([[p / np.power(10000, 2 * (j // 2) / dim) for j in range(dim)] for p in range(count)])
    angles[:, 0::2], angles[:, 1::2] = np.sin(angles[:, 0::2]), np.cos(angles[:, 1::2])
    return torch.tensor(angles, dtype=torch.float32)[None]


def linear(state: dict, name: str, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    b = state.get(name + ".bias", bias)
    return x @ state[name + ".weight"].T + (0 if b is None else b)


def norm(state: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], state[name + ".weight"], state[name + ".bias"], eps=1e-6)


def reference_block(state: dict, pre: str, x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, tokens, dim = x.shape
    qkv_bias = None
    if pre + "attn.q_bias" in state:  # VideoMAE: q and v biases, no k bias
        q_bias = state[pre + "attn.q_bias"]
        qkv_bias = torch.cat([q_bias, torch.zeros_like(q_bias), state[pre + "attn.v_bias"]])
    qkv = linear(state, pre + "attn.qkv", norm(state, pre + "norm1", x), qkv_bias)
    q, k, v = qkv.reshape(batch, tokens, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
    attention = ((q * (dim // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
    x = x + linear(state, pre + "attn.proj", (attention @ v).transpose(1, 2).reshape(batch, tokens, dim))
    h = norm(state, pre + "norm2", x)
    return x + linear(state, pre + "mlp.fc2", F.gelu(linear(state, pre + "mlp.fc1", h)))


def reference_mae(state: dict, images: torch.Tensor, noise: torch.Tensor, ratio: float = 0.75):
    """The public MAE forward: encoder on kept tokens, decoder, norm-pix loss on removed patches."""
    x = F.conv2d(images, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=PATCH)
    x = x.flatten(2).transpose(1, 2) + state["pos_embed"][:, 1:]
    batch, length, dim = x.shape
    keep = int(length * (1 - ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    x = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, dim))
    mask = torch.ones(batch, length)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    x = torch.cat([(state["cls_token"] + state["pos_embed"][:, :1]).expand(batch, -1, -1), x], dim=1)
    for i in range(DEPTH):
        x = reference_block(state, f"blocks.{i}.", x, HEADS)
    latent = norm(state, "norm", x)
    y = linear(state, "decoder_embed", latent)
    tokens = torch.cat([y[:, 1:], state["mask_token"].expand(batch, length - keep, -1)], dim=1)
    tokens = torch.gather(tokens, 1, ids_restore[..., None].expand(-1, -1, y.shape[-1]))
    y = torch.cat([y[:, :1], tokens], dim=1) + state["decoder_pos_embed"]
    for i in range(DEC_DEPTH):
        y = reference_block(state, f"decoder_blocks.{i}.", y, DEC_HEADS)
    pred = linear(state, "decoder_pred", norm(state, "decoder_norm", y))[:, 1:]
    target = images.reshape(batch, 3, SIDE, PATCH, SIDE, PATCH).permute(0, 2, 4, 3, 5, 1).reshape(batch, length, -1)
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    loss = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
    return loss, pred, mask, latent


def write(tmp_path: Path, state: dict, name: str = "mae.pth") -> Path:
    path = tmp_path / name
    torch.save({"model": state, "epoch": 3}, path)
    return path


def load(path: Path, config=None):
    return import_state_dict(unwrap_state_dict(load_checkpoint_file(path)), config, source=str(path))


# ---------------------------------------------------------------- public MAE layout
def test_public_mae_file_reproduces_the_reference_forward(tmp_path: Path) -> None:
    state = random_mae_state()
    imported = load(write(tmp_path, state))
    model = imported.model
    assert isinstance(model, MaskedAutoencoder) and imported.layout == "mae"
    assert model.config.encoder.img_size == 32 and model.config.decoder_num_heads == DEC_HEADS
    images = torch.randn(3, 3, 32, 32)
    noise = torch.rand(3, 16)
    ref_loss, ref_pred, ref_mask, ref_latent = reference_mae(state, images, noise)
    model.eval()
    loss, pred, mask = model(images, noise=noise)
    torch.testing.assert_close(mask, ref_mask)
    torch.testing.assert_close(pred[..., : ref_pred.shape[-1]], ref_pred, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(pred[..., ref_pred.shape[-1] :], ref_pred, atol=1e-4, rtol=1e-4)  # repeat-padded slot
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)
    plan = model.mask_plan(images, noise)
    torch.testing.assert_close(model.encoder.forward_features(images, plan.ids_keep), ref_latent, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("tubelet", [1, 2, 4])
def test_export_then_import_is_exact(tmp_path: Path, tubelet: int) -> None:
    state = random_mae_state()
    config = MAEConfig(
        encoder=ViTConfig(img_size=32, patch_size=PATCH, num_frames=4, tubelet_size=tubelet, embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS),
        decoder_embed_dim=DEC_WIDTH, decoder_depth=DEC_DEPTH, decoder_num_heads=DEC_HEADS,
    )
    model = load(write(tmp_path, state), config).model
    exported = export_mae_state_dict(model)
    assert set(exported) == set(state)
    for key, value in state.items():
        assert torch.equal(exported[key], value), key
    again = load(write(tmp_path, exported, "exported.pth"), config).model
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name


def test_clip_model_from_an_image_file_keeps_image_outputs(tmp_path: Path) -> None:
    state = random_mae_state(decoder=False)
    clip_config = ViTConfig(img_size=32, patch_size=PATCH, num_frames=8, tubelet_size=2, embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS)
    model = load(write(tmp_path, state), clip_config).model.eval()
    assert isinstance(model, VisionTransformer)
    images = torch.randn(2, 3, 32, 32)
    clip = images.unsqueeze(2).repeat(1, 1, 8, 1, 1)
    reference = reference_encoder(state, images)
    torch.testing.assert_close(model.forward_features(images), reference, atol=1e-4, rtol=1e-4)
    per_slice = model.forward_features(clip[:, :, :2])
    torch.testing.assert_close(per_slice, reference, atol=1e-4, rtol=1e-4)
    assert model.forward_features(clip).shape == (2, 1 + 4 * 16, WIDTH)
    exported = export_mae_state_dict(model)
    for key in ("patch_embed.proj.weight", "pos_embed"):
        assert torch.equal(exported[key], state[key]), key


def reference_encoder(state: dict, images: torch.Tensor, side: int = SIDE) -> torch.Tensor:
    x = F.conv2d(images, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=PATCH)
    x = x.flatten(2).transpose(1, 2) + state["pos_embed"][:, 1:]
    x = torch.cat([(state["cls_token"] + state["pos_embed"][:, :1]).expand(x.shape[0], -1, -1), x], dim=1)
    for i in range(DEPTH):
        x = reference_block(state, f"blocks.{i}.", x, HEADS)
    return norm(state, "norm", x)


def test_another_image_size_interpolates_positions_as_mae_fine_tuning_does(tmp_path: Path) -> None:
    state = random_mae_state(decoder=False)
    state["pos_embed"] = state["pos_embed"] + torch.randn_like(state["pos_embed"]) * 0.1  # learned, with a CLS row
    bigger = ViTConfig(img_size=48, patch_size=PATCH, num_frames=2, embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS)
    imported = load(write(tmp_path, state), bigger)
    assert any("interpolated" in note for note in imported.notes)
    grid = state["pos_embed"][:, 1:].reshape(1, SIDE, SIDE, WIDTH).permute(0, 3, 1, 2)
    resized = F.interpolate(grid, size=(6, 6), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, 36, WIDTH)
    state_48 = {**state, "pos_embed": torch.cat([state["pos_embed"][:, :1], resized], dim=1)}
    images = torch.randn(2, 3, 48, 48)
    torch.testing.assert_close(imported.model.eval().forward_features(images), reference_encoder(state_48, images), atol=1e-4, rtol=1e-4)


def test_finetuned_file_gives_the_encoder_and_its_head_as_extras(tmp_path: Path) -> None:
    imported = load(write(tmp_path, random_mae_state(decoder=False, finetuned=True)))
    assert isinstance(imported.model, VisionTransformer)
    assert set(imported.extras) == {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}
    assert any("norm" in note for note in imported.notes)


# ---------------------------------------------------------------- VideoMAE / S4D layout
def reference_videomae(state: dict, clips: torch.Tensor, mask: torch.Tensor, heads: int, dec_heads: int) -> torch.Tensor:
    """VideoMAE pretraining forward: predictions for the masked tokens, in token order."""
    x = F.conv3d(clips, state["encoder.patch_embed.proj.weight"], state["encoder.patch_embed.proj.bias"], stride=(2, PATCH, PATCH))
    x = x.flatten(2).transpose(1, 2)
    batch, count, dim = x.shape
    x = x + videomae_table(count, dim)
    x = x[~mask].reshape(batch, -1, dim)
    for i in range(DEPTH):
        x = reference_block(state, f"encoder.blocks.{i}.", x, heads)
    x = norm(state, "encoder.norm", x)
    x = x @ state["encoder_to_decoder.weight"].T
    table = videomae_table(count, DEC_WIDTH).expand(batch, -1, -1)
    visible_pos, masked_pos = table[~mask].reshape(batch, -1, DEC_WIDTH), table[mask].reshape(batch, -1, DEC_WIDTH)
    y = torch.cat([x + visible_pos, state["mask_token"] + masked_pos], dim=1)
    for i in range(DEC_DEPTH):
        y = reference_block(state, f"decoder.blocks.{i}.", y, dec_heads)
    masked = masked_pos.shape[1]
    return linear(state, "decoder.head", norm(state, "decoder.norm", y[:, -masked:]))


def test_videomae_pretraining_file_reproduces_the_reference_forward(tmp_path: Path) -> None:
    state = random_videomae_state()
    config = MAEConfig(
        encoder=ViTConfig(img_size=32, patch_size=PATCH, num_frames=4, tubelet_size=2, embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS, cls_token=False),
        decoder_embed_dim=DEC_WIDTH, decoder_depth=DEC_DEPTH, decoder_num_heads=2, clip_mask_ratio=0.75,
    )
    imported = load(write(tmp_path, state, "videomae.pth"), config)
    model = imported.model.eval()
    assert isinstance(model, MaskedAutoencoder) and imported.layout == "videomae"
    clips = torch.randn(2, 3, 4, 32, 32)
    _, pred, mask = model(clips, noise=torch.rand(model.noise_shape(clips)))
    mask = mask.bool()
    assert mask.sum(1).tolist() == [24, 24]  # tube masking: 12 of 16 places removed in both slices
    expected = reference_videomae(state, clips, mask, HEADS, 2)
    torch.testing.assert_close(pred[mask].reshape(2, -1, pred.shape[-1]), expected, atol=1e-4, rtol=1e-4)


def test_videomae_finetuned_encoder_and_layer_scale_refusal(tmp_path: Path) -> None:
    state = random_videomae_state(prefix="")
    del state["norm.weight"], state["norm.bias"]
    state.update({"fc_norm.weight": torch.ones(WIDTH), "fc_norm.bias": torch.zeros(WIDTH), "head.weight": torch.zeros(7, WIDTH), "head.bias": torch.zeros(7)})
    config = ViTConfig(img_size=32, patch_size=PATCH, num_frames=4, embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS, cls_token=False)
    imported = load(write(tmp_path, state, "ft.pth"), config)
    assert isinstance(imported.model, VisionTransformer) and "head.weight" in imported.extras
    bias = imported.model.blocks[0].attn.qkv.bias
    assert torch.equal(bias[WIDTH : 2 * WIDTH], torch.zeros(WIDTH))  # VideoMAE has no key bias
    state["blocks.0.gamma_1"] = torch.ones(WIDTH)
    with pytest.raises(ValueError, match="gamma_1"):
        load(write(tmp_path, state, "ls.pth"), config)


def s4d_finetuned_state(experts: int = 2) -> dict:
    """An S4D fine-tuned file (finetune/s4d/videomae.py): mean pooling (fc_norm, no final norm), image and
    video heads, and a SparseMoEWithCapacity of Mlp experts beside the MLP of the upper block."""
    state = random_videomae_state(prefix="")
    del state["norm.weight"], state["norm.bias"]
    g = torch.Generator().manual_seed(5)
    adapter = "blocks.1.moe_layer."
    for router in ("topkroute_linear", "noise_linear"):
        state[f"{adapter}router.{router}.weight"], state[f"{adapter}router.{router}.bias"] = torch.randn(experts, WIDTH, generator=g), torch.randn(experts, generator=g)
    for e in range(experts):
        state[f"{adapter}experts.{e}.fc1.weight"], state[f"{adapter}experts.{e}.fc1.bias"] = torch.randn(WIDTH // 4, WIDTH, generator=g), torch.randn(WIDTH // 4, generator=g)
        state[f"{adapter}experts.{e}.fc2.weight"], state[f"{adapter}experts.{e}.fc2.bias"] = torch.randn(WIDTH, WIDTH // 4, generator=g), torch.randn(WIDTH, generator=g)
    state.update({"fc_norm.weight": torch.ones(WIDTH), "fc_norm.bias": torch.zeros(WIDTH)})
    for head in ("image", "video"):
        state[f"head.{head}.weight"], state[f"head.{head}.bias"] = torch.randn(7, WIDTH, generator=g), torch.randn(7, generator=g)
    return state


def test_s4d_finetuned_file_keeps_and_reports_its_adapters_and_warns_off_its_160_px(tmp_path: Path) -> None:
    state = s4d_finetuned_state()
    path = write(tmp_path, state, "s4d_ft.pth")
    adapters = {k for k in state if ".moe_layer." in k}
    assert len(adapters) == 12
    with pytest.warns(UserWarning) as caught:
        imported = load(path)  # nothing says the size: S4D's 160 px is assumed
    messages = [str(w.message) for w in caught]
    assert imported.model.config.img_size == 160 and imported.layout == "videomae"
    assert adapters <= set(imported.extras) and {"head.image.weight", "head.video.bias", "fc_norm.weight"} <= set(imported.extras)
    for key in adapters:
        assert torch.equal(imported.extras[key], state[key])
    assert len(messages) == 1 and "S4D MoAE adapter tensors in blocks [1]" in messages[0] and "extras" in messages[0]

    config = ViTConfig(img_size=32, patch_size=PATCH, num_frames=4, embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS, cls_token=False)
    with pytest.warns(UserWarning) as caught:
        resized = load(path, config)
    assert any(re.search(r"S4D file \(trained at 160 px\) built for img_size=32.*img_size=160", str(w.message)) for w in caught)
    assert any("img_size=32" in note for note in resized.notes)


def test_unknown_block_tensors_are_kept_and_reported(tmp_path: Path) -> None:
    state = random_mae_state(decoder=False)
    state["blocks.0.attn.relative_position_bias_table"] = torch.randn(9, HEADS)
    with pytest.warns(UserWarning, match=r"unknown block tensors in blocks \[0\]"):
        imported = load(write(tmp_path, state))
    assert set(imported.extras) == {"blocks.0.attn.relative_position_bias_table"}


# ---------------------------------------------------------------- refusals
def test_unknown_layout_names_expected_and_found_keys(tmp_path: Path) -> None:
    path = write(tmp_path, {"backbone.conv1.weight": torch.zeros(3)}, "resnet.pth")
    with pytest.raises(ValueError, match=r"resnet\.pth.*cls_token.*backbone\.conv1\.weight"):
        load(path)


def test_missing_block_key_is_named(tmp_path: Path) -> None:
    state = random_mae_state(decoder=False)
    del state["blocks.1.mlp.fc2.weight"]
    with pytest.raises(ValueError, match="blocks.1.mlp.fc2.weight"):
        load(write(tmp_path, state))


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pth"
    torch.save({"model": random_mae_state(decoder=False), "args": Path("/tmp")}, path)  # an arbitrary object
    with pytest.raises(ValueError, match="weights_only"):
        load_checkpoint_file(path)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_checkpoint_file(tmp_path / "missing.pth")


def test_weights_that_do_not_fit_the_config_are_named(tmp_path: Path) -> None:
    wrong = ViTConfig(img_size=32, patch_size=PATCH, embed_dim=WIDTH, depth=DEPTH + 1, num_heads=HEADS)
    with pytest.raises(ValueError, match="encoder.depth: file 2, config 3"):
        load(write(tmp_path, random_mae_state(decoder=False)), wrong)
