"""Fine-tuning data: labelled shard streams per split and modality, as Lightning loaders.

Training interleaves image and clip batches one modality per step with
:class:`data_shards.interleave.InterleavedBatches` (same seeded order on every rank, its position
kept in checkpoints by Lightning). An epoch is ``images.passes`` passes over the image training
set and ``clips.passes`` over the clip training set. Validation gives one loader per modality
(one view per sample); the test gives clips as multi-view batches ``(B, V, C, T, H, W)`` with
``views = V``: ``test_clips`` windows of ``num_frames`` at ``clips.frame_stride`` spaced over the whole
clip, times ``test_crops`` crops along the long side (:mod:`data_shards.decode`). What every
loader skipped (corrupt samples, truncated shards) is counted by :meth:`FinetuneDataModule.skipped_samples`:
the engine's step lines and fit summary show the training and validation counts, the test results the test's.

:meth:`FinetuneDataModule.task_spec` reads only the manifests (before any process group
exists); loaders are built when Lightning asks for them, so ranks and world size are known.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info

from data_shards.decode import LabelMap, ViewOptions, classes_onto
from data_shards.interleave import InterleavedBatches, sized_train_loader
from data_shards.loaders import LoaderConfig, ShardLoader, eval_loader, loader_config
from data_shards.sections import SECTION_KEYS
from data_shards.shard_sets import ShardSet, resolve_sets
from face_core.engine.trainer import fit_position
from face_core.model.config import ViTConfig
from face_core.model.task_model import TaskSpec
from finetune.config import FinetuneConfig, Split
from plumbing.recipes import ConfigError

MODALITIES = ("image", "clip")


class MultiViewBatches:
    """Test batches of a loader whose samples carry ``views`` views ``(B, V, C, ...)``; ``batch["views"]`` says so."""

    def __init__(self, loader: ShardLoader, views: int) -> None:
        self.loader, self.views = loader, views

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.loader:
            if self.views > 1:
                batch["views"] = self.views
            yield batch


def split_key(modality: str, split: Split) -> str:
    """The recipe key of ``modality``'s shard sets of ``split``, as errors name it (``data.images.train``)."""
    return f"data.{SECTION_KEYS[modality]}.{split}"


def _labels_of(sets: list[ShardSet]) -> LabelMap:
    return LabelMap([s.manifest for s in sets])


def shared_classes(classes: dict[str, list[str]]) -> tuple[list[str], dict[str, list[int]]]:
    """One expression vocabulary for the heads of every modality, and how each other vocabulary maps onto it.

    The clips' vocabulary wins when clips carry expressions (images are the helpers in S4D's
    joint training), else the images'. A modality whose class names differ is mapped by name:
    ``maps[m][i]`` is the shared index of its class ``i``, -1 for a class the shared vocabulary
    lacks (those samples train no expression head, e.g. AffectNet's contempt beside DFEW).
    """
    main = "clip" if "clip" in classes else "image"
    names = classes[main]
    maps = {}
    for modality, own in classes.items():
        if own == names:
            continue
        maps[modality] = classes_onto(own, names)
        if all(i < 0 for i in maps[modality]):
            raise ConfigError(f"{split_key(modality, 'train')}: class_names {own} share no class with {split_key(main, 'train')}'s {names}")
    return names, maps


class FinetuneDataModule(pl.LightningDataModule):
    """Train (interleaved), validation and test loaders of a :class:`FinetuneConfig`."""

    def __init__(self, config: FinetuneConfig, encoder: ViTConfig) -> None:
        super().__init__()
        self.config, self.encoder = config, encoder
        self.world_size = config.trainer.devices * config.trainer.num_nodes
        self._sets: dict[str, list[ShardSet]] = {}
        self._batches: InterleavedBatches | None = None
        self._eval_built: list[tuple[str, str, ShardLoader]] = []  # (split, modality, loader) of every evaluation loader

    def modalities(self) -> list[str]:
        """Modalities with training shards."""
        return self.config.data.training()

    def _resolved(self, split: Split, modality: str) -> list[ShardSet]:
        key = split_key(modality, split)
        if key not in self._sets:
            try:
                self._sets[key] = resolve_sets(self.config.data.shards(modality, split), [], modality)
            except ConfigError as err:
                raise ConfigError(f"{key}: {err}") from None
        return self._sets[key]

    def task_spec(self) -> TaskSpec:
        """Heads and vocabularies from the manifests; errors name the key whose shards lack a label."""
        tasks = list(self.config.tasks.tasks)
        spec = TaskSpec(self.modalities(), tasks)
        vocabularies: dict[str, list[str]] = {}
        classes: dict[str, list[str]] = {}
        for modality in spec.modalities:
            sets = self._resolved("train", modality)
            labels = _labels_of(sets)
            counts = {name: sum(getattr(s.manifest.counts, name) for s in sets) for name in ("with_aus", "with_expression", "with_subject")}
            needs = {"au": ("with_aus", labels.au_ids), "expression": ("with_expression", labels.class_names)}
            spec.modality_tasks[modality] = [task for task in tasks if needs[task][1] and counts[needs[task][0]] > 0]
            if self.config.iat.enabled and counts["with_subject"] == 0:
                raise ConfigError(f"iat.strength={self.config.iat.strength} needs subject labels; {split_key(modality, 'train')} has none")
            self._agree_aus(spec, labels, split_key(modality, "train"))
            vocabularies[modality] = labels.subjects
            if "expression" in spec.modality_tasks[modality]:
                classes[modality] = list(labels.class_names)
            for split in ("val", "test"):
                if self.config.data.shards(modality, split):
                    other = _labels_of(self._resolved(split, modality))
                    key = split_key(modality, split)
                    self._agree_aus(spec, other, key)
                    if modality in classes and other.class_names and list(other.class_names) != classes[modality]:
                        raise ConfigError(f"{key}: class_names {other.class_names} differ from {split_key(modality, 'train')}'s {classes[modality]}")
        for task in tasks:
            if not any(task in carried for carried in spec.modality_tasks.values()):
                where = ", ".join(split_key(m, "train") for m in spec.modalities)
                raise ConfigError(f"tasks.tasks includes {task!r} but no training shards carry {task} labels ({where})")
        if classes:
            spec.class_names, spec.class_maps = shared_classes(classes)
        spec.subjects = sorted({s for names in vocabularies.values() for s in names})
        index = {s: i for i, s in enumerate(spec.subjects)}
        spec.subject_maps = {m: [index[s] for s in names] for m, names in vocabularies.items()}
        return spec

    def au_balance_weights(self, au_ids: list[str]) -> list[float]:
        """Per AU, negatives / positives over the training sets' manifests (every modality that trains)."""
        positives = {au: 0 for au in au_ids}
        labelled = 0
        for modality in self.modalities():
            for shard_set in self._resolved("train", modality):
                counts = shard_set.manifest.counts
                labelled += counts.with_aus
                for au in au_ids:
                    positives[au] += counts.au_positive.get(au, 0)
        missing = [au for au, n in positives.items() if n == 0 or n >= labelled]
        if missing:
            raise ConfigError(f"tasks.au_balance: AUs {missing} have no positive or no negative training sample")
        return [(labelled - positives[au]) / positives[au] for au in au_ids]

    def _agree_aus(self, spec: TaskSpec, labels: LabelMap, key: str) -> None:
        """Fill the AU vocabulary from the first set; later sets must match it."""
        if "au" not in spec.tasks or not labels.au_ids:
            return
        if not spec.au_ids:
            spec.au_ids = list(labels.au_ids)
        elif list(labels.au_ids) != spec.au_ids:
            raise ConfigError(f"{key}: au_ids {labels.au_ids} differ from the training shards' {spec.au_ids}")

    def _rank(self) -> int:
        return self.trainer.global_rank if self.trainer is not None else 0

    def _loader_config(self, modality: str) -> LoaderConfig:
        data = self.config.data
        return loader_config(
            data.section(modality), img_size=self.encoder.img_size, num_frames=self.encoder.num_frames, seed=self.config.trainer.seed,
            num_workers=data.num_workers, shuffle_buffer=data.shuffle_buffer, samples_per_epoch=data.samples_per_epoch,
            rank=self._rank(), world_size=self.world_size,
        )

    def steps_per_epoch(self) -> dict[str, int]:
        """Training steps of each modality per epoch on every rank (reads the manifests)."""
        return {m: len(loader) for m, loader in self._train_loaders().items()}

    def _train_loaders(self) -> dict[str, ShardLoader]:
        if self._batches is not None:
            return self._batches.loaders
        data = self.config.data
        loaders: dict[str, ShardLoader] = {}
        for modality in self.modalities():
            section = data.section(modality)
            loaders[modality] = sized_train_loader(
                self._loader_config(modality), section.passes, subjects=list(data.train_subjects), balance_classes=section.class_balanced,
            )
        return loaders

    def train_dataloader(self) -> InterleavedBatches:
        """One epoch of interleaved image/clip batches (the same modality order on every rank).

        The iterable is stateful: Lightning keeps its position in checkpoints, so a resumed run
        continues mid-epoch.
        """
        if self._batches is None:
            loaders = self._train_loaders()
            steps = {m: len(loaders[m]) if m in loaders else 0 for m in MODALITIES}
            self._batches = InterleavedBatches(loaders, steps, self.config.trainer.seed, lambda: fit_position(self.trainer), rank_zero_info)
        return self._batches

    def skipped_samples(self) -> dict[str, int]:
        """Corrupt samples and truncated shards skipped so far on this rank, per read: training loaders as
        ``<modality>_<kind>``, validation and test loaders as ``<split>_<modality>_<kind>`` (once built)."""
        found = self._batches.skipped() if self._batches is not None else {}
        for split, modality, loader in self._eval_built:
            for kind, count in loader.skipped.items():
                found[f"{split}_{modality}_{kind}"] = found.get(f"{split}_{modality}_{kind}", 0) + count
        return found

    def _eval_loaders(self, split: Split) -> list[tuple[ShardLoader, int]]:
        """The loaders of ``split``, one per modality, each with its views per sample."""
        data = self.config.data
        subjects = getattr(data, f"{split}_subjects")
        loaders = []
        for modality in MODALITIES:
            shards = data.shards(modality, split)
            if not shards:
                continue
            multi_view = split == "test" and modality == "clip"
            options = ViewOptions(test_clips=data.test_clips, test_crops=data.test_crops) if multi_view else ViewOptions()
            loader = eval_loader(self._loader_config(modality), shards=shards, weights=[], subjects=list(subjects), view_options=options)
            self._eval_built.append((split, modality, loader))
            loaders.append((loader, options.test_clips * options.test_crops))
        return loaders

    def val_dataloader(self) -> list[ShardLoader]:
        """One validation loader per modality (every sample once across ranks)."""
        return [loader for loader, _ in self._eval_loaders("val")]

    def test_dataloader(self) -> list[MultiViewBatches]:
        """One test loader per modality; clips carry ``test_clips * test_crops`` views."""
        return [MultiViewBatches(loader, views) for loader, views in self._eval_loaders("test")]
