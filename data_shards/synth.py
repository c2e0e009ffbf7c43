"""Synthetic labelled faces for demos and tests: identity-confounded train split, clean val/test.

Subjects are split subject-exclusively. In the train split each subject has a favourite
expression and two or three "habit" AUs that are active in most of its images, so identity
predicts AUs (the shortcut identity-adversarial training removes). In val and test, expressions
are uniform and extra AUs are drawn independently of the subject. Expressions are AU
combinations; clips are AU trajectories (onset to apex) with a little head drift. Everything is
a function of (seed, split, index): labels are exact and parallel generation is deterministic.
"""

from __future__ import annotations

import dataclasses
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_shards.build import BuildConfig, build_shards
from data_shards.media import encode_jpeg
from data_shards.sources import label_file_source
from data_shards.synth_faces import AU_IDS, Identity, Pose, render_face
from plumbing.files import write_json_atomic, write_text_atomic

CLASS_NAMES = ["neutral", "happiness", "sadness", "surprise", "fear", "anger", "disgust"]
EXPRESSION_AUS: dict[str, list[str]] = {
    "neutral": [],
    "happiness": ["6", "12", "25"],
    "sadness": ["1", "4", "15", "17"],
    "surprise": ["1", "2", "5", "26"],
    "fear": ["1", "2", "4", "5", "25"],
    "anger": ["4", "7", "17"],
    "disgust": ["9", "15"],
}
VALENCE_AROUSAL = {"neutral": (0.0, 0.0), "happiness": (0.8, 0.5), "sadness": (-0.6, -0.3), "surprise": (0.2, 0.8),
                   "fear": (-0.6, 0.7), "anger": (-0.7, 0.6), "disgust": (-0.6, 0.3)}
SPLITS = {"train": 0.6, "val": 0.1, "test": 0.3}  # a large test split: its metrics are the README table
SPLIT_IDS = ("train", "val", "test", "pretrain")  # "pretrain": the unlabelled pool (labels not written)
SUBJECTS = {"train": 48, "val": 12, "test": 16, "pretrain": 2000}
# The identity confound of the train split: each subject shows its favourite expression with
# probability ``favourite`` (else a uniform one), its habit AUs each with probability ``habit``,
# and any other AU with probability ``train_extra``. Val, test and the pretraining pool are clean:
# uniform expressions, every non-expression AU independently with probability ``clean_extra``.
CONFOUND = {"favourite": 0.4, "habit": 0.6, "train_extra": 0.06, "clean_extra": 0.12}


@dataclass
class SynthSample:
    """The labels and per-frame AU intensities of one synthetic image (1 frame) or clip."""

    subject: int
    expression: int
    active: list[str]
    frames: list[dict[str, float]]
    poses: list[Pose]
    valence: float
    arousal: float


def _subject_ids(split: str) -> list[int]:
    """Subject-exclusive id ranges, in the order of ``SPLIT_IDS``."""
    first = sum(SUBJECTS[name] for name in SPLIT_IDS[: SPLIT_IDS.index(split)])
    return list(range(first, first + SUBJECTS[split]))


def identity_of(seed: int, subject: int) -> Identity:
    """The look of subject ``subject``."""
    return Identity.draw(np.random.default_rng([seed, 1, subject]))


def _habits(seed: int, subject: int) -> tuple[int, list[str]]:
    rng = np.random.default_rng([seed, 2, subject])
    favourite = int(rng.integers(len(CLASS_NAMES)))
    habits = list(rng.choice(AU_IDS, size=int(rng.integers(2, 4)), replace=False))
    return favourite, habits


def draw_sample(seed: int, split: str, index: int, frames: int) -> SynthSample:
    """Sample ``index`` of ``split``: subject, labels, AU intensities per frame and poses."""
    rng = np.random.default_rng([seed, 3, SPLIT_IDS.index(split), frames, index])
    subjects = _subject_ids(split)
    subject = subjects[index % len(subjects)]
    if split == "train":
        favourite, habits = _habits(seed, subject)
        expression = favourite if rng.random() < CONFOUND["favourite"] else int(rng.integers(len(CLASS_NAMES)))
        extra = [au for au in habits if rng.random() < CONFOUND["habit"]] + [au for au in AU_IDS if rng.random() < CONFOUND["train_extra"]]
    else:
        expression = int(rng.integers(len(CLASS_NAMES)))
        extra = [au for au in AU_IDS if rng.random() < CONFOUND["clean_extra"]]
    name = CLASS_NAMES[expression]
    active = sorted(set(EXPRESSION_AUS[name]) | set(extra), key=AU_IDS.index)
    apex = {au: float(rng.uniform(0.6, 1.0)) for au in active}
    pose = Pose.draw(rng)
    if frames == 1:
        per_frame, poses = [apex], [pose]
    else:
        peak = int(rng.integers(frames // 2, frames))
        ramp = [min(1.0, t / max(peak, 1)) for t in range(frames)]
        per_frame = [{au: value * (3 * r * r - 2 * r * r * r) for au, value in apex.items()} for r in ramp]
        drift = rng.uniform(-0.004, 0.004, size=2)
        poses = [dataclasses.replace(pose, dx=pose.dx + t * drift[0], dy=pose.dy + t * drift[1]) for t in range(frames)]
    valence, arousal = VALENCE_AROUSAL[name]
    return SynthSample(
        subject=subject,
        expression=expression,
        active=active,
        frames=per_frame,
        poses=poses,
        valence=float(np.clip(valence + rng.normal(0, 0.1), -1, 1)),
        arousal=float(np.clip(arousal + rng.normal(0, 0.1), -1, 1)),
    )


def _label_row(sample: SynthSample, path: str, split: str) -> dict:
    if split == "pretrain":  # the unlabelled pool: who and where from, no AU or expression labels
        return {"path": path, "subject": f"s{sample.subject:04d}", "source": "synth-unlabelled"}
    return {
        "path": path,
        "subject": f"s{sample.subject:03d}",
        "source": "synth",
        "aus": {au: int(au in sample.active) for au in AU_IDS},
        "expression": sample.expression,
        "valence": round(sample.valence, 4),
        "arousal": round(sample.arousal, 4),
    }


def _write_range(args: tuple[str, int, str, int, int, int, int, int]) -> list[dict]:
    root, seed, split, first, last, size, frames, quality = args
    rows = []
    for index in range(first, last):
        sample = draw_sample(seed, split, index, frames)
        identity = identity_of(seed, sample.subject)
        name = f"s{sample.subject:03d}_{index:06d}"
        if frames == 1:
            relative = f"{split}/{name}.jpg"
            image = render_face(identity, sample.frames[0], sample.poses[0], size)
            Path(root, relative).write_bytes(encode_jpeg(image, quality))
        else:
            relative = f"{split}/{name}"
            os.makedirs(os.path.join(root, relative), exist_ok=True)
            for t, (aus, pose) in enumerate(zip(sample.frames, sample.poses)):
                Path(root, relative, f"f{t:03d}.jpg").write_bytes(encode_jpeg(render_face(identity, aus, pose, size), quality))
        rows.append(_label_row(sample, relative, split))
    return rows


def synth_split(root: str, split: str, count: int, *, seed: int, size: int, frames: int, workers: int, quality: int = 95) -> str:
    """Render ``count`` images (frames=1) or clips of ``split`` under ``root/split``; returns the JSONL label file."""
    os.makedirs(os.path.join(root, split), exist_ok=True)
    step = max(1, -(-count // (workers * 4)))
    ranges = [(root, seed, split, first, min(count, first + step), size, frames, quality) for first in range(0, count, step)]
    labels = Path(root).parent / f"{Path(root).name}-{split}.jsonl"
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            chunks = list(pool.map(_write_range, ranges))
    else:
        chunks = [_write_range(job) for job in ranges]
    write_text_atomic(labels, "".join(json.dumps(row) + "\n" for rows in chunks for row in rows))
    return str(labels)


def split_counts(total: int) -> dict[str, int]:
    """How many of ``total`` go to each split (60/10/30, at least one each)."""
    val = max(1, round(total * SPLITS["val"]))
    test = max(1, round(total * SPLITS["test"]))
    return {"train": max(1, total - val - test), "val": val, "test": test}


def write_vocab(out_dir: str) -> str:
    """Write ``vocab.json`` (AU ids and class names) for ``python -m data_shards build --vocab``."""
    path = Path(out_dir) / "vocab.json"
    write_json_atomic(path, {"au_ids": AU_IDS, "class_names": CLASS_NAMES}, indent=1)
    return str(path)


def synth_dataset(
    out_dir: str, *, images: int, clips: int, img_size: int, frames: int, seed: int, workers: int = 1, pretrain_images: int = 0
) -> dict[str, str]:
    """Render the raw demo data set under ``out_dir``: ``images/{split}/*.jpg``, ``clips/{split}/<clip>/f*.jpg``,
    one JSONL label file per split and modality (``images-train.jsonl`` ...) and ``vocab.json``.

    ``pretrain_images`` > 0 also renders an unlabelled pool ``images/pretrain`` for MAE pretraining
    (its own ``SUBJECTS["pretrain"]`` subjects, none of them in train/val/test; label rows carry
    only the subject and the source). Returns the label file of each set, keyed ``images-train``
    ... ``clips-test`` (and ``images-pretrain``).
    """
    os.makedirs(out_dir, exist_ok=True)
    write_vocab(out_dir)
    labels: dict[str, str] = {}
    if pretrain_images > 0:
        root = os.path.join(out_dir, "images")
        labels["images-pretrain"] = synth_split(root, "pretrain", pretrain_images, seed=seed, size=img_size, frames=1, workers=workers)
    for modality, total, length in (("images", images, 1), ("clips", clips, frames)):
        if total <= 0:
            continue
        for split, count in split_counts(total).items():
            root = os.path.join(out_dir, modality)
            labels[f"{modality}-{split}"] = synth_split(root, split, count, seed=seed, size=img_size, frames=length, workers=workers)
    return labels


def make_demo_shards(
    out_dir: str, *, images: int = 300, clips: int = 40, img_size: int = 64, frames: int = 8, seed: int = 0, workers: int = 1,
    pretrain_images: int = 0,
) -> dict[str, str]:
    """Synthesise and shard a small demo set under ``out_dir`` (``raw/`` and ``shards/<set>/``) in seconds.

    Returns the manifest path of each set: keys ``images-train``, ``images-val``, ``images-test``,
    ``clips-train``, ``clips-val``, ``clips-test`` (clip sets only when ``clips > 0``) and
    ``images-pretrain`` (the unlabelled pool, only when ``pretrain_images > 0``).
    """
    raw = os.path.join(out_dir, "raw")
    labels = synth_dataset(raw, images=images, clips=clips, img_size=img_size, frames=frames, seed=seed, workers=workers,
                           pretrain_images=pretrain_images)
    manifests = {}
    for name, label_path in labels.items():
        modality, split = name.split("-")
        source = label_file_source(os.path.join(raw, modality), label_path, "synth", AU_IDS, CLASS_NAMES)
        per_shard = (512 if split == "pretrain" else 128) if modality == "images" else 16
        config = BuildConfig(img_size=img_size, samples_per_shard=per_shard, clip_frames=frames, workers=workers, progress=False)
        report = build_shards(source, os.path.join(out_dir, "shards", name), "image" if modality == "images" else "clip", config)
        manifests[name] = report.manifest
    return manifests
