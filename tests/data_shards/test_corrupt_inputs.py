"""Corrupt samples and truncated shards are counted and skipped by the loaders, and found by verify."""

import subprocess
import sys
from pathlib import Path

import pytest
from synthetic_sets import ShardSets

from data_shards.loaders import LoaderConfig, eval_loader, train_loader
from data_shards.manifest import read_manifest
from data_shards.verify import verify_sets
from plumbing.recipes import ConfigError


@pytest.fixture(scope="module")
def demo_shards(synthetic_shards: ShardSets) -> dict[str, str]:
    """The 64 px / 8-frame synthetic sets (images 180/30/90, clips 24/4/12)."""
    return synthetic_shards("demo")
from damage import copy_set, corrupt_every, corrupt_member, overwrite, truncate, truncate_between_members


@pytest.fixture()
def damaged(demo_shards: dict[str, str], tmp_path: Path) -> tuple[Path, set[str]]:
    """A copy of images-train with one undecodable JPEG, one bad label file, and a truncated last shard."""
    folder = copy_set(demo_shards["images-train"], tmp_path / "damaged")
    shards = sorted(folder.glob("shard-*.tar"))
    bad_jpeg = corrupt_member(shards[0], ".jpg", b"\xff\xd8 this is not a jpeg", index=3)
    bad_json = corrupt_member(shards[0], ".json", b'{"aus": {"99": 7}', index=5)
    truncate(shards[-1])
    return folder, {bad_jpeg, bad_json}


def test_eval_skips_and_counts_damage_across_workers(damaged: tuple[Path, set[str]], demo_shards: dict[str, str]) -> None:
    folder, bad_keys = damaged
    loader = eval_loader(LoaderConfig(shards=[str(folder / "manifest.json")], batch_size=16, num_workers=2))
    keys = [key for batch in loader for key in batch["key"]]
    manifest = read_manifest(folder)
    last = manifest.shards[-1].samples
    assert not bad_keys & set(keys) and len(keys) == len(set(keys))
    assert manifest.num_samples - last - 2 <= len(keys) < manifest.num_samples - 2
    assert loader.skipped == {"corrupt_sample": 2, "truncated_shard": 1}


def test_training_keeps_fixed_batches_despite_damage(damaged: tuple[Path, set[str]]) -> None:
    folder, _ = damaged
    loader = train_loader(LoaderConfig(shards=[str(folder / "manifest.json")], batch_size=16, num_workers=2, shuffle_buffer=30))
    batches = list(loader)
    assert len(batches) == len(loader) and all(len(b["key"]) == 16 for b in batches)
    assert loader.skipped["corrupt_sample"] + loader.skipped["truncated_shard"] > 0


def test_verify_reports_every_kind_of_damage(damaged: tuple[Path, set[str]], capsys: pytest.CaptureFixture) -> None:
    folder, bad_keys = damaged
    assert verify_sets([str(folder / "manifest.json")]) is False
    out = capsys.readouterr().out
    assert "sha256 differs" in out and "does not decode" in out and "damaged tar" in out
    assert "not JSON" in out and any(key in out for key in bad_keys)


def test_verify_cli_exit_status(damaged: tuple[Path, set[str]], demo_shards: dict[str, str]) -> None:
    folder, _ = damaged
    clean = Path(demo_shards["images-val"]).parent
    run = [sys.executable, "-m", "data_shards", "verify"]
    ok = subprocess.run([*run, str(clean)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "damaged shards: 0" in ok.stdout
    bad = subprocess.run([*run, str(folder)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "DAMAGED" in bad.stdout
    missing = subprocess.run([*run, str(folder / "nowhere")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "error: no shard manifest at" in missing.stderr


def test_verify_catches_labels_outside_the_schema(demo_shards: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = copy_set(demo_shards["images-val"], tmp_path / "labels")
    corrupt_member(sorted(folder.glob("shard-*.tar"))[0], ".json", b'{"aus": {"99": 1}, "expression": 40, "valence": 3}')
    assert verify_sets([str(folder)]) is False
    out = capsys.readouterr().out
    assert "AU '99' is not in the manifest" in out and "expression=40" in out and "valence=3" in out


@pytest.mark.parametrize(("members", "whole"), [(10, 4), (11, 5)])
def test_a_tar_cut_between_members_is_still_truncated(demo_shards: dict[str, str], tmp_path: Path, members: int, whole: int) -> None:
    folder = copy_set(demo_shards["images-val"], tmp_path / "cut")
    shards = sorted(folder.glob("shard-*.tar"))
    truncate_between_members(shards[0], keep_members=members)  # jpg + json per sample; no end-of-archive block
    loader = eval_loader(LoaderConfig(shards=[str(folder)], batch_size=64, num_workers=0))
    keys = [key for batch in loader for key in batch["key"]]
    # the last sample before the cut may have had more members after it: only the ones known whole
    # are kept, and the cut-off one is not decoded (not counted as corrupt)
    assert len(keys) == read_manifest(folder).num_samples - read_manifest(folder).shards[0].samples + whole
    assert loader.skipped == {"corrupt_sample": 0, "truncated_shard": 1}
    assert verify_sets([str(folder)]) is False


@pytest.mark.parametrize("loader", [train_loader, eval_loader])
def test_every_shard_unreadable_is_one_clear_error(demo_shards: dict[str, str], tmp_path: Path, loader) -> None:
    folder = copy_set(demo_shards["images-train"], tmp_path / "unreadable")
    for shard in folder.glob("shard-*.tar"):
        overwrite(shard)
    with pytest.raises(ConfigError, match="no readable") as raised:
        list(loader(LoaderConfig(shards=[str(folder)], batch_size=16, num_workers=2, shuffle_buffer=10)))
    message = str(raised.value)
    assert "\n" not in message and str(folder / "manifest.json") in message and "verify" in message  # one line naming the set


def test_every_sample_corrupt_is_one_clear_error(demo_shards: dict[str, str], tmp_path: Path) -> None:
    folder = copy_set(demo_shards["images-val"], tmp_path / "labels")
    for shard in folder.glob("shard-*.tar"):
        corrupt_every(shard, ".json", b"{not json")
    with pytest.raises(ConfigError, match="no usable sample") as raised:
        list(train_loader(LoaderConfig(shards=[str(folder)], batch_size=8, num_workers=2, shuffle_buffer=10)))
    assert "\n" not in str(raised.value) and str(folder / "manifest.json") in str(raised.value)
