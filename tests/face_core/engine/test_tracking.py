"""A tracking server that is down stops a training command at once, naming the server, before any step."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from tracking_server import free_port


@pytest.fixture(scope="module")
def image_manifest(tmp_path_factory: pytest.TempPathFactory) -> str:
    from data_shards.synth import make_demo_shards

    return make_demo_shards(str(tmp_path_factory.mktemp("shards")), images=40, clips=0, img_size=32)["images-train"]


def test_pretraining_against_a_down_server_fails_before_training(image_manifest: str, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "pretrain", "fit", "--config", "configs/pretrain/tiny.yaml",
        "--data.images.train", f"[{image_manifest}]", "--data.clips.train", "[]",
        "--model.encoder.img_size", "32", "--data.images.batch_size", "8", "--trainer.output_dir", str(run_dir), "--tracking.tracking_uri", dead,
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    elapsed = time.monotonic() - started
    print(f"down server reported after {elapsed:.1f} s (process start and imports included)")
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: MLflow tracking server") and dead in last and "unreachable" in last, done.stderr[-3000:]
    assert not list(run_dir.rglob("*.ckpt"))  # nothing trained, nothing saved
