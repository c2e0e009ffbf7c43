"""A build survives any folder a new user points it at: nothing half-written, nothing silently lost.

Each case was found by trying it: a non-UTF-8 file name, symlink loops (file and folder), a
114-character file name, a malformed label line late in a file with --vocab, inputs too small.
Every case ends with a whole shard set (manifest, no temporary files, verify passes, the loader
reads every sample) and every skip counted in the manifest and named on the final line.
"""

import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_shards.build import BuildConfig
from data_shards.cli import build
from data_shards.loaders import LoaderConfig, eval_loader
from data_shards.manifest import read_manifest
from data_shards.sample_keys import MAX_KEY, sample_key
from data_shards.verify import verify_sets


def _photo(path: Path, value: int, size: int = 72) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size, size, 3), value, dtype=np.uint8)
    pixels[size // 3 : size // 2, :, 1] = 255 - value
    Image.fromarray(pixels).save(path, quality=95)


def _build(media: Path, out: Path, capsys: pytest.CaptureFixture, **kwargs) -> str:
    shards = kwargs.pop("shards", BuildConfig(img_size=64, samples_per_shard=2, progress=False))
    build(str(media), str(out), shards=shards, **kwargs)
    return capsys.readouterr().out


def _labels(out: Path) -> list[dict]:
    """Every sample's labels, read with the standard library."""
    found = []
    for path in read_manifest(out).shard_paths():
        with tarfile.open(path) as tar:
            found += [json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")]
    return found


def _assert_whole(out: Path, expected_samples: int) -> list[str]:
    """The set is whole: a manifest, no temporary file, verify passes, the loader reads every sample; returns the keys."""
    manifest = read_manifest(out)
    assert manifest.num_samples == expected_samples
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]
    assert verify_sets([str(out)])
    loader = eval_loader(LoaderConfig(shards=[manifest.path], batch_size=4, num_workers=0))
    keys = [key for batch in loader for key in batch["key"]]
    assert len(keys) == len(set(keys)) == expected_samples
    return keys


def test_a_non_utf8_file_name_gives_a_safe_key_and_keeps_its_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    media = tmp_path / "photos"
    for i in range(4):
        _photo(media / f"p{i}.jpg", 40 * i)
    raw_name = os.path.join(os.fsencode(media), b"caf\xe9 d\xe9j\xe0 vu.jpg")  # Latin-1 bytes: not UTF-8
    Image.fromarray(np.full((72, 72, 3), 200, dtype=np.uint8)).save(os.fsdecode(raw_name))
    _build(media, tmp_path / "out", capsys)
    keys = _assert_whole(tmp_path / "out", 5)
    odd = [key for key in keys if key.startswith("caf")]
    assert len(odd) == 1 and odd[0].isascii() and "." not in odd[0]
    assert "caf\\xe9 d\\xe9j\\xe0 vu.jpg" in {label["origin"] for label in _labels(tmp_path / "out")}


def test_symlink_loops_and_repeated_folders_are_skipped_and_counted(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    media = tmp_path / "photos"
    for i in range(3):
        _photo(media / "people" / f"p{i}.jpg", 50 * i)
    os.symlink("..", media / "people" / "back_up")  # a folder loop: people/back_up/people/back_up/...
    os.symlink(media / "people", media / "again")  # the same folder a second time
    os.symlink("b.jpg", media / "a.jpg")  # a file loop: a.jpg -> b.jpg -> a.jpg
    os.symlink("a.jpg", media / "b.jpg")
    os.symlink("nowhere.jpg", media / "dangling.jpg")
    line = _build(media, tmp_path / "out", capsys)
    _assert_whole(tmp_path / "out", 3)
    skipped = read_manifest(tmp_path / "out").counts.skipped
    assert skipped["link_loop"] == 3 and skipped["broken_link"] == 1
    assert skipped.get("repeated_folder", 0) + skipped["link_loop"] == 4  # "again" or "people", whichever is met second
    assert "skipped (link loop)" in line and "skipped (broken link)" in line


def test_a_long_file_name_builds_and_keeps_its_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    media = tmp_path / "photos"
    long_name = "interview_" + "very_long_description_" * 4 + "x" * 12 + ".jpg"
    assert len(long_name) == 114
    _photo(media / long_name, 90)
    _photo(media / "short.jpg", 30)
    _build(media, tmp_path / "out", capsys, shards=BuildConfig(img_size=64, samples_per_shard=2, progress=False))
    keys = _assert_whole(tmp_path / "out", 2)
    (long_key,) = [key for key in keys if key.startswith("interview")]
    assert len(long_key) <= MAX_KEY and long_key == sample_key(long_name)
    assert long_name in {label["origin"] for label in _labels(tmp_path / "out")}


def test_a_malformed_label_line_late_in_the_file_is_skipped_named_and_counted(tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    media = tmp_path / "photos"
    rows = []
    for i in range(9):
        _photo(media / f"p{i}.jpg", 25 * i)
        rows.append(json.dumps({"path": f"p{i}.jpg", "subject": f"s{i % 3}", "aus": {"4": i % 2}, "expression": "happy"}))
    rows.insert(7, '{"path": "p9.jpg", "aus": {"4": 1}')  # cut short, line 8
    rows.append(json.dumps({"path": "p0.jpg", "expression": "furious"}))  # not in the vocabulary, line 11
    labels = tmp_path / "labels.jsonl"
    labels.write_text("\n".join(rows) + "\n")
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({"au_ids": ["4"], "class_names": ["happy", "sad"]}))
    line = _build(media, tmp_path / "out", capsys, labels=str(labels), vocab=str(vocab))
    _assert_whole(tmp_path / "out", 9)
    assert read_manifest(tmp_path / "out").counts.skipped == {"label_line": 2}
    assert "2 skipped (label line)" in line
    assert "labels.jsonl:8: not valid JSON" in caplog.text and "labels.jsonl:11: expression 'furious'" in caplog.text


def test_a_malformed_csv_row_is_skipped(tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    media = tmp_path / "photos"
    for i in range(3):
        _photo(media / f"p{i}.jpg", 60 * i)
    labels = tmp_path / "labels.csv"
    labels.write_text("path,subject,AU4\np0.jpg,a,1\np1.jpg,b,yes\np2.jpg,c,0,extra\n")
    line = _build(media, tmp_path / "out", capsys, labels=str(labels))
    _assert_whole(tmp_path / "out", 1)
    assert "2 skipped (label line)" in line and "labels.csv:3" in caplog.text and "labels.csv:4" in caplog.text


def test_inputs_too_small_are_reported_on_the_final_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    media = tmp_path / "photos"
    _photo(media / "big.jpg", 80, size=96)
    _photo(media / "tiny1.jpg", 80, size=20)
    _photo(media / "tiny2.jpg", 80, size=30)
    (media / "broken.jpg").write_bytes(b"not a jpeg at all")
    line = _build(media, tmp_path / "out", capsys)
    _assert_whole(tmp_path / "out", 1)
    assert "2 below min size" in line and "1 unreadable or missing" in line
