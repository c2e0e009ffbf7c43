"""Where build inputs come from: a folder of images or clips, optionally with a label file.

A :class:`Source` streams :class:`SourceItem` values (a key, a media path, its labels) without
listing the dataset in memory, and carries the label vocabulary (AU ids, class names) the
manifest records. The generic label file is CSV or JSONL with a ``path`` column relative to the
media folder (see docs/shards.md); public datasets' own layouts are read by
:mod:`data_shards.importers`.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_shards.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, sample_key
from data_shards.schema import MISSING_AU, Labels
from plumbing.recipes import ConfigError


@dataclass
class SourceItem:
    """One input: its sample key, the media path (image, frame folder or video), labels, an optional face box (l, t, r, b)."""

    key: str
    path: str
    labels: Labels
    box: tuple[int, int, int, int] | None = None


@dataclass
class Source:
    """A re-iterable stream of inputs plus the label vocabulary of the shard set."""

    items: Callable[[], Iterator[SourceItem]]
    au_ids: list[str]
    class_names: list[str]


def walk_media(root: str, modality: str) -> Iterator[str]:
    """Relative paths of images (or of clips: frame folders and video files) under ``root``, streamed."""
    if not os.path.isdir(root):
        raise NotADirectoryError(f"media folder not found: {root}")
    pending = [""]
    while pending:
        relative = pending.pop()
        with os.scandir(os.path.join(root, relative)) as entries:
            has_frames = False
            for entry in entries:
                rel = os.path.join(relative, entry.name)
                lower = entry.name.lower()
                if entry.is_dir():
                    pending.append(rel)
                elif modality == "image" and lower.endswith(IMAGE_SUFFIXES):
                    yield rel
                elif modality == "clip" and lower.endswith(VIDEO_SUFFIXES):
                    yield rel
                elif modality == "clip" and lower.endswith(IMAGE_SUFFIXES):
                    has_frames = True
            if has_frames and relative:
                yield relative


def folder_source(root: str, modality: str, source_name: str, subject_from_folder: bool) -> Source:
    """Every image (or clip) under ``root``, unlabelled; optionally the parent folder is the subject."""

    def items() -> Iterator[SourceItem]:
        for rel in walk_media(root, modality):
            parent = os.path.basename(os.path.dirname(rel.rstrip(os.sep)))
            subject = parent if subject_from_folder and parent else None
            yield SourceItem(sample_key(rel), os.path.join(root, rel), Labels(subject=subject, source=source_name))

    return Source(items, [], [])


def _rows(path: str) -> Iterator[dict[str, Any]]:
    suffix = Path(path).suffix.lower()
    with open(path, newline="") as handle:
        if suffix == ".csv":
            yield from csv.DictReader(handle)
            return
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as err:
                    raise ConfigError(f"{path}:{number}: not valid JSON ({err.msg})") from err


def _row_aus(row: dict[str, Any]) -> dict[str, int]:
    if isinstance(row.get("aus"), dict):
        return {str(au): int(value) for au, value in row["aus"].items()}
    aus = {}
    for column, value in row.items():
        if column.upper().startswith("AU") and column[2:].isdigit():
            aus[column[2:]] = MISSING_AU if value in ("", None) else int(float(value))
    return aus


def _optional_float(value: Any) -> float | None:
    return None if value in ("", None) else float(value)


def _expression_index(value: Any, class_index: dict[str, int], where: str) -> int | None:
    if value in ("", None):
        return None
    text = str(value)
    if text.lstrip("-").isdigit():
        return None if int(text) < 0 else int(text)
    if text not in class_index:
        raise ConfigError(f"{where}: expression {text!r} is not one of {list(class_index)}")
    return class_index[text]


def label_file_source(root: str, labels_path: str, source_name: str, au_ids: list[str], class_names: list[str]) -> Source:
    """Inputs listed by a generic CSV/JSONL label file; AU ids and class names are scanned when not given."""
    if not os.path.isfile(labels_path):
        raise FileNotFoundError(f"label file not found: {labels_path}")
    if not au_ids or not class_names:
        seen_aus: set[str] = set()
        seen_classes: set[str] = set()
        max_index = -1
        for number, row in enumerate(_rows(labels_path), 1):
            if "path" not in row:
                raise ConfigError(f"{labels_path}:{number}: missing the 'path' column")
            seen_aus.update(_row_aus(row))
            value = row.get("expression")
            if isinstance(value, str) and value and not value.lstrip("-").isdigit():
                seen_classes.add(value)
            elif value not in ("", None):
                max_index = max(max_index, int(value))
        au_ids = au_ids or sorted(seen_aus, key=lambda au: (len(au), au))
        class_names = class_names or sorted(seen_classes) or [str(i) for i in range(max_index + 1)]
    class_index = {name: i for i, name in enumerate(class_names)}

    def items() -> Iterator[SourceItem]:
        for number, row in enumerate(_rows(labels_path), 1):
            expression_index = _expression_index(row.get("expression"), class_index, f"{labels_path}:{number}")
            labels = Labels(
                subject=str(row["subject"]) if row.get("subject") not in ("", None) else None,
                source=str(row.get("source") or source_name),
                aus={au: value for au, value in _row_aus(row).items() if au in au_ids},
                expression=expression_index,
                valence=_optional_float(row.get("valence")),
                arousal=_optional_float(row.get("arousal")),
            )
            key = str(row.get("key") or sample_key(str(row["path"])))
            yield SourceItem(key, os.path.join(root, str(row["path"])), labels)

    return Source(items, list(au_ids), list(class_names))
