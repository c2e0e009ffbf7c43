"""Open a build source by layout: the generic folder/label file, or a public dataset's own files.

Each public layout maps its label file onto :class:`~data_shards.schema.Labels` with the dataset's
AU ids and class names; docs/shards.md lists the files each one expects. Label files are read
line by line (never listed whole); paths are relative to the media folder. A line that cannot
be read is skipped and counted (``label_line``), naming the file and line; the build goes on.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable, Iterator

from data_shards.sample_keys import sample_key
from data_shards.schema import Labels
from data_shards.sources import SkipLog, Source, SourceItem, folder_source, label_file_source
from plumbing.recipes import ConfigError

BP4D_AUS = ["1", "2", "4", "6", "7", "10", "12", "14", "15", "17", "23", "24"]
DISFA_AUS = ["1", "2", "4", "6", "9", "12", "25", "26"]
RAFDB_CLASSES = ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]
AFFECTNET_CLASSES = ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt"]
DFEW_CLASSES = ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]
MAFW_CLASSES = ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt", "anxiety", "helplessness", "disappointment"]
FERV39K_CLASSES = ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
FMAE_DATASETS = {"bp4d": BP4D_AUS, "bp4d_plus": BP4D_AUS, "disfa": DISFA_AUS}
CLIP_LAYOUTS = {"dfew": DFEW_CLASSES, "mafw": MAFW_CLASSES, "ferv39k": FERV39K_CLASSES}
LAYOUTS = ["folder", *FMAE_DATASETS, "rafdb", "affectnet", *CLIP_LAYOUTS]


FMAE_INACTIVE = 999
"""FMAE-IAT's label files list every AU of the dataset in order: its number when active, 999 when not."""

FMAE_SUBJECTS = {
    "bp4d": (lambda path: path[1:4], re.compile(r"[FM]\d{2}"), "img_path[1:4] of 2F01_T5/frame_12.jpg = F01"),
    "bp4d_plus": (lambda path: path[0:4], re.compile(r"[FM]\d{3}"), "img_path[0:4] of F001_T1/frame_12.jpg = F001"),
    "disfa": (lambda path: path.split("/")[0][-5:], re.compile(r"SN\d{3}"), "the end of the first folder of RightVideoSN001/frame_12.jpg = SN001"),
}
"""How FMAE-IAT's util/datasets.py derives the person from ``img_path``, the form it must have, and an example."""


class LineError(ValueError):
    """One label line cannot be read; the source skips and counts it."""


def _lines(path: str) -> Iterator[tuple[int, str]]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label file not found: {path}")
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                yield number, line.strip()


def _skipping(path: str, skips: SkipLog, parse: Callable[[int, str], SourceItem | None]) -> Iterator[SourceItem]:
    """``parse(number, line)`` of every line of ``path``; a :class:`LineError` skips and counts that line."""
    for number, line in _lines(path):
        try:
            item = parse(number, line)
        except LineError as err:
            skips.skip("label_line", f"{path}:{number}", str(err))
            continue
        if item is not None:
            yield item


def fmae_subject(img_path: str, dataset: str) -> str:
    """The person of an FMAE-IAT ``img_path``, derived as its util/datasets.py does (BP4D ``2F01_T5/...`` -> F01, BP4D+ ``F001_T1/...`` -> F001, DISFA ``RightVideoSN001/...`` -> SN001)."""
    derive, form, example = FMAE_SUBJECTS[dataset]
    subject = derive(img_path.replace("\\", "/"))
    if not form.fullmatch(subject):
        raise LineError(f"img_path {img_path!r} does not name a {dataset} person ({example})")
    return subject


def _fmae_aus(listed: object, au_ids: list[str], dataset: str) -> dict[str, int]:
    if isinstance(listed, dict):  # intensities (DISFA 0-5): active from 2, as the reference binarises them
        try:
            active = {str(au) for au, value in listed.items() if float(value) >= 2}
        except (TypeError, ValueError) as err:
            raise LineError(f"AU intensities {listed!r} are not numbers") from err
    elif isinstance(listed, list) and all(isinstance(au, int) and not isinstance(au, bool) for au in listed):
        active = {str(au) for au in listed if au != FMAE_INACTIVE}
    else:
        raise LineError(f"'AUs' must be a list of AU numbers (999 = inactive) or a mapping of intensities, not {listed!r}")
    unknown = active - set(au_ids)
    if unknown:
        raise LineError(f"AUs {sorted(unknown, key=int)} are not {dataset} AUs {au_ids}")
    return {au: int(au in active) for au in au_ids}


def fmae_source(media: str, labels: str, dataset: str, source_name: str) -> Source:
    """FMAE-IAT's JSONL: ``{"img_path": "2F01_T5/frame_12.jpg", "AUs": [1, 999, 4, ...]}`` (active AU numbers, 999 = inactive).

    ``"AUs"`` may also map AUs to intensities (active when >= 2). The subject is the person, as
    the reference derives it from ``img_path`` (:data:`FMAE_SUBJECTS`), so folds never split one.
    """
    au_ids = FMAE_DATASETS[dataset]

    def parse(number: int, line: str) -> SourceItem:
        try:
            row = json.loads(line)
            img_path, listed = str(row["img_path"]), row["AUs"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise LineError(f"expected JSON with 'img_path' and 'AUs' ({type(err).__name__}: {err})") from err
        labels = Labels(subject=fmae_subject(img_path, dataset), source=source_name, aus=_fmae_aus(listed, au_ids, dataset), origin=img_path)
        return SourceItem(sample_key(img_path), os.path.join(media, img_path), labels)

    return Source(lambda skips: _skipping(labels, skips, parse), au_ids, [])


def rafdb_source(media: str, labels: str, split: str, source_name: str) -> Source:
    """RAF-DB ``list_patition_label.txt`` (``train_00001.jpg 5``, classes 1-7); ``split`` keeps train_ or test_ lines.

    The image is ``media/<name>`` or, for the aligned set, ``media/<stem>_aligned.jpg``.
    """

    def parse(number: int, line: str) -> SourceItem | None:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or not 1 <= int(parts[1]) <= 7:
            raise LineError(f"expected '<image> <label 1-7>', got {line!r}")
        name = parts[0]
        if split and not name.startswith(f"{split}_"):
            return None
        path = os.path.join(media, name)
        if not os.path.exists(path):
            path = os.path.join(media, f"{os.path.splitext(name)[0]}_aligned.jpg")
        return SourceItem(sample_key(name), path, Labels(source=source_name, expression=int(parts[1]) - 1, origin=name))

    return Source(lambda skips: _skipping(labels, skips, parse), [], RAFDB_CLASSES)


def affectnet_source(media: str, labels: str, source_name: str) -> Source:
    """AffectNet ``training.csv``/``validation.csv``: path, face box, expression 0-7 (8-9 unlabelled, 10 no face), valence/arousal (-2 = none)."""

    def read(skips: SkipLog) -> Iterator[SourceItem]:
        if not os.path.isfile(labels):
            raise FileNotFoundError(f"label file not found: {labels}")
        with open(labels, newline="", encoding="utf-8-sig", errors="replace") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                try:
                    expression = int(row["expression"])
                    valence, arousal = float(row["valence"]), float(row["arousal"])
                    box = tuple(int(float(row[k])) for k in ("face_x", "face_y", "face_width", "face_height"))
                    path = row["subDirectory_filePath"]
                except (KeyError, ValueError, TypeError) as err:
                    skips.skip("label_line", f"{labels}:{reader.line_num}", f"not an AffectNet row ({type(err).__name__}: {err})")
                    continue
                if expression == 10:
                    continue
                has_va = -1.0 <= valence <= 1.0 and -1.0 <= arousal <= 1.0
                labels_ = Labels(source=source_name, expression=expression if 0 <= expression < 8 else None,
                                 valence=valence if has_va else None, arousal=arousal if has_va else None, origin=path)
                crop = (box[0], box[1], box[0] + box[2], box[1] + box[3]) if box[2] > 0 and box[3] > 0 else None
                yield SourceItem(sample_key(path), os.path.join(media, path), labels_, crop)

    return Source(read, [], AFFECTNET_CLASSES)


def clip_list_source(media: str, labels: str, layout: str, source_name: str) -> Source:
    """DFEW / MAFW / FERV39K clip lists: ``<clip> <label>`` per line (comma or space separated, an optional header).

    Labels are 1-based indices (DFEW, MAFW), 0-based (FERV39K) or class names. The clip is the
    frame folder ``media/<clip>`` (``<clip>`` without a video suffix, DFEW's zero-padded to 5 digits) or a video file.
    """
    classes = CLIP_LAYOUTS[layout]
    first_index = 0 if layout == "ferv39k" else 1

    def parse(number: int, line: str) -> SourceItem | None:
        parts = [p for p in re.split(r"[,\s]+", line) if p]
        if len(parts) < 2:
            raise LineError(f"expected '<clip> <label>', got {line!r}")
        name, label = parts[0], parts[-1].lower()
        if number == 1 and not label.isdigit() and label not in classes:
            return None  # a header such as "video_name,label"
        if label.isdigit():
            expression = int(label) - first_index
        elif label in classes:
            expression = classes.index(label)
        else:
            raise LineError(f"label {label!r} is not a {layout} class {classes}")
        if not 0 <= expression < len(classes):
            raise LineError(f"label {label} is outside the {len(classes)} {layout} classes")
        return SourceItem(sample_key(name), _clip_path(media, name, layout), Labels(source=source_name, expression=expression, origin=name))

    return Source(lambda skips: _skipping(labels, skips, parse), [], classes, whole_clips=True)


def _clip_path(media: str, name: str, layout: str) -> str:
    stem = os.path.splitext(name)[0] if name.lower().endswith((".mp4", ".avi")) else name
    for candidate in (stem, stem.zfill(5) if layout == "dfew" and stem.isdigit() else stem, name):
        if os.path.exists(os.path.join(media, candidate)):
            return os.path.join(media, candidate)
    return os.path.join(media, stem)


def open_source(
    layout: str, media: str, labels: str, modality: str, source_name: str, au_ids: list[str], class_names: list[str],
    subject_from_folder: bool = False, split: str = "",
) -> Source:
    """The source of ``layout`` over ``media`` with label file ``labels``."""
    if not os.path.isdir(media):
        raise NotADirectoryError(f"media folder not found: {media}")
    if layout != "folder" and not labels:
        raise ConfigError(f"layout={layout!r} needs --labels (its label file)")
    if layout in CLIP_LAYOUTS and modality != "clip" or layout in ("rafdb", "affectnet", *FMAE_DATASETS) and modality != "image":
        raise ConfigError(f"layout={layout!r} does not hold modality={modality!r} samples")
    if layout == "folder":
        if labels:
            return label_file_source(media, labels, source_name, au_ids, class_names)
        return folder_source(media, modality, source_name, subject_from_folder=subject_from_folder)
    if layout in FMAE_DATASETS:
        return fmae_source(media, labels, layout, source_name)
    if layout == "rafdb":
        return rafdb_source(media, labels, split, source_name)
    if layout == "affectnet":
        return affectnet_source(media, labels, source_name)
    if layout in CLIP_LAYOUTS:
        return clip_list_source(media, labels, layout, source_name)
    raise ConfigError(f"layout={layout!r}: unknown; expected one of {LAYOUTS}")
