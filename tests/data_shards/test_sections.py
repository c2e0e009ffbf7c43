"""A recipe's data section becomes its loader's config in one place, the same for both stages."""

from data_shards.decode import ViewOptions
from data_shards.loaders import loader_config
from data_shards.sections import AugmentConfig, ClipSection, ImageSection
from plumbing.recipes import validate


def test_a_clip_section_maps_onto_its_loader() -> None:
    augment = AugmentConfig(crop_scale=(0.5, 1.0), interpolation="bicubic", hflip=0.0, rand_augment="rand-m9-mstd0.5-inc1")
    clips = ClipSection(train=["a.json", "b.json"], weights=[1.0, 3.0], batch_size=4, passes=0.5, repeats=2, frame_stride=3, augment=augment)
    config = loader_config(clips, img_size=32, num_frames=8, seed=5, num_workers=0, samples_per_epoch=100)
    assert (config.shards, config.weights, config.modality, config.batch_size) == (["a.json", "b.json"], [1.0, 3.0], "clip", 4)
    assert (config.img_size, config.num_frames, config.frame_stride, config.seed) == (32, 8, 3, 5)
    assert (config.num_workers, config.samples_per_epoch, config.crop_scale, config.hflip) == (0, 100, (0.5, 1.0), 0.0)
    assert config.view_options == ViewOptions("bicubic", "rand-m9-mstd0.5-inc1", repeats=2)


def test_an_image_section_reads_one_frame_once() -> None:
    config = loader_config(ImageSection(train=["c.json"]), img_size=32, num_frames=8, seed=0)
    assert (config.modality, config.frame_stride, config.view_options.repeats) == ("image", 1, 1)
    assert (config.crop_scale, config.view_options.interpolation, config.view_options.rand_augment) == ((1.0, 1.0), "bilinear", "")
    validate(config)


def test_a_section_names_its_impossible_values() -> None:
    clips = ClipSection(train=["a.json"], weights=[1.0, 2.0], passes=0.0, frame_stride=0, augment=AugmentConfig(hflip=2.0))
    found = {key for key, _ in clips.problems()} | {f"augment.{key}" for key, _ in clips.augment.problems()}
    assert found == {"weights", "passes", "frame_stride", "augment.hflip"}
