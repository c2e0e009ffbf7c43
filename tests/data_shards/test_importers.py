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


def test_fmae_jsonl_bp4d_lists_active_aus_and_subjects(tmp_path: Path) -> None:
    for rel in ("F001/T1/0001.jpg", "M012/T8/0420.jpg"):
        _face(tmp_path / "img" / rel)
    labels = tmp_path / "BP4D_train1.json"
    labels.write_text('{"img_path": "F001/T1/0001.jpg", "AUs": [1, 12, 24]}\n{"img_path": "M012/T8/0420.jpg", "AUs": []}\n')
    source, items = _items("bp4d", tmp_path / "img", labels)
    assert source.au_ids == ["1", "2", "4", "6", "7", "10", "12", "14", "15", "17", "23", "24"]
    assert [item.labels.subject for item in items] == ["F001", "M012"]
    assert [au for au, v in items[0].labels.aus.items() if v == 1] == ["1", "12", "24"]
    assert sum(items[1].labels.aus.values()) == 0 and len(items[1].labels.aus) == 12


def test_fmae_jsonl_disfa_intensity_two_or_more_is_active(tmp_path: Path) -> None:
    _face(tmp_path / "img" / "LeftVideoSN001" / "frame_12.jpg")
    labels = tmp_path / "DISFA_test1.json"
    labels.write_text('{"img_path": "LeftVideoSN001/frame_12.jpg", "AUs": {"1": 1, "2": 2, "12": 5, "26": 0}}\n')
    source, items = _items("disfa", tmp_path / "img", labels)
    assert items[0].labels.subject == "SN001"
    assert {au for au, v in items[0].labels.aus.items() if v} == {"2", "12"}
    assert source.au_ids == ["1", "2", "4", "6", "9", "12", "25", "26"]


def test_fmae_jsonl_rejects_foreign_aus(tmp_path: Path) -> None:
    labels = tmp_path / "bad.json"
    labels.write_text('{"img_path": "SN001/a.jpg", "AUs": [5]}\n')
    _face(tmp_path / "img" / "x.jpg")
    with pytest.raises(ConfigError, match=r"bad.json:1: AUs \['5'\]"):
        _items("disfa", tmp_path / "img", labels)


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
