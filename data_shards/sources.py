"""Where build inputs come from: a folder of images or clips, optionally with a label file.

A :class:`Source` streams :class:`SourceItem` values (a key, a media path, its labels) without
listing the dataset in memory, and carries the label vocabulary (AU ids, class names) the
manifest records. The generic label file is CSV or JSONL with a ``path`` column relative to the
media folder (see docs/shards.md); public datasets' own layouts are read by
:mod:`data_shards.importers`.

A source survives any folder: a malformed label line, a symlink that loops, a folder reached a
second time through a link or a folder it may not read is skipped, counted by reason in
:class:`SkipLog` (the manifest's ``counts.skipped``) and named in a warning (the first few of
each reason), never a traceback half-way through a build.
"""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_shards.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from data_shards.sample_keys import display_path, sample_key
from data_shards.schema import MISSING_AU, Labels

log = logging.getLogger(__name__)


class SkipLog:
    """Inputs a source passed over, counted by reason; the first ``shown`` of each reason are warned about."""

    def __init__(self, shown: int = 3) -> None:
        self.counts: dict[str, int] = {}
        self.first: dict[str, str] = {}
        self.shown = shown

    def skip(self, reason: str, where: str, why: str) -> None:
        """Count one skipped input of kind ``reason`` at ``where`` (a path, or ``file:line``) because of ``why``."""
        count = self.counts.get(reason, 0) + 1
        self.counts[reason] = count
        self.first.setdefault(reason, f"{where}: {why}")
        if count <= self.shown:
            log.warning("skipping %s: %s", where, why)
        elif count == self.shown + 1:
            log.warning("more inputs skipped for the same reason (%s); the manifest counts them all", reason.replace("_", " "))


@dataclass
class SourceItem:
    """One input: its sample key, the media path (image, frame folder or video), labels, an optional face box (l, t, r, b)."""

    key: str
    path: str
    labels: Labels
    box: tuple[int, int, int, int] | None = None


@dataclass
class Source:
    """A re-iterable stream of inputs plus the label vocabulary of the shard set.

    ``read(skips)`` streams the inputs and counts what it passes over in ``skips``.
    ``whole_clips``: each clip input carries one label for its whole length (labelled clip sets),
    so it is stored as one clip rather than cut into windows.
    """

    read: Callable[[SkipLog], Iterator[SourceItem]]
    au_ids: list[str]
    class_names: list[str]
    whole_clips: bool = False
    skips: SkipLog = field(default_factory=SkipLog)

    def items(self) -> Iterator[SourceItem]:
        """Stream the inputs; ``skips`` starts afresh and counts this pass's skipped inputs."""
        self.skips = SkipLog()
        return self.read(self.skips)


def _link_problem(path: str) -> str | None:
    """Why the symlink at ``path`` cannot be followed (a loop, a dangling target), or None."""
    try:
        os.stat(path)
    except OSError as err:
        return "link_loop" if err.errno == errno.ELOOP else "broken_link"
    return None


def walk_media(root: str, modality: str, skips: SkipLog | None = None) -> Iterator[str]:
    """Relative paths of images (or of clips: frame folders and video files) under ``root``, streamed.

    Symlinks are followed, but a folder is entered once (a link back to it or to an ancestor is
    skipped), and links that loop or dangle are skipped; all of them are counted in ``skips``.
    """
    if not os.path.isdir(root):
        raise NotADirectoryError(f"media folder not found: {root}")
    skips = skips or SkipLog()
    top = os.stat(root)
    seen = {(top.st_dev, top.st_ino)}
    pending: list[tuple[str, frozenset[tuple[int, int]]]] = [("", frozenset(seen))]
    while pending:
        relative, ancestors = pending.pop()
        try:
            entries = list(os.scandir(os.path.join(root, relative)))
        except OSError as err:
            skips.skip("unreadable_folder", display_path(os.path.join(root, relative)), err.strerror or str(err))
            continue
        has_frames = False
        for entry in entries:
            rel = os.path.join(relative, entry.name)
            if entry.is_symlink():
                problem = _link_problem(entry.path)
                if problem:
                    skips.skip(problem, display_path(entry.path), "a symlink that loops" if problem == "link_loop" else "a symlink to nothing")
                    continue
            lower = entry.name.lower()
            if entry.is_dir():
                info = entry.stat()
                identity = (info.st_dev, info.st_ino)
                if identity in seen:
                    reason = "link_loop" if identity in ancestors else "repeated_folder"
                    skips.skip(reason, display_path(entry.path), "a link to a folder that is read already")
                    continue
                seen.add(identity)
                pending.append((rel, ancestors | {identity}))
            elif modality == "image" and lower.endswith(IMAGE_SUFFIXES):
                yield rel
            elif modality == "clip" and lower.endswith(VIDEO_SUFFIXES):
                yield rel
            elif modality == "clip" and lower.endswith(IMAGE_SUFFIXES):
                has_frames = True
        if has_frames and relative:
            yield relative


def folder_source(root: str, modality: str, source_name: str, *, subject_from_folder: bool) -> Source:
    """Every image (or clip) under ``root``, unlabelled; optionally the parent folder is the subject."""

    def read(skips: SkipLog) -> Iterator[SourceItem]:
        for rel in walk_media(root, modality, skips):
            parent = os.path.basename(os.path.dirname(rel.rstrip(os.sep)))
            subject = display_path(parent) if subject_from_folder and parent else None
            labels = Labels(subject=subject, source=source_name, origin=display_path(rel))
            yield SourceItem(sample_key(rel), os.path.join(root, rel), labels)

    return Source(read, [], [])


def _jsonl_rows(path: str, skips: SkipLog) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                skips.skip("label_line", f"{path}:{number}", f"not valid JSON ({err.msg})")
                continue
            if not isinstance(row, dict):
                skips.skip("label_line", f"{path}:{number}", "not a JSON object")
                continue
            yield number, row


def _csv_rows(path: str, skips: SkipLog) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            if None in row:  # more fields than the header names
                skips.skip("label_line", f"{path}:{reader.line_num}", f"{len(row) - 1 + len(row[None])} fields, the header names {len(row) - 1}")
                continue
            yield reader.line_num, row


def label_rows(path: str, skips: SkipLog) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) of a generic label file: CSV with a header, or JSONL; malformed lines are skipped and counted."""
    if Path(path).suffix.lower() == ".csv":
        return _csv_rows(path, skips)
    return _jsonl_rows(path, skips)


def _row_aus(row: dict[str, Any]) -> dict[str, int]:
    if isinstance(row.get("aus"), dict):
        aus = {str(au): int(value) for au, value in row["aus"].items()}
    else:
        aus = {}
        for column, value in row.items():
            if column and column.upper().startswith("AU") and column[2:].isdigit():
                aus[column[2:]] = MISSING_AU if value in ("", None) else int(float(value))
    wrong = {au: value for au, value in aus.items() if value not in (0, 1, MISSING_AU)}
    if wrong:
        raise ValueError(f"AU values {wrong} are not 1, 0 or {MISSING_AU}")
    return aus


def _optional_float(value: Any, low: float = -1.0, high: float = 1.0) -> float | None:
    if value in ("", None):
        return None
    number = float(value)
    if not low <= number <= high:
        raise ValueError(f"{number} is outside [{low}, {high}]")
    return number


def _expression_index(value: Any, class_index: dict[str, int]) -> int | None:
    if value in ("", None):
        return None
    text = str(value)
    if text.lstrip("-").isdigit():
        return None if int(text) < 0 else int(text)
    if text not in class_index:
        raise ValueError(f"expression {text!r} is not one of {list(class_index)}")
    return class_index[text]


def _scan_vocabulary(labels_path: str) -> tuple[list[str], list[str]]:
    """AU ids and class names found in a generic label file (its malformed lines are left to the build to count)."""
    seen_aus: set[str] = set()
    seen_classes: set[str] = set()
    max_index = -1
    for _, row in label_rows(labels_path, SkipLog(shown=0)):
        try:
            seen_aus.update(_row_aus(row))
        except (TypeError, ValueError):
            continue
        value = row.get("expression")
        if isinstance(value, str) and value and not value.lstrip("-").isdigit():
            seen_classes.add(value)
        elif isinstance(value, (int, str)) and value != "":
            max_index = max(max_index, int(value))
    au_ids = sorted(seen_aus, key=lambda au: (len(au), au))
    class_names = sorted(seen_classes) or [str(i) for i in range(max_index + 1)]
    return au_ids, class_names


def label_file_source(root: str, labels_path: str, source_name: str, au_ids: list[str], class_names: list[str]) -> Source:
    """Inputs listed by a generic CSV/JSONL label file; AU ids and class names are scanned when not given.

    A line that cannot be read (bad JSON, no ``path``, a value of the wrong type, an unknown class
    name) is skipped and counted as ``label_line``, naming the file and line.
    """
    if not os.path.isfile(labels_path):
        raise FileNotFoundError(f"label file not found: {labels_path}")
    if not au_ids or not class_names:
        scanned_aus, scanned_classes = _scan_vocabulary(labels_path)
        au_ids, class_names = au_ids or scanned_aus, class_names or scanned_classes
    class_index = {name: i for i, name in enumerate(class_names)}

    def read(skips: SkipLog) -> Iterator[SourceItem]:
        for number, row in label_rows(labels_path, skips):
            try:
                if not row.get("path"):
                    raise ValueError("no 'path'")
                labels = Labels(
                    subject=str(row["subject"]) if row.get("subject") not in ("", None) else None,
                    source=str(row.get("source") or source_name),
                    aus={au: value for au, value in _row_aus(row).items() if au in au_ids},
                    expression=_expression_index(row.get("expression"), class_index),
                    valence=_optional_float(row.get("valence")),
                    arousal=_optional_float(row.get("arousal")),
                    origin=str(row["path"]),
                )
            except (TypeError, ValueError, AttributeError) as err:
                skips.skip("label_line", f"{labels_path}:{number}", str(err))
                continue
            key = sample_key(str(row.get("key") or row["path"]))
            yield SourceItem(key, os.path.join(root, str(row["path"])), labels)

    return Source(read, list(au_ids), list(class_names), whole_clips=True)
