"""Checkpoints that are whole or absent: atomic writes, a periodic ``last.ckpt``, RNG continuity.

* :class:`AtomicCheckpointIO` writes a checkpoint file under a temporary name in the same folder
  and renames it over the target, so a kill mid-write leaves the previous ``last.ckpt`` intact.
* :func:`swap_in_directory` does the same for DeepSpeed's sharded checkpoint *directories*
  (written whole under a temporary name, then renamed in; :func:`recover_interrupted_swap` puts
  the previous one back if a kill fell between the two renames).
* :class:`LastCheckpoint` refreshes ``<output_dir>/checkpoints/last.ckpt`` every N optimiser
  steps and at each epoch end, and carries every rank's RNG state in the checkpoint so a resumed
  run draws the masks it would have drawn. Everything stored is plain data: checkpoints load
  with ``torch.load(weights_only=True)``.
* :func:`resolve_resume` finds the checkpoint to resume from and :func:`check_resumable` reads it
  (memory-mapped, weights only) before the Trainer starts, so a truncated, pickled or foreign file stops the run with one
  line naming it and what to do, not torch's page-long advice to unpickle it.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info

from plumbing.files import atomic_path
from plumbing.recipes import ConfigError
from plumbing.tracking_store import CHECKPOINT_FOLDER

LAST_CHECKPOINT = "last.ckpt"


def checkpoint_dir(output_dir: str | Path) -> Path:
    """The folder holding ``last.ckpt`` inside a run folder."""
    return Path(output_dir) / CHECKPOINT_FOLDER


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` under a temporary name beside the target, fsync, then rename over it (:func:`plumbing.files.atomic_path`)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` so that ``path`` is always either the old or the new file."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        with atomic_path(path) as partial:
            torch.save(checkpoint, partial)


def swap_in_directory(written: Path, target: Path) -> None:
    """Replace directory ``target`` by the complete directory ``written`` (same parent folder).

    The old one is renamed to ``<target>.old`` first and removed last; a kill in between leaves
    ``.old`` for :func:`recover_interrupted_swap` to put back.
    """
    previous = target.with_name(target.name + ".old")
    if previous.exists():
        shutil.rmtree(previous)
    if target.exists():
        os.replace(target, previous)
    os.replace(written, target)
    if previous.exists():
        shutil.rmtree(previous)


def recover_interrupted_swap(target: Path) -> None:
    """If a kill fell between the renames of :func:`swap_in_directory`, restore the previous ``target``."""
    previous = target.with_name(target.name + ".old")
    if previous.exists() and not target.exists():
        os.replace(previous, target)


def resolve_resume(resume: str, output_dir: str | Path) -> str | None:
    """The checkpoint to resume from: ``auto`` = ``last.ckpt`` if present, ``never`` = none, else a path.

    Raises FileNotFoundError naming ``trainer.resume`` when an explicit path does not exist.
    """
    if resume == "never":
        return None
    if resume == "auto":
        last = checkpoint_dir(output_dir) / LAST_CHECKPOINT
        recover_interrupted_swap(last)
        return str(last) if last.exists() else None
    if not Path(resume).exists():
        raise FileNotFoundError(f"trainer.resume={resume!r}: no such checkpoint file or DeepSpeed checkpoint folder")
    return resume


def unreadable_reason(err: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in a few words (torch's own message is a page long)."""
    text = str(err)
    refused = re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", text)
    if refused or isinstance(err, pickle.UnpicklingError):
        what = f" ({refused.group(1)})" if refused else ""
        return f"it holds pickled Python objects{what}, which are never unpickled here (only tensors and plain data)"
    if "zip archive" in text or "central directory" in text or "mmap can only be used" in text:
        return "it is truncated, or not a checkpoint saved by torch.save (no complete zip archive)"
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__


def check_resumable(path: str, resume: str) -> None:
    """Read ``path`` as Lightning would (weights only; memory-mapped, so cheap) or raise :class:`ConfigError`.

    The message names ``trainer.resume``, the file and what to do. DeepSpeed folders are left to DeepSpeed.
    """
    if Path(path).is_dir():
        return
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        whole = isinstance(stored, dict) and {"state_dict", "global_step"} <= set(stored)
        problem = "" if whole else "it is not a Lightning training checkpoint (no state_dict and global_step)"
    except Exception as err:  # every failure to read it is the same user-facing problem
        problem = unreadable_reason(err)
    if problem:
        advice = "delete it to start afresh, or pass --trainer.resume never" if resume == "auto" else "give another checkpoint, or --trainer.resume never"
        raise ConfigError(f"trainer.resume={resume!r}: cannot resume from {path}: {problem}; {advice}")


def collect_rng_state() -> dict[str, Any]:
    """This process's torch (CPU and CUDA), numpy and Python RNG states, as plain data."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {**numpy_state, "state": {"key": numpy_state["state"]["key"].tolist(), "pos": numpy_state["state"]["pos"]}},
        "python": random.getstate(),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`collect_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {"key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32), "pos": numpy_state["state"]["pos"]}
    np.random.set_state(numpy_state)
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))


def _gather_from_all_ranks(value: Any) -> list[Any]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gathered: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, value)
        return gathered
    return [value]


class LastCheckpoint(pl.Callback):
    """Refresh ``<dirpath>/last.ckpt`` every ``every_n_steps`` optimiser steps and at each epoch end.

    Also seeds each rank's RNG differently at the start (``seed + rank``: masks differ across
    ranks) and, on resume, restores every rank's saved RNG state instead. ``Trainer.save_checkpoint``
    runs on every rank, so gathering the RNG states there is safe.
    """

    def __init__(self, dirpath: str | Path, every_n_steps: int, seed: int) -> None:
        self.path = Path(dirpath) / LAST_CHECKPOINT
        self.every_n_steps = every_n_steps
        self.seed = seed
        self._last_saved_step = -1
        self._restored_rng: list[dict[str, Any]] | None = None

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Restore the checkpoint's RNG states, or seed each rank from ``seed + rank``."""
        self._last_saved_step = trainer.global_step
        if self._restored_rng is not None and len(self._restored_rng) == trainer.world_size:
            restore_rng_state(self._restored_rng[trainer.global_rank])
            rank_zero_info(f"resumed at step {trainer.global_step}, epoch {trainer.current_epoch}, RNG restored")
            return
        if self._restored_rng is not None:
            rank_zero_info(
                f"resumed at step {trainer.global_step} on {trainer.world_size} ranks (checkpoint had "
                f"{len(self._restored_rng)}): RNG reseeded from seed, rank and step"
            )
        stream = self.seed + 1_000_003 * trainer.global_rank + trainer.global_step
        torch.manual_seed(stream)
        np.random.seed(stream % 2**32)
        random.seed(stream)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Save after the optimiser step that reaches a multiple of ``every_n_steps``."""
        step = trainer.global_step
        if step > 0 and step % self.every_n_steps == 0 and step != self._last_saved_step:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Save at every epoch end (unless this very step was just saved)."""
        if trainer.global_step != self._last_saved_step:
            self._save(trainer)

    def _save(self, trainer: pl.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # the full training state
        self._last_saved_step = trainer.global_step

    def state_dict(self) -> dict[str, Any]:
        """Every rank's RNG state (gathered; called on all ranks by ``Trainer.save_checkpoint``)."""
        return {"rng": _gather_from_all_ranks(collect_rng_state())}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the saved RNG states until training starts (after Lightning's own seeding)."""
        self._restored_rng = state_dict.get("rng")
