"""A tracking server that is down stops a training command at once, naming the server, before any step
(face_core.engine.tracking probes it before the logger is made)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from synthetic_sets import ShardSets
from tracking_server import free_port


def test_pretraining_against_a_down_server_fails_before_training(synthetic_shards: ShardSets, tmp_path: Path) -> None:
    image_manifest = synthetic_shards("tiny")["images-train"]
    dead = f"http://127.0.0.1:{free_port()}"
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "pretrain", "fit", "--config", "configs/pretrain/tiny.yaml",
        "--data.images.train", f"[{image_manifest}]", "--data.clips.train", "[]",
        "--model.encoder.img_size", "32", "--data.images.batch_size", "8", "--trainer.output_dir", str(run_dir), "--tracking.tracking_uri", dead,
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[3])
    elapsed = time.monotonic() - started
    print(f"down server reported after {elapsed:.1f} s (process start and imports included)")
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: MLflow tracking server") and dead in last and "unreachable" in last, done.stderr[-3000:]
    assert not list(run_dir.rglob("*.ckpt"))  # nothing trained, nothing saved
