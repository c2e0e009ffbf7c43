"""Random weights in the public checkpoint layouts: MAE (facebookresearch/mae, pretraining and fine-tuned
files) and VideoMAE/S4D, at ViT-tiny width for 32 px images. The checkpoint-format tests
(tests/face_core/model/test_checkpoint_formats.py) check our model against reference forwards on them;
the loading tests (tests/face_core/release/test_loading.py) load them with ``face_core.load_model``.
"""

import numpy as np
import torch

WIDTH, DEPTH, HEADS, PATCH, SIDE = 192, 2, 3, 8, 4  # ViT-tiny width (3 heads); 32 px images, a 4x4 grid
DEC_WIDTH, DEC_DEPTH, DEC_HEADS = 64, 1, 2  # MAE decoders: heads of 32 channels


def mae_2d_table(dim: int, side: int) -> torch.Tensor:
    def one_d(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    cols, rows = np.meshgrid(np.arange(side), np.arange(side))
    table = np.concatenate([one_d(dim // 2, cols), one_d(dim // 2, rows)], axis=1)
    return torch.from_numpy(np.concatenate([np.zeros((1, dim)), table])).float()[None]


def random_mae_state(decoder: bool = True, finetuned: bool = False, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.2

    def blocks(prefix: str, dim: int, depth: int) -> dict:
        out = {}
        for i in range(depth):
            pre = f"{prefix}{i}."
            for name, shape in (("norm1", (dim,)), ("norm2", (dim,))):
                out[pre + name + ".weight"], out[pre + name + ".bias"] = 1 + rand(*shape), rand(*shape)
            for name, (o, i_) in {"attn.qkv": (3 * dim, dim), "attn.proj": (dim, dim), "mlp.fc1": (4 * dim, dim), "mlp.fc2": (dim, 4 * dim)}.items():
                out[pre + name + ".weight"], out[pre + name + ".bias"] = rand(o, i_), rand(o)
        return out

    state = {
        "cls_token": rand(1, 1, WIDTH),
        "pos_embed": mae_2d_table(WIDTH, SIDE),
        "patch_embed.proj.weight": rand(WIDTH, 3, PATCH, PATCH),
        "patch_embed.proj.bias": rand(WIDTH),
        **blocks("blocks.", WIDTH, DEPTH),
    }
    if finetuned:
        state.update({"fc_norm.weight": 1 + rand(WIDTH), "fc_norm.bias": rand(WIDTH), "head.weight": rand(7, WIDTH), "head.bias": rand(7)})
    else:
        state.update({"norm.weight": 1 + rand(WIDTH), "norm.bias": rand(WIDTH)})
    if decoder:
        state.update({
            "mask_token": rand(1, 1, DEC_WIDTH),
            "decoder_embed.weight": rand(DEC_WIDTH, WIDTH), "decoder_embed.bias": rand(DEC_WIDTH),
            "decoder_pos_embed": mae_2d_table(DEC_WIDTH, SIDE),
            "decoder_norm.weight": 1 + rand(DEC_WIDTH), "decoder_norm.bias": rand(DEC_WIDTH),
            "decoder_pred.weight": rand(PATCH * PATCH * 3, DEC_WIDTH), "decoder_pred.bias": rand(PATCH * PATCH * 3),
            **blocks("decoder_blocks.", DEC_WIDTH, DEC_DEPTH),
        })
    return state


def random_videomae_state(prefix: str = "encoder.", seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.2

    def blocks(pre_all: str, dim: int, depth: int) -> dict:
        out = {}
        for i in range(depth):
            pre = f"{pre_all}{i}."
            for name in ("norm1", "norm2"):
                out[pre + name + ".weight"], out[pre + name + ".bias"] = 1 + rand(dim), rand(dim)
            out[pre + "attn.qkv.weight"] = rand(3 * dim, dim)
            out[pre + "attn.q_bias"], out[pre + "attn.v_bias"] = rand(dim), rand(dim)
            for name, (o, i_) in {"attn.proj": (dim, dim), "mlp.fc1": (4 * dim, dim), "mlp.fc2": (dim, 4 * dim)}.items():
                out[pre + name + ".weight"], out[pre + name + ".bias"] = rand(o, i_), rand(o)
        return out

    state = {
        prefix + "patch_embed.proj.weight": rand(WIDTH, 3, 2, PATCH, PATCH),
        prefix + "patch_embed.proj.bias": rand(WIDTH),
        prefix + "norm.weight": 1 + rand(WIDTH), prefix + "norm.bias": rand(WIDTH),
        **blocks(prefix + "blocks.", WIDTH, DEPTH),
    }
    if prefix:
        state.update({
            "encoder_to_decoder.weight": rand(DEC_WIDTH, WIDTH),
            "mask_token": rand(1, 1, DEC_WIDTH),
            "decoder.norm.weight": 1 + rand(DEC_WIDTH), "decoder.norm.bias": rand(DEC_WIDTH),
            "decoder.head.weight": rand(2 * PATCH * PATCH * 3, DEC_WIDTH), "decoder.head.bias": rand(2 * PATCH * PATCH * 3),
            **blocks("decoder.blocks.", DEC_WIDTH, DEC_DEPTH),
        })
    return state
