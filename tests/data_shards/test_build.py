"""Building: job-array parts and merge, resume keeps finished shards, no half shard looks whole, size filter."""

import json
import os
from pathlib import Path

import pytest

from data_shards.build import BuildConfig, build_shards, merge_parts
from data_shards.clip_windows import ClipWindowing
from data_shards.manifest import read_manifest
from data_shards.sample_makers import Preparation
from data_shards.shard_writer import ShardJob, write_shard
from data_shards.sources import label_file_source
from data_shards.synth import AU_IDS, CLASS_NAMES, synth_dataset
from plumbing.recipes import ConfigError, validate


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    synth_dataset(str(root), images=120, clips=0, img_size=64, frames=1, seed=1)
    return root


def _source(raw: Path):
    return label_file_source(str(raw / "images"), str(raw / "images-train.jsonl"), "synth", AU_IDS, CLASS_NAMES)


def _config(**overrides) -> BuildConfig:
    return BuildConfig(**{"img_size": 64, "samples_per_shard": 10, "progress": False, **overrides})


def test_single_build_writes_manifest_with_counts(raw: Path, tmp_path: Path) -> None:
    report = build_shards(_source(raw), str(tmp_path / "set"), "image", _config(workers=2))
    manifest = read_manifest(report.manifest)
    lines = (raw / "images-train.jsonl").read_text().splitlines()
    assert manifest.num_samples == len(lines) == manifest.counts.samples
    assert len(manifest.shards) == -(-len(lines) // 10)
    assert manifest.au_ids == AU_IDS and manifest.class_names == CLASS_NAMES
    assert manifest.counts.with_aus == len(lines) and sum(manifest.counts.expression.values()) == len(lines)
    assert all(len(shard.sha256) == 64 for shard in manifest.shards)


def test_job_array_parts_then_merge_equal_a_single_build(raw: Path, tmp_path: Path) -> None:
    single = read_manifest(build_shards(_source(raw), str(tmp_path / "one"), "image", _config()).manifest)
    first = build_shards(_source(raw), str(tmp_path / "parts"), "image", _config(num_parts=3, part=0))
    assert first.manifest == "" and not (tmp_path / "parts" / "manifest.json").exists()
    with pytest.raises(FileNotFoundError, match="data_shards merge"):
        read_manifest(tmp_path / "parts")
    with pytest.raises(FileNotFoundError, match=r"parts \[1, 2\] of 3"):
        merge_parts(str(tmp_path / "parts"))
    os.environ["SLURM_ARRAY_TASK_ID"] = "2"
    try:
        build_shards(_source(raw), str(tmp_path / "parts"), "image", _config(num_parts=3))
    finally:
        del os.environ["SLURM_ARRAY_TASK_ID"]
    last = build_shards(_source(raw), str(tmp_path / "parts"), "image", _config(num_parts=3, part=1))
    assert last.manifest  # the last part to finish merges
    merged = read_manifest(tmp_path / "parts")
    assert [s.sha256 for s in merged.shards] == [s.sha256 for s in single.shards]
    assert merged.subjects == single.subjects and merged.counts == single.counts


def test_resume_keeps_finished_shards_and_redoes_missing(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "set"
    build_shards(_source(raw), str(out), "image", _config())
    (out / "shard-000003.tar").unlink()
    (out / ".shard-000005.tar.tmp-999").write_bytes(b"half a shard")  # left by a killed writer
    (out / ".shard-000006.tar.json.tmp-999").write_bytes(b"{")
    report = build_shards(_source(raw), str(out), "image", _config())
    assert report.shards_written == 1 and report.shards_kept == len(read_manifest(out).shards) - 1
    assert (out / "shard-000003.tar").is_file()
    assert not list(out.glob(".*tmp*"))  # the re-run removed the killed writers' temporaries


def test_interrupted_writer_leaves_no_shard_that_looks_whole(raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import data_shards.sample_makers as sample_makers

    real_encode, calls = sample_makers.encode_jpeg, []

    def killed_on_third(pixels, quality):  # the process is interrupted while writing the third sample
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_encode(pixels, quality)

    monkeypatch.setattr(sample_makers, "encode_jpeg", killed_on_third)
    job = ShardJob(0, list(_source(raw).items())[:5], str(tmp_path), Preparation("image", 64, 64, 90, ClipWindowing()))
    with pytest.raises(KeyboardInterrupt):
        write_shard(job)
    assert not (tmp_path / "shard-000000.tar").exists() and not (tmp_path / "shard-000000.tar.json").exists()
    assert list(tmp_path.iterdir()) == []  # the temporary file is removed on the way out too


def test_small_and_unreadable_inputs_are_dropped_and_counted(raw: Path, tmp_path: Path) -> None:
    lines = (raw / "images-train.jsonl").read_text().splitlines()[:4]
    (raw / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    rows = lines + [json.dumps({"path": "broken.jpg"}), json.dumps({"path": "missing.jpg"})]
    labels = tmp_path / "labels.jsonl"
    labels.write_text("\n".join(rows) + "\n")
    source = label_file_source(str(raw / "images"), str(labels), "synth", AU_IDS, CLASS_NAMES)
    manifest = read_manifest(build_shards(source, str(tmp_path / "ok"), "image", _config(min_size=0)).manifest)
    assert manifest.num_samples == 4 and manifest.counts.dropped_unreadable == 2
    with pytest.raises(ConfigError, match="no sample was written.*4 below min size, 2 unreadable"):
        build_shards(source, str(tmp_path / "big"), "image", _config(img_size=128))


def test_build_config_problems_name_keys() -> None:
    with pytest.raises(ConfigError) as caught:
        validate({"shards": BuildConfig(samples_per_shard=0, num_parts=2, part=5)})
    assert "shards.samples_per_shard=0" in str(caught.value) and "shards.part=5" in str(caught.value)
