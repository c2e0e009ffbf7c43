"""Fine-tuning data: labelled shard streams per split and modality, as Lightning loaders.

Training interleaves image and clip batches one modality per step with
:class:`data_shards.interleave.InterleavedBatches` (same seeded order on every rank, its position
kept in checkpoints by Lightning). An epoch is one pass over the image training set and
``clip_step_ratio`` clip steps per image step (clips only: one pass over the clips). Validation gives one loader per modality
(one view per sample); the test gives multi-view batches ``(B, V, C, ...)`` with ``views = V``:
``test_clips`` consecutive windows of ``num_frames`` at ``clip_stride`` around the clip's centre,
times ``test_crops`` (the frame, then its mirror).

:meth:`FinetuneDataModule.task_spec` reads only the manifests (before any process group
exists); loaders are built when Lightning asks for them, so ranks and world size are known.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info

from data_shards.decode import LabelMap
from data_shards.interleave import InterleavedBatches
from data_shards.loaders import LoaderConfig, ShardLoader, eval_loader, train_loader
from data_shards.shard_sets import ShardSet, resolve_sets
from finetune.config import FinetuneConfig
from finetune.task_model import TaskSpec
from plumbing.recipes import ConfigError
from pretrain.model.config import ViTConfig

MODALITIES = ("image", "clip")


class MultiViewBatches:
    """Test batches with a views axis: clips cut into ``clips`` windows, each also mirrored when ``crops == 2``."""

    def __init__(self, loader: ShardLoader, clips: int, crops: int) -> None:
        self.loader, self.clips, self.crops = loader, clips, crops

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.loader:
            pixels = batch["pixels"]
            if pixels.ndim == 5:  # (B, C, clips * T, H, W) -> (B, clips, C, T, H, W)
                b, c, t, h, w = pixels.shape
                views = pixels.view(b, c, self.clips, t // self.clips, h, w).transpose(1, 2)
            else:
                views = pixels.unsqueeze(1)
            if self.crops == 2:
                views = torch.cat([views, views.flip(-1)], dim=1)
            batch["pixels"], batch["views"] = views.contiguous(), views.shape[1]
            yield batch


def _labels_of(sets: list[ShardSet]) -> LabelMap:
    return LabelMap([s.manifest for s in sets])


class FinetuneDataModule(pl.LightningDataModule):
    """Train (interleaved), validation and test loaders of a :class:`FinetuneConfig`."""

    def __init__(self, config: FinetuneConfig, encoder: ViTConfig) -> None:
        super().__init__()
        self.config, self.encoder = config, encoder
        self.world_size = config.trainer.devices * config.trainer.num_nodes
        self._sets: dict[str, list[ShardSet]] = {}
        self._batches: InterleavedBatches | None = None

    def modalities(self) -> list[str]:
        """Modalities with training shards."""
        return [m for m in MODALITIES if getattr(self.config.data, f"{m}_train")]

    def _resolved(self, split: str, modality: str) -> list[ShardSet]:
        key = f"{modality}_{split}"
        if key not in self._sets:
            try:
                self._sets[key] = resolve_sets(getattr(self.config.data, key), [], modality)
            except ConfigError as err:
                raise ConfigError(f"data.{key}: {err}") from None
        return self._sets[key]

    def task_spec(self) -> TaskSpec:
        """Heads and vocabularies from the manifests; errors name the key whose shards lack a label."""
        tasks = list(self.config.tasks.tasks)
        spec = TaskSpec(self.modalities(), tasks)
        vocabularies: dict[str, list[str]] = {}
        for modality in spec.modalities:
            sets = self._resolved("train", modality)
            labels = _labels_of(sets)
            counts = {name: sum(getattr(s.manifest.counts, name) for s in sets) for name in ("with_aus", "with_expression", "with_subject")}
            needs = {"au": ("with_aus", labels.au_ids), "expression": ("with_expression", labels.class_names)}
            spec.modality_tasks[modality] = [task for task in tasks if needs[task][1] and counts[needs[task][0]] > 0]
            if self.config.iat.enabled and counts["with_subject"] == 0:
                raise ConfigError(f"iat.strength={self.config.iat.strength} needs subject labels; data.{modality}_train has none")
            self._agree(spec, labels, f"data.{modality}_train")
            vocabularies[modality] = labels.subjects
            for split in ("val", "test"):
                if getattr(self.config.data, f"{modality}_{split}"):
                    self._agree(spec, _labels_of(self._resolved(split, modality)), f"data.{modality}_{split}")
        for task in tasks:
            if not any(task in carried for carried in spec.modality_tasks.values()):
                where = ", ".join(f"data.{m}_train" for m in spec.modalities)
                raise ConfigError(f"tasks.tasks includes {task!r} but no training shards carry {task} labels ({where})")
        spec.subjects = sorted({s for names in vocabularies.values() for s in names})
        index = {s: i for i, s in enumerate(spec.subjects)}
        spec.subject_maps = {m: [index[s] for s in names] for m, names in vocabularies.items()}
        return spec

    def _agree(self, spec: TaskSpec, labels: LabelMap, key: str) -> None:
        """Fill the AU/class vocabularies from the first set; later sets must match them."""
        for task, attribute in (("au", "au_ids"), ("expression", "class_names")):
            if task not in spec.tasks or not getattr(labels, attribute):
                continue
            found, known = getattr(labels, attribute), getattr(spec, attribute)
            if not known:
                setattr(spec, attribute, list(found))
            elif list(found) != known:
                raise ConfigError(f"{key}: {attribute} {found} differ from the training shards' {known}")

    def _rank(self) -> int:
        return self.trainer.global_rank if self.trainer is not None else 0

    def _loader_config(self, modality: str, batch_size: int) -> LoaderConfig:
        data = self.config.data
        return LoaderConfig(
            rank=self._rank(), world_size=self.world_size,
            modality=modality, batch_size=batch_size, img_size=self.encoder.img_size, num_frames=self.encoder.num_frames,
            frame_stride=data.clip_stride, crop_scale=data.crop_scale, hflip=data.hflip, num_workers=data.num_workers,
            shuffle_buffer=data.shuffle_buffer, samples_per_epoch=data.samples_per_epoch, seed=self.config.trainer.seed,
        )

    def _train_loader(self, modality: str, samples_per_epoch: int = 0) -> ShardLoader:
        data = self.config.data
        base = self._loader_config(modality, getattr(data, f"{modality}_batch_size"))
        return train_loader(
            base, shards=getattr(data, f"{modality}_train"), subjects=list(data.train_subjects),
            balance_classes=data.class_balanced, samples_per_epoch=samples_per_epoch or base.samples_per_epoch,
        )

    def steps_per_epoch(self) -> dict[str, int]:
        """Training steps of each modality per epoch on every rank (reads the manifests)."""
        return {m: len(loader) for m, loader in self._train_loaders().items()}

    def _train_loaders(self) -> dict[str, ShardLoader]:
        if self._batches is not None:
            return self._batches.loaders
        loaders: dict[str, ShardLoader] = {}
        if "image" in self.modalities():
            loaders["image"] = self._train_loader("image")
        if "clip" in self.modalities():
            if "image" in loaders:  # size the clip epoch to the ratio of image steps
                steps = max(1, round(self.config.data.clip_step_ratio * len(loaders["image"])))
                loaders["clip"] = self._train_loader("clip", steps * self.config.data.clip_batch_size * self.world_size)
            else:
                loaders["clip"] = self._train_loader("clip")
        return loaders

    def train_dataloader(self) -> InterleavedBatches:
        """One epoch of interleaved image/clip batches (the same modality order on every rank).

        The iterable is stateful: Lightning keeps its position in checkpoints, so a resumed run
        continues mid-epoch.
        """
        if self._batches is None:
            loaders = self._train_loaders()
            steps = {m: len(loaders[m]) if m in loaders else 0 for m in MODALITIES}
            self._batches = InterleavedBatches(loaders, steps, self.config.trainer.seed, self.position, rank_zero_info)
        return self._batches

    def skipped_samples(self) -> dict[str, int]:
        """Corrupt samples and truncated shards skipped so far by this rank's training loaders."""
        return self._batches.skipped() if self._batches is not None else {}

    def position(self) -> tuple[int, int]:
        """The current epoch and the batches of it trained so far (Lightning's progress counters)."""
        return self.trainer.current_epoch, self.trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def _eval_loaders(self, split: str) -> list[ShardLoader]:
        data = self.config.data
        subjects = getattr(data, f"{split}_subjects")
        loaders = []
        for modality in MODALITIES:
            shards = getattr(data, f"{modality}_{split}")
            if not shards:
                continue
            frames = self.encoder.num_frames * (data.test_clips if split == "test" else 1)
            config = dataclasses.replace(self._loader_config(modality, getattr(data, f"{modality}_batch_size")), num_frames=frames)
            loaders.append(eval_loader(config, shards=shards, subjects=list(subjects)))
        return loaders

    def val_dataloader(self) -> list[ShardLoader]:
        """One validation loader per modality (every sample once across ranks)."""
        return self._eval_loaders("val")

    def test_dataloader(self) -> list[MultiViewBatches]:
        """One multi-view test loader per modality."""
        data = self.config.data
        return [MultiViewBatches(loader, data.test_clips, data.test_crops) for loader in self._eval_loaders("test")]
