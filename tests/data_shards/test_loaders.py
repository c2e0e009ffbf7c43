"""The loaders follow the batch contract, are deterministic, resumable and fail clearly on bad input."""

import pytest
import torch
from synthetic_sets import ShardSets

from data_shards.loaders import LoaderConfig, eval_loader, normalize_pixels, train_loader
from data_shards.manifest import read_manifest
from plumbing.recipes import ConfigError


@pytest.fixture(scope="module")
def demo_shards(synthetic_shards: ShardSets) -> dict[str, str]:
    """The 64 px / 8-frame synthetic sets (images 180/30/90, clips 24/4/12)."""
    return synthetic_shards("demo")


def test_image_train_batches_follow_the_contract(demo_shards: dict[str, str]) -> None:
    config = LoaderConfig(shards=[demo_shards["images-train"]], batch_size=16, num_workers=2, shuffle_buffer=50, crop_scale=(0.5, 1.0))
    loader = train_loader(config)
    manifest = read_manifest(demo_shards["images-train"])
    assert len(loader) == manifest.num_samples // 16
    batches = list(loader)
    assert len(batches) == len(loader)
    batch = batches[0]
    assert batch["pixels"].dtype == torch.uint8 and batch["pixels"].shape == (16, 3, 64, 64)
    assert batch["aus"].dtype == torch.float32 and batch["aus"].shape == (16, len(manifest.au_ids))
    assert set(batch["aus"].unique().tolist()) <= {0.0, 1.0}
    assert batch["expression"].dtype == torch.int64 and batch["expression"].min() >= 0
    assert batch["subject"].dtype == torch.int64 and batch["subject"].max() < len(manifest.subjects)
    assert batch["valence"].shape == (16,) and len(batch["key"]) == 16
    assert loader.subjects == manifest.subjects and loader.au_ids == manifest.au_ids
    assert loader.skipped == {"corrupt_sample": 0, "truncated_shard": 0}


def test_clip_batches_sample_frames_with_a_stride(demo_shards: dict[str, str]) -> None:
    loader = train_loader(LoaderConfig(shards=[demo_shards["clips-train"]], modality="clip", batch_size=4, num_frames=4, frame_stride=2, num_workers=0, shuffle_buffer=8))
    batch = next(iter(loader))
    assert batch["pixels"].shape == (4, 3, 4, 64, 64) and batch["pixels"].dtype == torch.uint8


def test_training_is_deterministic_per_seed_and_epoch(demo_shards: dict[str, str]) -> None:
    config = LoaderConfig(shards=[demo_shards["images-train"]], batch_size=8, num_workers=2, shuffle_buffer=20, seed=3)
    first = [key for batch in train_loader(config) for key in batch["key"]]
    again = [key for batch in train_loader(config) for key in batch["key"]]
    assert first == again
    other = train_loader(config)
    other.set_epoch(1)
    assert [key for batch in other for key in batch["key"]] != first


def test_resume_continues_the_epoch_with_the_remaining_batches(demo_shards: dict[str, str]) -> None:
    config = LoaderConfig(shards=[demo_shards["images-train"]], batch_size=8, num_workers=0, shuffle_buffer=20)
    loader = train_loader(config)
    iterator = iter(loader)
    for _ in range(5):
        next(iterator)
    state = loader.state_dict()
    assert state == {"epoch": 0, "batches_done": 5}
    resumed = train_loader(config)
    resumed.load_state_dict(state)
    resumed.set_epoch(0)
    assert sum(1 for _ in resumed) == len(loader) - 5
    assert resumed.state_dict()["epoch"] == 1


def test_eval_reads_every_sample_once(demo_shards: dict[str, str]) -> None:
    loader = eval_loader(LoaderConfig(shards=[demo_shards["images-val"], demo_shards["images-test"]], batch_size=16, num_workers=2))
    batches = list(loader)
    keys = [key for batch in batches for key in batch["key"]]
    assert len(batches) == len(loader)
    expected = sum(read_manifest(demo_shards[name]).num_samples for name in ("images-val", "images-test"))
    assert len(keys) == len(set(keys)) == expected


def test_mixing_sets_by_weight(demo_shards: dict[str, str]) -> None:
    config = LoaderConfig(shards=[demo_shards["images-train"], demo_shards["images-val"]], weights=[1.0, 3.0], batch_size=16, num_workers=0, shuffle_buffer=0, samples_per_epoch=6400)
    loader = train_loader(config)
    val_subjects = set(read_manifest(demo_shards["images-val"]).subjects)
    from_val = [loader.subjects[i] in val_subjects for batch in loader for i in batch["subject"].tolist()]
    assert 0.65 < sum(from_val) / len(from_val) < 0.85  # weights are shares of samples, not of shard draws


def test_normalize_pixels_images_and_clips() -> None:
    white = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    out = normalize_pixels(white)
    assert out.dtype == torch.float32
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225]))
    assert normalize_pixels(torch.zeros(2, 3, 5, 4, 4, dtype=torch.uint8)).shape == (2, 3, 5, 4, 4)


def test_bad_inputs_are_clear_errors(demo_shards: dict[str, str], tmp_path) -> None:
    with pytest.raises(ConfigError, match="shards"):
        train_loader(LoaderConfig(shards=[]))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        train_loader(LoaderConfig(shards=[str(tmp_path / "nowhere" / "manifest.json")]))
    with pytest.raises(ConfigError, match="holds clip samples"):
        train_loader(LoaderConfig(shards=[demo_shards["clips-train"]], modality="image"))
    with pytest.raises(ConfigError, match="batch_size=100000"):
        train_loader(LoaderConfig(shards=[demo_shards["images-val"]], batch_size=100000))


def test_brace_patterns_select_shards_of_a_set(demo_shards: dict[str, str]) -> None:
    manifest = read_manifest(demo_shards["images-train"])
    folder = manifest.path.rsplit("/", 1)[0]
    pattern = f"{folder}/shard-{{000000..000001}}.tar"
    loader = eval_loader(LoaderConfig(shards=[pattern], batch_size=32, num_workers=0))
    keys = [key for batch in loader for key in batch["key"]]
    assert len(keys) == manifest.shards[0].samples + manifest.shards[1].samples
    with pytest.raises(ConfigError, match="not listed in"):
        eval_loader(LoaderConfig(shards=[f"{folder}/shard-{{000000..000099}}.tar"]))


def test_subject_filter_keeps_only_those_subjects(demo_shards: dict[str, str]) -> None:
    manifest = read_manifest(demo_shards["images-train"])
    fold = manifest.subjects[:6]
    evaluation = eval_loader(LoaderConfig(shards=[manifest.path], batch_size=32, num_workers=2, subjects=fold))
    subjects = [evaluation.subjects[i] for batch in evaluation for i in batch["subject"].tolist()]
    assert set(subjects) == set(fold) and len(subjects) == sum(manifest.counts.subject[s] for s in fold)
    training = train_loader(LoaderConfig(shards=[manifest.path], batch_size=8, num_workers=0, shuffle_buffer=10, subjects=fold))
    assert len(training) == sum(manifest.counts.subject[s] for s in fold) // 8
    assert {training.subjects[i] for batch in training for i in batch["subject"].tolist()} <= set(fold)
    with pytest.raises(ConfigError, match="subjects: none of"):
        train_loader(LoaderConfig(shards=[manifest.path], subjects=["nobody"]))


def test_balanced_classes_are_drawn_equally_often(demo_shards: dict[str, str]) -> None:
    manifest = read_manifest(demo_shards["images-train"])
    counts = [manifest.counts.expression.get(str(c), 0) for c in range(len(manifest.class_names))]
    assert max(counts) > 1.5 * min(counts)  # the train split is unbalanced (favourite expressions)
    loader = train_loader(LoaderConfig(shards=[manifest.path], batch_size=16, num_workers=0, shuffle_buffer=0,
                                       balance_classes=True, samples_per_epoch=3200))
    drawn = torch.bincount(torch.cat([batch["expression"] for batch in loader]), minlength=len(counts)).float()
    assert drawn.min() / drawn.max() > 0.6
