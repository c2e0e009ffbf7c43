"""Every shipped pretraining recipe loads and validates; bad keys and values are named clearly."""

import subprocess
import sys
from pathlib import Path

import pytest

from data_shards.sections import AugmentConfig
from face_core.model.config import MAEConfig, ViTConfig
from plumbing.recipes import ConfigError, load_recipe
from pretrain.cli import fit
from pretrain.config import PretrainDataConfig

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "configs" / "pretrain").glob("*.yaml"))


def test_recipes_exist() -> None:
    assert {p.stem for p in RECIPES} >= {"tiny", "vit_s", "vit_b", "vit_l"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_and_validates(recipe: Path) -> None:
    config = load_recipe(fit, str(recipe))
    assert isinstance(config["model"], MAEConfig)
    encoder = config["model"].encoder
    assert encoder.img_size % encoder.patch_size == 0


def test_reference_sizes_match_methods() -> None:
    base = load_recipe(fit, str(ROOT / "configs/pretrain/vit_b.yaml"))["model"]
    large = load_recipe(fit, str(ROOT / "configs/pretrain/vit_l.yaml"))["model"]
    small = load_recipe(fit, str(ROOT / "configs/pretrain/vit_s.yaml"))["model"]
    assert (base.encoder.embed_dim, base.encoder.depth, base.encoder.num_heads) == (768, 12, 12)
    assert (large.encoder.embed_dim, large.encoder.depth, large.encoder.num_heads) == (1024, 24, 16)
    assert (small.encoder.embed_dim, small.encoder.depth, small.encoder.num_heads) == (384, 12, 6)
    assert (base.decoder_embed_dim, base.decoder_depth, base.decoder_num_heads) == (512, 8, 16)
    assert (small.decoder_embed_dim, small.decoder_depth, small.decoder_num_heads) == (192, 4, 3)  # S4D ViT-S


def test_impossible_values_name_key_and_value() -> None:
    with pytest.raises(ConfigError) as caught:
        load_recipe(
            fit,
            str(ROOT / "configs/pretrain/tiny.yaml"),
            ["--model.image_mask_ratio", "1.5", "--model.encoder.img_size", "100"],
        )
    message = str(caught.value)
    assert "model.image_mask_ratio=1.5" in message and "between 0 and 1" in message
    assert "model.encoder.img_size=100" in message and "patch_size=8" in message
    assert "tiny.yaml" in message


def test_data_sections_keep_the_pretraining_defaults() -> None:
    data = PretrainDataConfig()
    assert (data.images.batch_size, data.clips.batch_size, data.clips.frame_stride, data.clips.repeats) == (64, 8, 4, 1)
    assert data.images.augment == data.clips.augment == AugmentConfig(crop_scale=(1.0, 1.0), interpolation="bilinear", hflip=0.5, rand_augment="")
    vit_s = load_recipe(fit, str(ROOT / "configs/pretrain/vit_s.yaml"))["data"]
    assert (vit_s.images.augment.interpolation, vit_s.clips.augment.interpolation) == ("bicubic", "bilinear")  # S4D's clip crops


def test_data_section_values_are_named_by_their_dotted_keys() -> None:
    overrides = ["--data.clips.augment.random_erase", "0.25", "--data.images.batch_size", "0", "--data.images.train", "[]"]
    with pytest.raises(ConfigError) as caught:
        load_recipe(fit, str(ROOT / "configs/pretrain/tiny.yaml"), overrides)
    message = str(caught.value)
    assert "data.clips.augment.random_erase=0.25: must be 0" in message and "data.images.batch_size=0" in message
    assert "data.images.train=[]: give images.train, clips.train or both" in message


def test_unknown_key_is_named(tmp_path: Path) -> None:
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("model:\n  image_mask_ratoi: 0.5\n")
    with pytest.raises(ConfigError, match="image_mask_ratoi"):
        load_recipe(fit, str(recipe))


def test_missing_recipe_file() -> None:
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_recipe(fit, "configs/pretrain/nope.yaml")


def test_vit_presets() -> None:
    assert ViTConfig.preset("large").embed_dim == 1024
    assert ViTConfig.preset("base", img_size=160).img_size == 160
    with pytest.raises(KeyError, match="giant"):
        ViTConfig.preset("giant")


def test_cli_reports_bad_value_without_traceback() -> None:
    """Also: dashed flag names are accepted (``--model.clip-mask-ratio``)."""
    done = subprocess.run(
        [sys.executable, "-m", "pretrain", "fit", "--config", "configs/pretrain/tiny.yaml", "--model.clip-mask-ratio", "0"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert done.returncode == 2
    assert "model.clip_mask_ratio=0.0" in done.stderr
    assert "Traceback" not in done.stderr
