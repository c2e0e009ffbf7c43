"""The console of a training run: a progress bar in a (pseudo-)terminal, step lines and a summary in logs.

The terminals are real pseudo-terminals (``os.openpty``) with a window size, as a shell gives them.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from damage import copy_set, corrupt_member
from synthetic_sets import ShardSets
from tiny_pretraining import tiny_recipe, write_recipe

from plumbing.console import interactive_console

ROOT = Path(__file__).resolve().parents[3]


def open_terminal(columns: int) -> tuple[int, int]:
    """A pseudo-terminal (master, slave) whose window is ``columns`` wide."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    return master, slave


def run_in_terminal(command: list[str], env: dict[str, str], timeout: float = 240) -> str:
    """Run ``command`` with a 160-column pseudo-terminal as its stdin, stdout and stderr; everything it drew."""
    master, slave = open_terminal(160)
    process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=env, start_new_session=True)
    os.close(slave)
    drawn, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            drawn.append(chunk)
        assert process.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, b"".join(drawn).decode(errors="replace")[-3000:]
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    return b"".join(drawn).decode(errors="replace")


def test_bars_are_drawn_only_at_a_terminal_with_a_width_outside_slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    master, slave = open_terminal(120)
    with os.fdopen(slave, "w") as terminal:
        assert interactive_console(terminal)
        monkeypatch.setenv("SLURM_JOB_ID", "4242")  # a SLURM job's output goes to a log file, even from srun --pty
        assert not interactive_console(terminal)
    os.close(master)
    monkeypatch.delenv("SLURM_JOB_ID")
    master, slave = open_terminal(0)  # what `docker exec -t` or `script` may open: a tqdm bar would draw nothing
    with os.fdopen(slave, "w") as terminal:
        assert not interactive_console(terminal)
    os.close(master)
    read, write = os.pipe()
    with os.fdopen(write, "w") as pipe:
        assert not interactive_console(pipe)
    os.close(read)


@pytest.fixture(scope="module")
def damaged_shards(synthetic_shards: ShardSets, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The tiny shards with the first image of every training shard replaced by bytes that are no JPEG (in a copy)."""
    shards = synthetic_shards("tiny")
    folder = copy_set(shards["images-train"], tmp_path_factory.mktemp("damaged") / "images-train")
    for shard in sorted(folder.glob("*.tar")):
        corrupt_member(shard, ".jpg", b"not a jpeg")
    return {**shards, "images-train": str(folder / "manifest.json")}


def fit_command(shards: dict[str, str], run_dir: Path, max_steps: int) -> list[str]:
    recipe = tiny_recipe(shards, run_dir, max_steps=max_steps, log_every_n_steps=2, image_log_every_n_steps=0)
    return [sys.executable, "-m", "pretrain", "fit", "--config", str(write_recipe(recipe, run_dir.parent / f"{run_dir.name}.yaml"))]


@pytest.mark.slow
def test_a_terminal_gets_a_bar_with_loss_and_throughput_and_a_log_gets_lines(damaged_shards: dict[str, str], tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TERM": "xterm"}
    env.pop("SLURM_JOB_ID", None)
    drawn = run_in_terminal(fit_command(damaged_shards, tmp_path / "terminal", max_steps=30), env)
    bar = [part for part in drawn.split("\r") if part.startswith("Epoch 0:")]
    assert bar, drawn[-3000:]
    assert any("loss_image=" in part and "samples/s=" in part for part in bar), bar[-3:]
    assert not any(line.startswith("step ") for line in drawn.splitlines())  # the bar replaces the step lines
    assert "fit ended at step 30: skipped image_corrupt_sample=" in drawn

    logged = subprocess.run(fit_command(damaged_shards, tmp_path / "piped", max_steps=30), cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert logged.returncode == 0, logged.stderr[-3000:]
    steps = [line for line in logged.stdout.splitlines() if line.startswith("step ")]
    assert len(steps) == 15 and "\r" not in logged.stdout and "Epoch 0:" not in logged.stdout
    skipped = [line for line in steps if " skipped image_corrupt_sample=" in line]
    assert skipped and skipped[-1] == steps[-1], steps  # once skipped, every later step line says so
    assert f"fit ended at step 30: skipped image_corrupt_sample={skipped[-1].rsplit('=', 1)[1]}" in logged.stdout
