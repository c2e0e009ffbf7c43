"""Importers read each public layout from small fixture files written here (a few lines each)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_shards.build import BuildConfig
from data_shards.cli import build
from data_shards.importers import open_source
from data_shards.loaders import LoaderConfig, eval_loader
from data_shards.manifest import read_manifest
from plumbing.recipes import ConfigError


def _face(path: Path, size: tuple[int, int] = (96, 80), value: int = 120) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size[1], size[0], 3), value, dtype=np.uint8)
    pixels[size[1] // 3 : size[1] // 2, :, 0] = 250
    Image.fromarray(pixels).save(path, quality=95)


def _items(layout: str, media: Path, labels: Path, modality: str = "image", split: str = "") -> list:
    source = open_source(layout, str(media), str(labels), modality, layout, [], [], split=split)
    return source, list(source.items())


def _fmae_line(img_path: str, active: set[int], aus: list[int]) -> str:
    """A line as FMAE-IAT's AU/*_preprocess.py writes it: every AU of the dataset in order, 999 when inactive."""
    return json.dumps({"img_path": img_path, "AUs": [au if au in active else 999 for au in aus]}) + "\n"


BP4D_NUMBERS = [1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24]


@pytest.mark.parametrize(
    ("layout", "paths", "people"),
    [
        ("bp4d", ["2F01_T5/frame_12.jpg", "2F01_T7/frame_3.jpg", "2M12_T1/frame_40.jpg"], ["F01", "M12"]),
        ("bp4d_plus", ["F001_T1/frame_12.jpg", "F001_T8/frame_9.jpg", "M040_T3/frame_7.jpg"], ["F001", "M040"]),
    ],
)
def test_fmae_iat_jsonl_with_999s_builds_shards_whose_subjects_are_the_people(tmp_path: Path, layout: str, paths: list[str], people: list[str]) -> None:
    """Issue 11, error 4: the reference's own files (999 = inactive AU, subject = the person, not person x task) import."""
    for rel in paths:
        _face(tmp_path / "img" / rel, size=(240, 240))
    labels = tmp_path / f"{layout}_train1.json"
    actives = [{1, 12, 24}, set(), {4}]
    labels.write_text("".join(_fmae_line(rel, active, BP4D_NUMBERS) for rel, active in zip(paths, actives)))
    build(str(tmp_path / "img"), str(tmp_path / "shards"), labels=str(labels), layout=layout, shards=BuildConfig(img_size=64, progress=False))
    manifest = read_manifest(tmp_path / "shards")
    assert manifest.num_samples == 3 and manifest.subjects == people
    assert manifest.counts.subject == {people[0]: 2, people[1]: 1}  # two tasks of one person: one subject
    assert manifest.counts.au_positive == {au: int(au in {"1", "12", "24"}) + int(au == "4") for au in manifest.au_ids}
    batch = next(iter(eval_loader(LoaderConfig(shards=[manifest.path], batch_size=3, num_workers=0))))
    assert batch["aus"].sum().item() == 4 and not batch["aus"].isnan().any()


def test_fmae_iat_disfa_jsonl_999s_and_intensities(tmp_path: Path) -> None:
    _face(tmp_path / "img" / "RightVideoSN001" / "frame_12.jpg")
    _face(tmp_path / "img" / "RightVideoSN027" / "frame_3.jpg")
    labels = tmp_path / "DISFA_test1.json"
    labels.write_text(_fmae_line("RightVideoSN001/frame_12.jpg", {2, 12}, [1, 2, 4, 6, 9, 12, 25, 26])
                      + '{"img_path": "RightVideoSN027/frame_3.jpg", "AUs": {"1": 1, "2": 2, "12": 5, "26": 0}}\n')
    source, items = _items("disfa", tmp_path / "img", labels)
    assert [item.labels.subject for item in items] == ["SN001", "SN027"]
    assert [{au for au, v in item.labels.aus.items() if v} for item in items] == [{"2", "12"}, {"2", "12"}]
    assert source.au_ids == ["1", "2", "4", "6", "9", "12", "25", "26"]


def test_fmae_lines_that_do_not_fit_are_skipped_and_counted_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    _face(tmp_path / "img" / "2F01_T1" / "frame_1.jpg", size=(240, 240))
    labels = tmp_path / "bad.json"
    labels.write_text(
        _fmae_line("2F01_T1/frame_1.jpg", {1}, BP4D_NUMBERS)
        + '{"img_path": "2F01_T1/frame_2.jpg", "AUs": [5]}\n'  # AU 5 is no BP4D AU
        + '{"img_path": "F001/T1/0001.jpg", "AUs": [1]}\n'  # no BP4D person in the reference's form
        + '{"img_path": "2F01_T1/frame_3.jpg"\n'  # cut short
    )
    build(str(tmp_path / "img"), str(tmp_path / "shards"), labels=str(labels), layout="bp4d", shards=BuildConfig(img_size=64, progress=False))
    manifest = read_manifest(tmp_path / "shards")
    assert manifest.num_samples == 1 and manifest.counts.skipped == {"label_line": 3}
    assert "3 skipped (label line)" in capsys.readouterr().out
    assert "bad.json:2: AUs ['5'] are not bp4d AUs" in caplog.text and "bad.json:3: img_path 'F001/T1/0001.jpg'" in caplog.text
    assert "bad.json:4: expected JSON" in caplog.text


def test_rafdb_list_file_with_aligned_names_and_split(tmp_path: Path) -> None:
    _face(tmp_path / "aligned" / "train_00001_aligned.jpg")
    _face(tmp_path / "aligned" / "test_0001_aligned.jpg")
    labels = tmp_path / "list_patition_label.txt"
    labels.write_text("train_00001.jpg 5\ntest_0001.jpg 7\n")
    source, items = _items("rafdb", tmp_path / "aligned", labels, split="train")
    assert len(items) == 1 and items[0].labels.expression == 4 and source.class_names[4] == "sadness"
    assert items[0].path.endswith("train_00001_aligned.jpg")


def test_affectnet_csv_box_expression_and_valence(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _face(tmp_path / "imgs" / "689" / "a.jpg", size=(300, 300))
    _face(tmp_path / "imgs" / "689" / "b.jpg", size=(300, 300))
    _face(tmp_path / "imgs" / "689" / "c.jpg", size=(300, 300))
    labels = tmp_path / "training.csv"
    labels.write_text(
        "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"
        '689/a.jpg,20,30,240,240,"1;2;3",1,0.785,-0.055\n'
        "689/b.jpg,0,0,300,300,,8,-2,-2\n"
        "689/c.jpg,0,0,300,300,,10,-2,-2\n"
    )
    source, items = _items("affectnet", tmp_path / "imgs", labels)
    assert len(items) == 2 and items[0].box == (20, 30, 260, 270)
    assert (items[0].labels.expression, items[0].labels.valence) == (1, 0.785)
    assert items[1].labels.expression is None and items[1].labels.valence is None
    build(str(tmp_path / "imgs"), str(tmp_path / "shards"), labels=str(labels), layout="affectnet", shards=BuildConfig(progress=False))
    manifest = read_manifest(tmp_path / "shards")
    assert manifest.num_samples == 2 and manifest.class_names[7] == "contempt" and manifest.img_size == 224
    batch = next(iter(eval_loader(LoaderConfig(shards=[manifest.path], batch_size=2, num_workers=0))))
    assert batch["expression"].tolist() == [1, -1] and np.isnan(batch["valence"][1].item())
    assert batch["pixels"].shape == (2, 3, 224, 224)


@pytest.mark.parametrize(
    ("layout", "lines", "folders", "expected"),
    [
        ("dfew", "video_name,label\n1,1\n2,7\n", ["00001", "00002"], [0, 6]),
        ("mafw", "00025.mp4 anger\n00026.mp4 disappointment\n", ["00025", "00026"], [0, 10]),
        ("ferv39k", "Action/Film/0001 0\nAction/Film/0002 6\n", ["Action/Film/0001", "Action/Film/0002"], [0, 6]),
    ],
)
def test_clip_lists(tmp_path: Path, layout: str, lines: str, folders: list[str], expected: list[int]) -> None:
    for folder in folders:
        for t in range(3):
            _face(tmp_path / "frames" / folder / f"{t:05d}.jpg", size=(80, 80), value=60 * t)
    labels = tmp_path / "labels.txt"
    labels.write_text(lines)
    _, items = _items(layout, tmp_path / "frames", labels, modality="clip")
    assert [item.labels.expression for item in items] == expected
    assert all(Path(item.path).is_dir() for item in items)
    build(str(tmp_path / "frames"), str(tmp_path / "shards"), labels=str(labels), layout=layout, modality="clip", shards=BuildConfig(img_size=64, progress=False))
    manifest = read_manifest(tmp_path / "shards")
    loader = eval_loader(LoaderConfig(shards=[manifest.path], modality="clip", num_frames=4, batch_size=2, num_workers=0))
    batch = next(iter(loader))
    assert batch["pixels"].shape == (2, 3, 4, 64, 64) and batch["expression"].tolist() == expected


def test_generic_folder_with_jsonl_and_csv(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.jpg"):
        _face(tmp_path / "img" / name)
    jsonl = tmp_path / "labels.jsonl"
    jsonl.write_text(json.dumps({"path": "a.jpg", "subject": "p1", "aus": {"4": 1, "12": -1}, "expression": "happy"}) + "\n"
                     + json.dumps({"path": "b.jpg", "valence": 0.5, "arousal": -0.2}) + "\n")
    source, items = _items("folder", tmp_path / "img", jsonl)
    assert source.au_ids == ["4", "12"] and source.class_names == ["happy"]
    assert items[0].labels.aus == {"4": 1, "12": -1} and items[1].labels.valence == 0.5
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("path,subject,expression,AU1,AU2\na.jpg,p1,2,1,\nb.jpg,p2,,0,1\n")
    source, items = _items("folder", tmp_path / "img", csv_file)
    assert source.au_ids == ["1", "2"] and source.class_names == ["0", "1", "2"]
    assert items[0].labels.aus == {"1": 1, "2": -1} and items[1].labels.expression is None


def test_unlabelled_folder_with_subject_folders(tmp_path: Path) -> None:
    for rel in ("id_7/x.jpg", "id_7/y.png", "id_9/z.jpg"):
        _face(tmp_path / "celebs" / rel)
    source = open_source("folder", str(tmp_path / "celebs"), "", "image", "celebs", [], [], subject_from_folder=True)
    assert sorted(item.labels.subject for item in source.items()) == ["id_7", "id_7", "id_9"]


def test_layout_errors_name_the_problem(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    with pytest.raises(ConfigError, match="needs --labels"):
        open_source("rafdb", str(tmp_path / "m"), "", "image", "x", [], [])
    with pytest.raises(ConfigError, match="does not hold modality='image'"):
        open_source("dfew", str(tmp_path / "m"), "l.txt", "image", "x", [], [])
    with pytest.raises(NotADirectoryError, match="nope"):
        open_source("folder", str(tmp_path / "nope"), "", "image", "x", [], [])
