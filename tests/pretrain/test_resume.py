"""A pretraining process killed with SIGKILL resumes from last.ckpt: step count, optimiser,
scheduler, RNG and the data position continue where the checkpoint left them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from synthetic_sets import ShardSets
from tiny_pretraining import tiny_recipe, write_recipe

from face_core.engine.optim import warmup_cosine

ROOT = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH, EPOCHS = 21, 3


def fit_command(recipe: Path) -> list[str]:
    return [sys.executable, "-m", "pretrain", "fit", "--config", str(recipe)]


def data_position(checkpoint: dict) -> dict:
    return checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]


def read_step(checkpoint: Path) -> int:
    try:
        return int(torch.load(checkpoint, weights_only=True)["global_step"])
    except (FileNotFoundError, EOFError, RuntimeError):
        return -1


@pytest.mark.slow
def test_killed_run_resumes_where_it_stopped(synthetic_shards: ShardSets, tmp_path: Path) -> None:
    shards = synthetic_shards("tiny")
    run_dir = tmp_path / "run"
    recipe = write_recipe(tiny_recipe(shards, run_dir, max_epochs=EPOCHS, checkpoint_every_n_steps=4, image_log_every_n_steps=0), tmp_path / "r.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    last = run_dir / "checkpoints" / "last.ckpt"
    first = subprocess.Popen(fit_command(recipe), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while read_step(last) < 20 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        os.killpg(first.pid, signal.SIGKILL)  # no chance to save anything on the way out
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    saved = torch.load(last, weights_only=True)
    stopped = saved["global_step"]
    assert 20 <= stopped < STEPS_PER_EPOCH * EPOCHS, f"killed at step {stopped}: not mid-training"
    assert first.returncode == -signal.SIGKILL
    # The data position saved: the epoch and batches trained in it (an epoch-end save holds all 21).
    epoch, batches_done = (stopped - 1) // STEPS_PER_EPOCH, (stopped - 1) % STEPS_PER_EPOCH + 1
    assert data_position(saved) == {"epoch": epoch, "batches_done": batches_done}
    logged_before = len((run_dir / "metrics.jsonl").read_text().splitlines())

    second = subprocess.run(fit_command(recipe), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    output = second.stdout + second.stderr
    assert f"resuming from {last}" in output
    assert "not resumable" not in output  # Lightning sees the interleaved loader as stateful
    assert f"resumed at step {stopped}, epoch {stopped // STEPS_PER_EPOCH}, RNG restored" in output
    if batches_done < STEPS_PER_EPOCH:
        assert f"data: epoch {epoch} continues after batch {batches_done} of {STEPS_PER_EPOCH}" in output

    resumed = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()[logged_before:]]
    first_logged = stopped + 2 - stopped % 2
    assert [m["step"] for m in resumed] == list(range(first_logged, STEPS_PER_EPOCH * EPOCHS + 1, 2))  # not from step 0
    total = STEPS_PER_EPOCH * EPOCHS
    peak = 0.1 * 8 / 256
    for m in resumed:  # the scheduler continued: lr after step s is the schedule's value at s
        assert m["train/lr"] == pytest.approx(warmup_cosine(m["step"], total, int(0.1 * total), peak, 0.0), rel=1e-6)
    final = torch.load(last, weights_only=True)
    assert final["global_step"] == total
    assert data_position(final) == {"epoch": EPOCHS - 1, "batches_done": STEPS_PER_EPOCH}
    adam_steps = {int(s["step"]) for s in final["optimizer_states"][0]["state"].values()}
    assert adam_steps == {total}  # optimiser moments were restored, not restarted
