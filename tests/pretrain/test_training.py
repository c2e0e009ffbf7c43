"""End-to-end pretraining on tiny synthetic shards (CPU), the modality schedule, tracking and release."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

import pytest
import torch
from synthetic_sets import ShardSets
from tiny_pretraining import tiny_recipe, write_recipe

from data_shards.interleave import InterleavedBatches, epoch_schedule
from face_core.engine.config import TrackingConfig
from face_core.engine.tracking import make_mlflow_logger, resolve_tracking_uri
from face_core.release.loading import release_checkpoint
from face_core.release.pretrained import read_release
from plumbing.recipes import ConfigError, load_recipe
from pretrain.cli import fit
from pretrain.config import PretrainConfig
from pretrain.data_module import PretrainDataModule
from pretrain.training import run_pretraining


@pytest.fixture(scope="module")
def shards(synthetic_shards: ShardSets) -> dict[str, str]:
    return synthetic_shards("tiny")


def tiny_config(shards: dict[str, str], output_dir: Path, **trainer: object) -> PretrainConfig:
    recipe = write_recipe(tiny_recipe(shards, output_dir, **trainer), output_dir.parent / f"{output_dir.name}.yaml")
    return PretrainConfig(**load_recipe(fit, str(recipe)))


def test_schedule_is_seeded_per_epoch_with_the_ratio() -> None:
    first = epoch_schedule(12, 3, seed=7, epoch=0)
    assert sorted(first) == ["clip"] * 3 + ["image"] * 12
    assert first == epoch_schedule(12, 3, seed=7, epoch=0)  # same on every rank
    assert first != epoch_schedule(12, 3, seed=7, epoch=1)  # reshuffled each epoch
    assert first != epoch_schedule(12, 3, seed=8, epoch=0)


def test_interleaved_batches_resume_mid_epoch(shards: dict[str, str], tmp_path: Path) -> None:
    config = tiny_config(shards, tmp_path / "run")
    data = PretrainDataModule(config.data, config.model.encoder, seed=0, world_size=1)
    steps = data.steps_per_epoch()
    assert steps == {"image": 17, "clip": 4}  # 140 images / 8; 28 clips / 4 = 7 steps a pass, 0.6 of a pass
    loaders = data._build_loaders(rank=0)
    whole = InterleavedBatches(loaders, steps, seed=0, position=lambda: (1, 0))
    full = [(b["modality"], b["key"]) for b in whole]
    assert [m for m, _ in full] == epoch_schedule(17, 4, 0, 1)
    restored = [(1, 9)]  # Lightning's progress counters, as a resume restores them
    resumed = InterleavedBatches(loaders, steps, seed=0, position=lambda: restored[0])
    rest = [(b["modality"], b["key"]) for b in resumed]
    assert [m for m, _ in rest] == [m for m, _ in full[9:]]  # the schedule continues at batch 9
    assert {k for _, keys in rest for k in keys} != {k for _, keys in full[:9] for k in keys}
    for modality in ("image", "clip"):  # each loader continued after the batches already consumed
        assert loaders[modality].stream.state.start_batch == [m for m, _ in full[:9]].count(modality)
    restored[0] = (2, 0)
    assert len(list(resumed)) == 21  # the next epoch is a whole one again


@pytest.mark.slow
def test_tiny_pretraining_end_to_end(shards: dict[str, str], tmp_path: Path) -> None:
    config = tiny_config(shards, tmp_path / "run", max_epochs=3)
    run_dir = Path(run_pretraining(config))
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(2, 64, 2))  # 3 epochs x 21 steps, logged every 2
    images = [m["train/loss_image"] for m in metrics if "train/loss_image" in m]
    clips = [m["train/loss_clip"] for m in metrics if "train/loss_clip" in m]
    assert len(clips) >= 5
    assert sum(images[-5:]) / 5 < 0.8 * sum(images[:3]) / 3, images  # the loss falls clearly
    last = metrics[-1]
    assert last["perf/samples_per_s"] > 0 and last["perf/tokens_per_s"] > 0 and last["perf/tflops_per_device"] > 0
    assert "perf/mfu" not in last  # no known peak on a CPU
    assert last["perf/peak_memory_gib"] > 0 and last["data/skipped_image_corrupt_sample"] == 0
    assert last["train/lr"] < metrics[3]["train/lr"]  # cosine decay after warmup
    pictures = sorted(p.name for p in (run_dir / "reconstructions").iterdir())
    assert pictures == [f"step-{s:07d}-{m}.png" for s in (10, 20, 30, 40, 50, 60) for m in ("clip", "image")]

    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)  # no pickled objects
    assert checkpoint["global_step"] == 63
    assert checkpoint["hyper_parameters"]["model_config"] == dataclasses.asdict(config.model)
    assert checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 2, "batches_done": 21}]
    assert json.loads((run_dir / "config.json").read_text())["trainer"]["max_epochs"] == 3

    from mlflow.tracking import MlflowClient

    record = json.loads((run_dir / "mlflow_run.json").read_text())
    assert record["tracking_uri"] == f"sqlite:///{run_dir.resolve() / 'mlflow.db'}"
    client = MlflowClient(record["tracking_uri"])
    run = client.get_run(record["run_id"])
    assert run.data.params["optim/base_lr"] == "0.1" and run.data.params["derived/effective_batch"] == "8"
    assert len(client.get_metric_history(record["run_id"], "train/loss_image")) == len(images)
    assert len(client.list_artifacts(record["run_id"], "reconstructions")) == 12

    encoder = read_release(release_checkpoint(run_dir / "checkpoints" / "last.ckpt", tmp_path / "encoder"))
    assert encoder.kind == "encoder" and encoder.config == config.model.encoder
    torch.testing.assert_close(encoder.state_dict["blocks.0.attn.qkv.weight"], checkpoint["state_dict"]["model.encoder.blocks.0.attn.qkv.weight"])
    full = read_release(release_checkpoint(run_dir / "checkpoints" / "last.ckpt", tmp_path / "full", with_decoder=True))
    assert full.kind == "mae" and "decoder_pred.weight" in full.state_dict


def test_tracking_uri_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(TrackingConfig(), tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///from-env.db")
    assert resolve_tracking_uri(TrackingConfig(), tmp_path) == "sqlite:///from-env.db"
    assert resolve_tracking_uri(TrackingConfig(tracking_uri="sqlite:///given.db"), tmp_path) == "sqlite:///given.db"


def test_unreachable_tracking_server_fails_before_training(shards: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    with pytest.raises(ConfigError, match=f"MLflow tracking server {uri} is unreachable"):
        make_mlflow_logger(TrackingConfig(tracking_uri=uri), tmp_path)
    config = tiny_config(shards, tmp_path / "run")
    config.tracking.tracking_uri = uri
    with pytest.raises(ConfigError, match=uri):
        run_pretraining(config)
    assert not (tmp_path / "run" / "checkpoints").exists()
