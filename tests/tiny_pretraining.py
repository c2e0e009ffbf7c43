"""A tiny pretraining recipe for the ``tiny`` synthetic shards (``synthetic_shards("tiny")``, tests/conftest.py).

Used by the pretraining tests and by the engine's console test (tests/face_core/engine/test_progress.py)."""

from __future__ import annotations

from pathlib import Path

import yaml


def tiny_recipe(shards: dict[str, str], output_dir: Path, **trainer: object) -> dict:
    """A recipe dict (as in configs/pretrain/*.yaml) for a 2-block ViT on the tiny shards."""
    return {
        "model": {
            "encoder": {"img_size": 32, "patch_size": 8, "num_frames": 4, "tubelet_size": 2, "embed_dim": 32, "depth": 2, "num_heads": 2},
            "decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2,
        },
        "data": {
            "images": {"train": [shards["images-train"]], "batch_size": 8},
            "clips": {"train": [shards["clips-train"]], "passes": 0.6, "batch_size": 4, "frame_stride": 1},
            "num_workers": 0, "shuffle_buffer": 50,
        },
        "optim": {"base_lr": 0.1, "warmup_fraction": 0.1, "grad_clip": 1.0},
        "trainer": {
            "output_dir": str(output_dir), "max_epochs": 2, "accelerator": "cpu", "precision": "32",
            "log_every_n_steps": 2, "image_log_every_n_steps": 10, "checkpoint_every_n_steps": 5, **trainer,
        },
    }


def write_recipe(recipe: dict, path: Path) -> Path:
    """Write a recipe dict as YAML for ``python -m pretrain fit --config``."""
    path.write_text(yaml.safe_dump(recipe))
    return path
