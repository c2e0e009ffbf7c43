"""Open a build source by layout: the generic folder/label file, or a public dataset's own files.

Each public layout maps its label file onto :class:`~data_shards.schema.Labels` with the dataset's
AU ids and class names; docs/shards.md lists the files each one expects. Label files are read
line by line (never listed whole); paths are relative to the media folder.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator

from data_shards.media import sample_key
from data_shards.schema import Labels
from data_shards.sources import Source, SourceItem, folder_source, label_file_source
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


def _lines(path: str) -> Iterator[tuple[int, str]]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label file not found: {path}")
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                yield number, line.strip()


def fmae_subject(img_path: str, dataset: str) -> str:
    """The subject of an FMAE-style ``img_path``: ``F001/T1/0001.jpg`` -> F001; DISFA ``LeftVideoSN001/...`` -> SN001."""
    first = img_path.replace("\\", "/").split("/")[0]
    if dataset == "disfa":
        match = re.search(r"SN\d{3}", first)
        return match.group(0) if match else first
    return first


def fmae_source(media: str, labels: str, dataset: str, source_name: str) -> Source:
    """FMAE-style JSONL (``{"img_path": ..., "AUs": [active AU numbers]}`` or ``{"AUs": {au: intensity}}``).

    AUs not listed are inactive. Intensities (DISFA's 0-5) count as active when >= 2.
    """
    au_ids = FMAE_DATASETS[dataset]

    def items() -> Iterator[SourceItem]:
        for number, line in _lines(labels):
            try:
                row = json.loads(line)
                img_path, listed = row["img_path"], row["AUs"]
            except (json.JSONDecodeError, KeyError) as err:
                raise ConfigError(f"{labels}:{number}: expected JSON with 'img_path' and 'AUs' ({err})") from err
            if isinstance(listed, dict):
                active = {str(au) for au, value in listed.items() if float(value) >= 2}
            else:
                active = {str(au) for au in listed}
            unknown = active - set(au_ids)
            if unknown:
                raise ConfigError(f"{labels}:{number}: AUs {sorted(unknown)} are not {dataset} AUs {au_ids}")
            aus = {au: int(au in active) for au in au_ids}
            subject = fmae_subject(img_path, dataset)
            yield SourceItem(sample_key(img_path), os.path.join(media, img_path), Labels(subject=subject, source=source_name, aus=aus))

    return Source(items, au_ids, [])


def rafdb_source(media: str, labels: str, split: str, source_name: str) -> Source:
    """RAF-DB ``list_patition_label.txt`` (``train_00001.jpg 5``, classes 1-7); ``split`` keeps train_ or test_ lines.

    The image is ``media/<name>`` or, for the aligned set, ``media/<stem>_aligned.jpg``.
    """

    def items() -> Iterator[SourceItem]:
        for number, line in _lines(labels):
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit() or not 1 <= int(parts[1]) <= 7:
                raise ConfigError(f"{labels}:{number}: expected '<image> <label 1-7>', got {line!r}")
            name = parts[0]
            if split and not name.startswith(f"{split}_"):
                continue
            path = os.path.join(media, name)
            if not os.path.exists(path):
                path = os.path.join(media, f"{os.path.splitext(name)[0]}_aligned.jpg")
            yield SourceItem(sample_key(name), path, Labels(source=source_name, expression=int(parts[1]) - 1))

    return Source(items, [], RAFDB_CLASSES)


def affectnet_source(media: str, labels: str, source_name: str) -> Source:
    """AffectNet ``training.csv``/``validation.csv``: path, face box, expression 0-7 (8-9 unlabelled, 10 no face), valence/arousal (-2 = none)."""

    def items() -> Iterator[SourceItem]:
        if not os.path.isfile(labels):
            raise FileNotFoundError(f"label file not found: {labels}")
        with open(labels, newline="", encoding="utf-8-sig") as handle:
            for number, row in enumerate(csv.DictReader(handle), 2):
                try:
                    expression = int(row["expression"])
                    valence, arousal = float(row["valence"]), float(row["arousal"])
                    box = tuple(int(float(row[k])) for k in ("face_x", "face_y", "face_width", "face_height"))
                    path = row["subDirectory_filePath"]
                except (KeyError, ValueError) as err:
                    raise ConfigError(f"{labels}:{number}: not an AffectNet row ({err})") from err
                if expression == 10:
                    continue
                has_va = -1.0 <= valence <= 1.0 and -1.0 <= arousal <= 1.0
                labels_ = Labels(source=source_name, expression=expression if expression < 8 else None,
                                 valence=valence if has_va else None, arousal=arousal if has_va else None)
                crop = (box[0], box[1], box[0] + box[2], box[1] + box[3]) if box[2] > 0 and box[3] > 0 else None
                yield SourceItem(sample_key(path), os.path.join(media, path), labels_, crop)

    return Source(items, [], AFFECTNET_CLASSES)


def clip_list_source(media: str, labels: str, layout: str, source_name: str) -> Source:
    """DFEW / MAFW / FERV39K clip lists: ``<clip> <label>`` per line (comma or space separated, an optional header).

    Labels are 1-based indices (DFEW, MAFW), 0-based (FERV39K) or class names. The clip is the
    frame folder ``media/<clip>`` (``<clip>`` without a video suffix, DFEW's zero-padded to 5 digits) or a video file.
    """
    classes = CLIP_LAYOUTS[layout]
    first_index = 0 if layout == "ferv39k" else 1

    def items() -> Iterator[SourceItem]:
        for number, line in _lines(labels):
            parts = [p for p in re.split(r"[,\s]+", line) if p]
            if len(parts) < 2:
                raise ConfigError(f"{labels}:{number}: expected '<clip> <label>', got {line!r}")
            name, label = parts[0], parts[-1].lower()
            if number == 1 and not label.isdigit() and label not in classes:
                continue  # a header such as "video_name,label"
            if label.isdigit():
                expression = int(label) - first_index
            elif label in classes:
                expression = classes.index(label)
            else:
                raise ConfigError(f"{labels}:{number}: label {label!r} is not a {layout} class {classes}")
            if not 0 <= expression < len(classes):
                raise ConfigError(f"{labels}:{number}: label {label} is outside the {len(classes)} {layout} classes")
            yield SourceItem(sample_key(name), _clip_path(media, name, layout), Labels(source=source_name, expression=expression))

    return Source(items, [], classes)


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
        return folder_source(media, modality, source_name, subject_from_folder)
    if layout in FMAE_DATASETS:
        return fmae_source(media, labels, layout, source_name)
    if layout == "rafdb":
        return rafdb_source(media, labels, split, source_name)
    if layout == "affectnet":
        return affectnet_source(media, labels, source_name)
    if layout in CLIP_LAYOUTS:
        return clip_list_source(media, labels, layout, source_name)
    raise ConfigError(f"layout={layout!r}: unknown; expected one of {LAYOUTS}")
