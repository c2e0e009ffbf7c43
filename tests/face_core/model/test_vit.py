"""The image/clip ViT: one tubelet embedding for both, position tables, blocks and their slots."""

import math
from pathlib import Path

import numpy as np
import pytest
import timm.models.vision_transformer as timm_vit
import torch
from safetensors.torch import load_file
from torch import nn

from face_core.model.config import VIT_SIZES, MAEConfig, ViTConfig
from face_core.model.mae import MaskedAutoencoder
from face_core.model.pos_embed import resize_table, sincos_3d
from face_core.model.vit import Block, VisionTransformer

BEFORE_TIMM = Path(__file__).parent / "data" / "mae_before_timm_blocks.safetensors"


def small_config(**overrides: object) -> ViTConfig:
    base = dict(img_size=32, patch_size=8, num_frames=4, tubelet_size=2, embed_dim=48, depth=2, num_heads=3)
    return ViTConfig(**{**base, **overrides})  # type: ignore[arg-type]


def mae_2d_table_numpy(dim: int, size: int) -> np.ndarray:
    """The public MAE formula written out independently: first half from the column, second from the row."""
    def one_d(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    cols, rows = np.meshgrid(np.arange(size), np.arange(size))
    return np.concatenate([one_d(dim // 2, cols), one_d(dim // 2, rows)], axis=1)


def test_shapes_for_images_and_clips_with_and_without_cls() -> None:
    torch.manual_seed(0)
    with_cls = VisionTransformer(small_config())
    without = VisionTransformer(small_config(cls_token=False))
    image, clip = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 4, 32, 32)
    assert with_cls.forward_features(image).shape == (2, 1 + 16, 48)
    assert with_cls.forward_features(clip).shape == (2, 1 + 32, 48)
    assert without.forward_features(clip).shape == (2, 32, 48)
    assert with_cls(image).shape == (2, 48)


def test_image_is_a_clip_of_its_frame_repeated() -> None:
    torch.manual_seed(0)
    model = VisionTransformer(small_config(num_frames=2)).eval()
    image = torch.randn(2, 3, 32, 32)
    clip = image.unsqueeze(2).repeat(1, 1, 2, 1, 1)
    torch.testing.assert_close(model.forward_features(image), model.forward_features(clip), atol=1e-5, rtol=1e-5)


def test_image_uses_first_temporal_slice_which_is_the_public_mae_table() -> None:
    table = sincos_3d(64, (3, 4, 4))
    expected = torch.from_numpy(mae_2d_table_numpy(64, 4)).float()
    torch.testing.assert_close(table[:16], expected)
    assert not torch.allclose(table[16:32], expected)  # later slices carry time
    model = VisionTransformer(small_config(embed_dim=64, num_heads=4, cls_token=False))
    tokens, grid = model.patchify_tokens(torch.zeros(1, 3, 32, 32))
    assert grid == (1, 4, 4)
    torch.testing.assert_close(tokens[0] - model.patch_embed.proj.bias, expected)


def test_kept_tokens_are_encoded_alone() -> None:
    torch.manual_seed(0)
    model = VisionTransformer(small_config()).eval()
    clip = torch.randn(2, 3, 4, 32, 32)
    ids_keep = torch.tensor([[0, 5, 9], [31, 2, 7]])
    tokens, _ = model.patchify_tokens(clip)
    picked = torch.stack([tokens[i, ids_keep[i]] for i in range(2)])
    torch.testing.assert_close(model.forward_features(clip, ids_keep), model.encode_tokens(picked))
    everything = torch.arange(32).expand(2, -1)
    torch.testing.assert_close(model.forward_features(clip, everything), model.forward_features(clip))


def test_parallel_branch_runs_beside_the_mlp_on_the_same_normed_input() -> None:
    torch.manual_seed(0)
    model = VisionTransformer(small_config(depth=1)).eval()
    block = model.blocks[0]
    x = torch.randn(2, 5, 48)
    branch = nn.Linear(48, 48)
    block.parallel_branch = branch
    after_attn = x + block.attn(block.norm1(x))
    h = block.norm2(after_attn)
    torch.testing.assert_close(block(x), after_attn + block.mlp(h) + branch(h))


def test_drop_path_only_while_training_and_checkpointing_keeps_gradients() -> None:
    torch.manual_seed(0)
    clip = torch.randn(4, 3, 4, 32, 32)
    model = VisionTransformer(small_config(drop_path_rate=0.5))
    model.eval()
    torch.testing.assert_close(model(clip), model(clip))
    model.train()
    torch.manual_seed(1)
    first = model(clip)
    torch.manual_seed(2)
    assert not torch.allclose(first, model(clip))

    plain = VisionTransformer(small_config())
    recomputed = VisionTransformer(small_config(activation_checkpointing=True))
    recomputed.load_state_dict(plain.state_dict())
    for model in (plain, recomputed):
        model.train()
        model(clip).square().sum().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), recomputed.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_wrong_input_size_names_the_setting() -> None:
    model = VisionTransformer(small_config())
    with pytest.raises(ValueError, match="img_size=32"):
        model.forward_features(torch.randn(1, 3, 48, 48))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        model.forward_features(torch.randn(3, 32, 32))


@pytest.mark.parametrize("size", sorted(VIT_SIZES))
def test_standard_sizes_have_the_reference_parameter_count(size: str) -> None:
    config = ViTConfig.preset(size, tubelet_size=1, num_frames=1)
    with torch.device("meta"):
        model = VisionTransformer(config)
    d, depth = config.embed_dim, config.depth
    per_block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * (4 * d * d) + 4 * d + d
    expected = (3 * 16 * 16 * d + d) + d + depth * per_block + 2 * d
    assert sum(p.numel() for p in model.parameters()) == expected
    # timm's vit_{base,large}_patch16_224 counts (86,567,656 and 304,326,632) less head and learned pos_embed
    reference = {"base": 86_567_656 - (768 * 1000 + 1000) - 197 * 768, "large": 304_326_632 - (1024 * 1000 + 1000) - 197 * 1024}
    assert reference.get(size, expected) == expected


def test_resized_table_keeps_a_constant_table_and_extends_one_slice_over_time() -> None:
    table = sincos_3d(16, (1, 4, 4))
    torch.testing.assert_close(resize_table(table, (1, 4, 4), (3, 4, 4)), sincos_3d(16, (3, 4, 4)))
    flat = torch.ones(2 * 9, 8)
    torch.testing.assert_close(resize_table(flat, (2, 3, 3), (4, 5, 5)), torch.ones(4 * 25, 8))
    with pytest.raises(ValueError, match="grid"):
        resize_table(flat, (1, 3, 3), (1, 4, 4))
    assert math.prod((4, 5, 5)) == 100


def test_state_dict_written_before_timm_blocks_loads_and_gives_the_same_numbers() -> None:
    """The fixture was written by the hand-written Block/Attention/Mlp/DropPath (commit 8a96dc7):
    a tiny MAE's weights (perturbed away from initialisation), inputs and outputs. The timm-based
    blocks must load it strictly and reproduce its encoder and decoder outputs."""
    stored = load_file(str(BEFORE_TIMM))
    encoder = ViTConfig(img_size=16, patch_size=8, num_frames=4, tubelet_size=2, embed_dim=16, depth=2, num_heads=2)
    model = MaskedAutoencoder(MAEConfig(encoder=encoder, decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=2)).eval()
    weights = {k[len("model."):]: v for k, v in stored.items() if k.startswith("model.")}
    assert set(weights) == set(model.state_dict())
    model.load_state_dict(weights, strict=True)
    assert all(isinstance(block, timm_vit.Block) for block in [*model.encoder.blocks, *model.decoder_blocks])
    with torch.no_grad():
        torch.testing.assert_close(model.encoder.forward_features(stored["input.image"]), stored["output.image_tokens"], atol=1e-5, rtol=1e-5)
        clip_tokens = model.encoder.forward_features(stored["input.clip"])
        torch.testing.assert_close(clip_tokens, stored["output.clip_tokens"], atol=1e-5, rtol=1e-5)
        decoded = model.decode(clip_tokens, torch.arange(8).expand(2, -1))
        torch.testing.assert_close(decoded, stored["output.clip_decoded"], atol=1e-5, rtol=1e-5)


def test_blocks_are_timm_blocks_with_fused_attention_and_timm_names() -> None:
    block = Block(48, 3, drop_path=0.1)
    assert block.attn.fused_attn  # F.scaled_dot_product_attention, as before
    assert isinstance(block.drop_path1, timm_vit.DropPath) and block.drop_path1.drop_prob == 0.1
    timm_block = timm_vit.Block(48, 3, qkv_bias=True)
    assert block.state_dict().keys() == timm_block.state_dict().keys()
    timm_block.load_state_dict(block.state_dict())
    x = torch.randn(2, 5, 48)
    block.eval(), timm_block.eval()
    torch.testing.assert_close(block(x), timm_block(x), atol=1e-5, rtol=1e-5)  # timm's LayerNorm has the same eps
