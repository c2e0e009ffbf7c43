"""Parameter groups (no decay on biases, norms, tokens, positions), lr scaling, the schedule and layer-wise lr decay
(layers assigned as MAE does)."""

import math

import pytest
import torch

from face_core.engine.optim import build_adamw, build_param_groups, layer_decay_scale, layer_id, scaled_lr, warmup_cosine
from face_core.model.config import MAEConfig, ViTConfig
from face_core.model.mae import MaskedAutoencoder


def tiny_mae() -> MaskedAutoencoder:
    encoder = ViTConfig(img_size=16, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2)
    return MaskedAutoencoder(MAEConfig(encoder=encoder, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2))


def test_no_decay_on_biases_norms_tokens_positions() -> None:
    model = tiny_mae()
    model.encoder.learned_pos_embed = torch.nn.Parameter(torch.zeros(1, 4, 32))  # a learned (3-D) position table
    groups = build_param_groups(model, weight_decay=0.05)
    by_name = {name: group["weight_decay"] for group in groups for name in group["param_names"]}
    assert by_name["encoder.blocks.0.attn.qkv.weight"] == 0.05
    assert by_name["decoder_pred.weight"] == 0.05
    assert by_name["encoder.patch_embed.proj.weight"] == 0.05
    for name in ("encoder.blocks.0.attn.qkv.bias", "encoder.blocks.0.norm1.weight", "encoder.norm.bias",
                 "encoder.cls_token", "mask_token", "encoder.learned_pos_embed"):
        assert by_name[name] == 0.0, name
    assert sorted(by_name) == sorted(name for name, _ in model.named_parameters())


def test_frozen_parameters_are_left_out_and_lr_scale_splits_groups() -> None:
    model = tiny_mae()
    model.decoder_pred.weight.requires_grad_(False)
    scale = lambda name: 0.5 if name.startswith("encoder.blocks.0.") else 1.0  # noqa: E731
    groups = build_param_groups(model, weight_decay=0.1, lr_scale=scale)
    names = [name for group in groups for name in group["param_names"]]
    assert "decoder_pred.weight" not in names
    assert {(g["weight_decay"], g["lr_scale"]) for g in groups} == {(0.1, 0.5), (0.0, 0.5), (0.1, 1.0), (0.0, 1.0)}
    optimizer, scheduler = build_adamw(groups, lr=1e-3, betas=(0.9, 0.95), total_steps=10, warmup_steps=2, min_lr=0.0)
    lrs = {(g["weight_decay"], g["lr_scale"]): g["lr"] for g in optimizer.param_groups}
    assert lrs[(0.1, 0.5)] == pytest.approx(0.5 * lrs[(0.1, 1.0)])


def test_linear_scaling_rule() -> None:
    assert scaled_lr(1.5e-4, 512) == pytest.approx(3e-4)
    assert scaled_lr(1.5e-3, 32) == pytest.approx(1.875e-4)


def test_warmup_then_cosine_to_min() -> None:
    total, warmup, base, low = 100, 10, 1.0, 0.1
    values = [warmup_cosine(s, total, warmup, base, low) for s in range(total + 5)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(values[:9], values[1:10]))  # rising during warmup
    assert all(a >= b for a, b in zip(values[10:total], values[11:total]))  # falling after
    midpoint = warmup + (total - warmup) // 2
    assert values[midpoint] == pytest.approx(low + (base - low) * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert values[total] == pytest.approx(low) and values[-1] == pytest.approx(low)


def test_scheduler_steps_per_optimiser_step_and_state_loads_weights_only(tmp_path) -> None:
    model = tiny_mae()
    optimizer, scheduler = build_adamw(build_param_groups(model, 0.05), 2e-3, (0.9, 0.95), 20, 4, 1e-4)
    seen = []
    for _ in range(20):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [warmup_cosine(s, 20, 4, 2e-3, 1e-4) for s in range(20)]
    assert seen == pytest.approx(expected)
    torch.save({"scheduler": scheduler.state_dict(), "optimizer": optimizer.state_dict()}, tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    fresh_opt, fresh = build_adamw(build_param_groups(tiny_mae(), 0.05), 2e-3, (0.9, 0.95), 20, 4, 1e-4)
    fresh_opt.load_state_dict(state["optimizer"])
    fresh.load_state_dict(state["scheduler"])
    assert fresh.last_epoch == 20


def test_layer_ids() -> None:
    assert layer_id("encoder.patch_embed.proj.weight", 12) == 0
    assert layer_id("encoder.cls_token", 12) == 0
    assert layer_id("encoder.blocks.0.attn.qkv.weight", 12) == 1
    assert layer_id("encoder.blocks.11.parallel_branch.up_weight", 12) == 12
    assert layer_id("fc_norm.weight", 12) == 13
    assert layer_id("heads.au_image.weight", 12) == 13


def test_layer_decay_scales() -> None:
    scale = layer_decay_scale(depth=2, decay=0.5)
    assert scale("encoder.patch_embed.proj.bias") == 0.125
    assert scale("encoder.blocks.1.mlp.fc1.weight") == 0.5
    assert scale("heads.expression_clip.bias") == 1.0
    assert layer_decay_scale(2, 1.0)("encoder.cls_token") == 1.0
    with pytest.raises(ValueError, match="decay"):
        layer_decay_scale(2, 0.0)
