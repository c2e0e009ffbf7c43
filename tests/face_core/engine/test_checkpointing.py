"""Atomic checkpoint writes (really killed mid-write), directory swaps, resume resolution, RNG state."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from face_core.engine.checkpointing import (
    AtomicCheckpointIO,
    LastCheckpoint,
    collect_rng_state,
    recover_interrupted_swap,
    resolve_resume,
    restore_rng_state,
    swap_in_directory,
)

WRITER = textwrap.dedent(
    """
    import sys, torch
    from face_core.engine.checkpointing import AtomicCheckpointIO
    io = AtomicCheckpointIO()
    version = 0
    while True:
        version += 1
        io.save_checkpoint({"version": version, "payload": torch.full((1_000_000,), float(version))}, sys.argv[1])
        print(version, flush=True)
    """
)


def test_killed_writer_leaves_a_whole_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(3):  # let it complete a few writes, then kill it in the middle of the next
            assert writer.stdout.readline(), "writer died"
        time.sleep(0.05)
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
    state = torch.load(target, weights_only=True)
    assert state["version"] >= 3
    assert torch.equal(state["payload"], torch.full((1_000_000,), float(state["version"])))


def test_failed_write_keeps_previous_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"version": 1}, target)
    with pytest.raises(Exception):
        io.save_checkpoint({"version": 2, "bad": lambda: None}, target)  # a lambda cannot be pickled
    assert torch.load(target, weights_only=True) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_directory_swap_and_recovery(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    for version in (1, 2):
        written = tmp_path / "last.ckpt.tmp"
        written.mkdir()
        (written / "shard").write_text(str(version))
        swap_in_directory(written, target)
        assert (target / "shard").read_text() == str(version)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    os.replace(target, tmp_path / "last.ckpt.old")  # a kill between the two renames
    recover_interrupted_swap(target)
    assert (target / "shard").read_text() == "2"


def test_resolve_resume(tmp_path: Path) -> None:
    assert resolve_resume("auto", tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert resolve_resume("auto", tmp_path) == str(tmp_path / "checkpoints" / "last.ckpt")
    assert resolve_resume("never", tmp_path) is None
    assert resolve_resume(str(tmp_path / "checkpoints" / "last.ckpt"), tmp_path).endswith("last.ckpt")
    with pytest.raises(FileNotFoundError, match="trainer.resume='nope.ckpt'"):
        resolve_resume("nope.ckpt", tmp_path)


def test_rng_state_round_trip_through_weights_only_load(tmp_path: Path) -> None:
    torch.manual_seed(3), np.random.seed(4), random.seed(5)
    torch.save(collect_rng_state(), tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


class _Regression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch).pow(2).mean() + 0 * torch.rand(1).sum()  # draws from the RNG like masking does

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_last_checkpoint_every_n_steps_and_epoch_end(tmp_path: Path) -> None:
    saved_steps = []

    class Spy(pl.Callback):
        def on_save_checkpoint(self, trainer, pl_module, checkpoint):
            saved_steps.append(trainer.global_step)

    data = torch.utils.data.DataLoader(torch.randn(14, 4), batch_size=2)  # 7 steps per epoch
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, plugins=[AtomicCheckpointIO()],
        callbacks=[LastCheckpoint(tmp_path, every_n_steps=3, seed=1), Spy()],
    )
    trainer.fit(_Regression(), data)
    assert saved_steps == [3, 6, 7, 9, 12, 14]
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert state["global_step"] == 14
    assert len(state["callbacks"]["LastCheckpoint"]["rng"]) == 1  # one state per rank
