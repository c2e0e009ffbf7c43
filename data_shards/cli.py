"""Command-line entry of the shard tools: ``python -m data_shards {synth,build,merge,verify} ...``.

Typed signatures are the documentation (``--help``). Heavy work is imported inside the commands,
so ``--help`` stays light.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from data_shards.build import BuildConfig
from data_shards.faces.config import FaceConfig
from plumbing.recipes import ConfigError, validate

Layout = Literal["folder", "bp4d", "bp4d_plus", "disfa", "rafdb", "affectnet", "dfew", "mafw", "ferv39k"]


def synth(out: str = "runs/demo/raw", images: int = 3000, clips: int = 400, img_size: int = 64, frames: int = 8, seed: int = 0, workers: int = 1) -> None:
    """Render synthetic labelled faces (no download): identity-confounded train split, clean val/test.

    Writes ``OUT/images/{train,val,test}/*.jpg``, ``OUT/clips/{split}/<clip>/f*.jpg``, one JSONL label
    file per set (``OUT/images-train.jsonl`` ...) and ``OUT/vocab.json``; shard them with ``build``.

    Args:
        out: output folder.
        images: labelled face images over all splits (60/10/30 train/val/test).
        clips: clips over all splits.
        img_size: side of the rendered faces.
        frames: frames per clip (an AU trajectory from onset to apex).
        seed: everything (identities, labels, poses) follows from it.
        workers: rendering processes.
    """
    if min(images, clips) < 0 or img_size < 16 or frames < 1 or workers < 1:
        raise ConfigError("synth: images and clips must be >= 0, img_size >= 16, frames >= 1, workers >= 1")
    from data_shards.synth import synth_dataset

    labels = synth_dataset(out, images=images, clips=clips, img_size=img_size, frames=frames, seed=seed, workers=workers)
    for name, path in labels.items():
        print(f"{name}: {path}")


def demo(
    out: str = "runs/demo", images: int = 3000, clips: int = 400, img_size: int = 64, frames: int = 8, seed: int = 0, workers: int = 2,
    pretrain_images: int = 0,
) -> None:
    """Synthesise the demo data set and shard it in one go: ``OUT/raw`` (as ``synth``) and ``OUT/shards/<set>``.

    The sets are ``images-{train,val,test}`` and ``clips-{train,val,test}``, each with a manifest.json.

    Args:
        out: output folder.
        images: labelled face images over all splits (60/10/30 train/val/test).
        clips: clips over all splits.
        img_size: side of the faces.
        frames: frames per clip.
        seed: everything follows from it.
        workers: rendering and shard-writing processes.
        pretrain_images: size of an unlabelled pool of other subjects for MAE pretraining
            (``images-pretrain``); 0 = none.
    """
    if min(images, clips, pretrain_images) < 0 or img_size < 16 or frames < 1 or workers < 1:
        raise ConfigError("demo: images and clips must be >= 0, img_size >= 16, frames >= 1, workers >= 1")
    from data_shards.synth import make_demo_shards

    manifests = make_demo_shards(out, images=images, clips=clips, img_size=img_size, frames=frames, seed=seed, workers=workers,
                                 pretrain_images=pretrain_images)
    for name, path in manifests.items():
        print(f"{name}: {path}")


def build(
    media: str,
    out: str,
    labels: str = "",
    layout: Layout = "folder",
    modality: Literal["image", "clip"] = "image",
    vocab: str = "",
    source_name: str = "",
    subject_from_folder: bool = False,
    split: str = "",
    faces: Literal["none", "detect"] = "none",
    shards: BuildConfig = BuildConfig(),
    detect: FaceConfig = FaceConfig(),
) -> None:
    """Write WebDataset shards and a manifest from a folder of face images, photos, videos or clips and its labels.

    Malformed label lines, symlink loops and unreadable, too small or face-less inputs are skipped,
    counted in the manifest and named on the final line.

    Args:
        media: folder of the images, or of the clips (frame folders or video files).
        out: output folder of the shard set (shards, manifest.json).
        labels: label file (generic CSV/JSONL with a ``path`` column, or the layout's own file); empty = unlabelled.
        layout: ``folder`` (generic CSV/JSONL), ``bp4d``/``bp4d_plus``/``disfa`` (FMAE-style JSONL), ``rafdb``,
            ``affectnet``, ``dfew``/``mafw``/``ferv39k`` (clip lists); see docs/shards.md.
        modality: ``image`` or ``clip``.
        vocab: JSON file with ``au_ids`` and ``class_names`` (generic layout); empty = scanned from the labels.
        source_name: dataset name stored in each sample's ``source``; empty = the layout (folder: the media folder's name).
        subject_from_folder: unlabelled folders: each image's parent folder names its subject.
        split: ``rafdb``: keep only ``train`` or ``test`` lines of the list file; empty = all.
        faces: ``none``: every input is a face already (pre-cropped sets such as Face9M), centre-cropped;
            ``detect``: find faces (RetinaFace, 5 landmarks) and store each aligned (photos: one sample per face;
            clips: one face track per clip); inputs without a face are dropped and counted.
        shards: image size, shard size, clip windows, processes, job-array part.
        detect: face detection, alignment and tracking settings (``--faces detect``).
    """
    validate({"shards": shards, "detect": detect})
    from data_shards.build import build_shards
    from data_shards.importers import open_source

    au_ids: list[str] = []
    class_names: list[str] = []
    if vocab:
        if not Path(vocab).is_file():
            raise FileNotFoundError(f"vocab file not found: {vocab}")
        try:
            data = json.loads(Path(vocab).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"vocab={vocab}: not a JSON file ({err})") from err
        if not isinstance(data, dict):
            raise ConfigError(f"vocab={vocab}: expected an object with au_ids and class_names")
        au_ids, class_names = [str(a) for a in data.get("au_ids", [])], list(data.get("class_names", []))
    name = source_name or (Path(media.rstrip("/")).name if layout == "folder" else layout)
    source = open_source(layout, media, labels, modality, name, au_ids, class_names, subject_from_folder, split)
    report = build_shards(source, out, modality, shards, faces=faces, face=detect)
    print(report.line())


def merge(out: str) -> None:
    """Merge the parts of a job-array build in ``out`` into ``manifest.json`` (errors name missing parts).

    Args:
        out: the shard set's folder.
    """
    from data_shards.build import merge_parts

    manifest = merge_parts(out)
    print(f"{manifest.path}: {len(manifest.shards)} shards, {manifest.num_samples} samples")


def verify(path: str, workers: int = 1) -> None:
    """Check every shard against its manifest: checksum, tar integrity, every image decodes, labels match the schema.

    Prints counts per set; exits with status 1 when anything is damaged.

    Args:
        path: a manifest, a shard-set folder, or a folder whose subfolders are shard sets.
        workers: shards checked in parallel.
    """
    from data_shards.verify import find_manifests, verify_sets

    if not verify_sets(find_manifests(path), workers):
        raise SystemExit(1)
