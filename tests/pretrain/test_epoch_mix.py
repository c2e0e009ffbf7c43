"""What an epoch of joint image/clip pretraining holds (issue 11, error 3): passes per modality and repeated clips."""

from pathlib import Path

import pytest
from synthetic_sets import ShardSets

from data_shards.interleave import InterleavedBatches
from data_shards.manifest import read_manifest
from data_shards.sections import AugmentConfig, ClipSection, ImageSection
from face_core.model.config import ViTConfig
from plumbing.recipes import load_recipe
from pretrain.cli import fit
from pretrain.config import PretrainDataConfig
from pretrain.data_module import PretrainDataModule

ROOT = Path(__file__).resolve().parents[2]
ENCODER = ViTConfig(img_size=32, patch_size=8, num_frames=4, tubelet_size=2, embed_dim=32, depth=1, num_heads=2)


@pytest.fixture(scope="module")
def shards(synthetic_shards: ShardSets) -> dict[str, str]:
    return synthetic_shards("tiny")


def test_s4d_recipe_shows_as_much_video_as_s4d() -> None:
    """Regression (issue 11, error 3): the 0.25 of S4D is the video loader's own length, its video
    batch holds 48 clips each replicated 4 times (192 samples, as an image batch); ours read 0.25 as
    clip steps per image step with 16-clip batches, 30-100x less video per epoch."""
    data = load_recipe(fit, str(ROOT / "configs/pretrain/vit_s.yaml"))["data"]
    assert data.clips.batch_size * data.clips.repeats == data.images.batch_size == 192
    assert (data.clips.passes, data.clips.repeats) == (0.25, 4)
    video, images = 1_092_009, 287_651  # VoxCeleb2 dev clips, AffectNet manually annotated images
    clip_samples = data.clips.passes * video * data.clips.repeats  # per epoch, as S4D: every clip's worth once
    assert clip_samples == pytest.approx(video)
    assert clip_samples / images > 3  # video dominates an epoch, as in S4D (not 0.25 x 16 / 192 of it)


def test_an_epoch_holds_the_passes_and_repeats_it_says(shards: dict[str, str]) -> None:
    clips = read_manifest(shards["clips-train"]).num_samples
    images = read_manifest(shards["images-train"]).num_samples
    data = PretrainDataConfig(
        images=ImageSection(train=[shards["images-train"]], passes=0.5, batch_size=8),
        clips=ClipSection(train=[shards["clips-train"]], passes=0.25, repeats=4, batch_size=2, frame_stride=1, augment=AugmentConfig(crop_scale=(0.3, 1.0))),
        num_workers=0, shuffle_buffer=20,
    )
    module = PretrainDataModule(data, ENCODER, seed=0, world_size=1)
    steps = module.steps_per_epoch()
    assert steps == {"image": round(0.5 * (images // 8)), "clip": round(0.25 * (clips // 2))}
    batches = list(InterleavedBatches(module._build_loaders(rank=0), steps, seed=0, position=lambda: (0, 0)))
    clip_batches = [b for b in batches if b["modality"] == "clip"]
    assert len(clip_batches) == steps["clip"]
    for batch in clip_batches:  # 2 clips read, each cropped 4 times: 8 samples, labels repeated
        assert batch["pixels"].shape == (8, 3, 4, 32, 32)
        assert batch["key"][:4] == [batch["key"][0]] * 4 and batch["subject"].shape == (8,)
        assert len({tuple(p.flatten().tolist()) for p in batch["pixels"][:4]}) > 1  # each copy its own crop
    assert all(b["pixels"].shape == (8, 3, 32, 32) for b in batches if b["modality"] == "image")
