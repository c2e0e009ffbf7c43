"""DeepSpeed ZeRO-2 on 2 CPU ranks (gloo) through :class:`face_core.engine.strategies.CPUDeepSpeedStrategy`:
it trains, saves a sharded ``last.ckpt`` directory atomically, resumes from it, and the
``release`` command consolidates it (``convert_zero_checkpoint_to_fp32_state_dict``) into an
encoder release.

ZeRO-3 (parameters partitioned too) runs the same way: it trains, draws reconstructions (the
forward runs on every rank, as partitioned parameters need) and releases the whole MAE.

Needs a GPU (not run here): bf16 with DeepSpeed's own precision handling, NCCL, CPU/NVMe
optimizer offload (which wants DeepSpeed's CPU Adam), and any throughput figure.
DeepSpeed compiles a communication op on its first CPU run (~1 min): set TORCH_EXTENSIONS_DIR to
a cached folder in CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from synthetic_sets import ShardSets
from tiny_pretraining import tiny_recipe, write_recipe

from face_core.release.loading import load_trained_model
from face_core.release.pretrained import read_release

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "pretrain", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=580)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.mark.slow
def test_zero2_on_two_cpu_ranks_trains_saves_resumes_and_releases(synthetic_shards: ShardSets, tmp_path: Path) -> None:
    shards = synthetic_shards("tiny")
    run_dir = tmp_path / "run"
    recipe = tiny_recipe(
        shards, run_dir, strategy="deepspeed_stage_2", deepspeed_config=str(ROOT / "configs/deepspeed/zero2.json"),
        devices=2, max_steps=6, checkpoint_every_n_steps=3, image_log_every_n_steps=3, log_every_n_steps=3,
    )
    config = write_recipe(recipe, tmp_path / "zero2.yaml")
    first = run("fit", "--config", str(config))
    assert "strategy deepspeed_stage_2" in first.stdout + first.stderr
    last = run_dir / "checkpoints" / "last.ckpt"
    assert sorted(p.name for p in (last / "checkpoint").iterdir()) == [
        "mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt",
    ]  # optimiser state sharded over the two ranks
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # no temporary or old directory left
    assert len(list((run_dir / "reconstructions").glob("*.png"))) >= 2

    second = run("fit", "--config", str(config), "--trainer.max_steps", "9")
    output = second.stdout + second.stderr
    assert "resumed at step 6, epoch 0, RNG restored" in output
    assert "step      9" in output

    released = tmp_path / "encoder"
    run("release", str(last), "--out", str(released))
    release = read_release(released)
    assert release.kind == "encoder" and release.config.embed_dim == 32
    consolidated = load_trained_model(last)  # the same conversion, in this process
    for name, value in consolidated.encoder.state_dict().items():
        torch.testing.assert_close(release.state_dict[name], value, msg=name)


@pytest.mark.slow
def test_zero3_on_two_cpu_ranks_trains_and_releases_the_mae(synthetic_shards: ShardSets, tmp_path: Path) -> None:
    shards = synthetic_shards("tiny")
    run_dir = tmp_path / "run"
    recipe = tiny_recipe(
        shards, run_dir, strategy="deepspeed_stage_3", deepspeed_config=str(ROOT / "configs/deepspeed/zero3.json"),
        devices=2, max_steps=3, checkpoint_every_n_steps=3, image_log_every_n_steps=3, log_every_n_steps=3,
    )
    run("fit", "--config", str(write_recipe(recipe, tmp_path / "zero3.yaml")))
    last = run_dir / "checkpoints" / "last.ckpt"
    assert sorted(p.name for p in (last / "checkpoint").glob("*model_states.pt")) == [
        "zero_pp_rank_0_mp_rank_00_model_states.pt", "zero_pp_rank_1_mp_rank_00_model_states.pt",
    ]  # parameters sharded over the two ranks
    assert (run_dir / "reconstructions" / "step-0000003-image.png").is_file()
    run("release", str(last), "--out", str(tmp_path / "mae"), "--with_decoder", "true")
    release = read_release(tmp_path / "mae")
    assert release.kind == "mae" and "decoder_pred.weight" in release.state_dict

