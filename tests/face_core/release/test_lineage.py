"""One MLflow store for every stage, and lineage: what a fine-tuning run started from, what a release came from.

The store is a SQLite file shared by pretraining, fine-tuning and the release, as scripts/pipeline.sh
runs them (every stage a real command in a fresh process); model URIs resolve against the real
tracking server of this session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from synthetic_sets import ShardSets
from tracking_server import MlflowServer

from face_core.model.config import ViTConfig
from face_core.model.vit import VisionTransformer
from face_core.release.pretrained import write_release
from face_core.release.registry import download_release, register_release, source_lineage
from plumbing.files import file_sha256

ROOT = Path(__file__).resolve().parents[3]
ENCODER = ViTConfig(img_size=32, patch_size=8, num_frames=4, tubelet_size=2, embed_dim=32, depth=2, num_heads=2)


def run_stage(*args: str, env: dict[str, str], cwd: Path) -> str:
    """Run ``python -m <args>`` in ``cwd``; its stdout."""
    done = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def image_sets(synthetic_shards: ShardSets) -> dict[str, str]:
    return synthetic_shards("tiny")  # the image sets only: every stage below is given no clips


@pytest.mark.slow
def test_pretraining_finetuning_and_release_share_one_store_and_record_their_lineage(image_sets: dict[str, str], tmp_path: Path) -> None:
    from mlflow import MlflowClient
    from mlflow.models import Model

    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    work = tmp_path / "work"  # the current directory: MLflow's default artifact root would be ./mlruns here
    work.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1", "FACE_RELEASE_CACHE": str(tmp_path / "cache")}
    pretrain_dir, finetune_dir = tmp_path / "pretrain", tmp_path / "finetune"
    run_stage(
        "pretrain", "fit", "--config", str(ROOT / "configs" / "pretrain" / "tiny.yaml"),
        "--data.images.train", f"[{image_sets['images-train']}]", "--data.clips.train", "[]", "--data.images.batch_size", "8",
        "--model.encoder.img_size", "32", "--trainer.max_steps", "4", "--trainer.output_dir", str(pretrain_dir),
        env=env, cwd=work,
    )  # fmt: skip
    init = pretrain_dir / "checkpoints" / "last.ckpt"
    data = [(f"--data.images.{split}", f"[{image_sets[f'images-{split}']}]") for split in ("train", "val", "test")]
    run_stage(
        "finetune", "fit", "--config", str(ROOT / "configs" / "finetune" / "tiny.yaml"), "--model.init", str(init),
        *[item for pair in data for item in pair], "--data.clips.train", "[]", "--data.clips.val", "[]", "--data.clips.test", "[]",
        "--data.images.batch_size", "16", "--data.num_workers", "0", "--data.samples_per_epoch", "0",
        "--trainer.max_epochs", "1", "--trainer.output_dir", str(finetune_dir), "--eval.identity_probe", "false",
        env=env, cwd=work,
    )  # fmt: skip
    printed = run_stage(
        "finetune", "release", str(finetune_dir / "checkpoints" / "best.ckpt"), "--out", str(tmp_path / "release"),
        "--name", "face-test-lineage", "--alias", "champion", env=env, cwd=work,
    )  # fmt: skip
    assert f"at {uri}" in printed

    assert (store / "mlartifacts").is_dir() and not (work / "mlruns").exists()  # every artifact beside the one database
    client = MlflowClient(uri)
    pretrain_run = json.loads((pretrain_dir / "mlflow_run.json").read_text())
    finetune_run = json.loads((finetune_dir / "mlflow_run.json").read_text())
    assert pretrain_run["tracking_uri"] == finetune_run["tracking_uri"] == uri

    tags = client.get_run(finetune_run["run_id"]).data.tags  # what fine-tuning started from
    assert tags["init"] == str(init) and tags["init.sha256"] == file_sha256(init)
    assert tags["init.run_id"] == pretrain_run["run_id"] and tags["init.tracking_uri"] == uri
    link = f"#/experiments/{pretrain_run['experiment_id']}/runs/{pretrain_run['run_id']}"
    assert link in tags["mlflow.note.content"], tags["mlflow.note.content"]

    version = client.get_model_version_by_alias("face-test-lineage", "champion")  # what the release came from
    assert version.run_id == version.tags["training_run_id"] == finetune_run["run_id"]
    manifests = {image_sets[f"images-{split}"]: file_sha256(image_sets[f"images-{split}"]) for split in ("train", "val", "test")}
    assert json.loads(version.tags["data_manifests_sha256"]) == manifests
    assert f"python -m finetune score models:/face-test-lineage/{version.version}" in version.description
    assert "Data manifests (SHA-256)" in version.description and finetune_run["run_id"] in version.description
    assert "models:/face-test-lineage@champion" in client.get_registered_model("face-test-lineage").description
    model_dir = download_release(f"models:/face-test-lineage/{version.version}", dst=tmp_path / "download", tracking_uri=uri).parent.parent
    lineage = Model.load(str(model_dir)).metadata["lineage"]
    assert lineage["recipe"] == json.loads((finetune_dir / "config.json").read_text()) and lineage["training_run_id"] == finetune_run["run_id"]

    best = finetune_dir / "checkpoints" / "best.ckpt"  # release folders made without --name record the same lineage
    released = {"pretrain": (init, pretrain_run, {image_sets["images-train"]: file_sha256(image_sets["images-train"])}),
                "finetune": (best, finetune_run, manifests)}
    for stage, (checkpoint, run, data) in released.items():
        run_stage(stage, "release", str(checkpoint), "--out", str(tmp_path / f"{stage}-plain"), env=env, cwd=work)
        recorded = json.loads((tmp_path / f"{stage}-plain" / "config.json").read_text())["lineage"]
        assert (recorded["training_run_id"], recorded["training_tracking_uri"]) == (run["run_id"], uri), stage
        assert recorded["checkpoint"] == str(checkpoint) and recorded["checkpoint_sha256"] == file_sha256(checkpoint), stage
        assert recorded["data_manifests_sha256"] == data, stage
    registered = json.loads((tmp_path / "release" / "config.json").read_text())["lineage"]
    assert {key: registered[key] for key in lineage} == lineage and registered["checkpoint_sha256"] == file_sha256(best)


@pytest.mark.slow
def test_a_run_started_from_a_registered_model_names_its_version_and_links_it(
    mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("FACE_RELEASE_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(8)
    folder = write_release(VisionTransformer(ENCODER), ENCODER, tmp_path / "release")
    version = register_release(folder, "face-test-source", alias="champion")
    weights = json.loads((folder / "config.json").read_text())["weights_sha256"]

    tags, inputs = source_lineage("models:/face-test-source@champion", run_store=mlflow_server.url)
    assert tags["init"] == "models:/face-test-source@champion" and tags["init.tracking_uri"] == mlflow_server.url
    assert (tags["init.model_name"], tags["init.model_version"], tags["init.run_id"]) == ("face-test-source", version.version, version.run_id)
    assert tags["init.sha256"] == weights
    assert f"(#/models/face-test-source/versions/{version.version})" in tags["mlflow.note.content"]
    assert inputs == [version.source.removeprefix("models:/")] and inputs[0].startswith("m-")  # the logged model, linked as the run's input

    elsewhere, unlinked = source_lineage(f"runs:/{version.run_id}/model", run_store="sqlite:///another.db")
    assert elsewhere["init.run_id"] == version.run_id and "init.model_name" not in elsewhere and unlinked == []
    assert "](#/" not in elsewhere["mlflow.note.content"] and mlflow_server.url in elsewhere["mlflow.note.content"]


def test_scoring_an_unknown_model_names_the_uri_and_the_store_in_one_line(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "finetune", "score", "models:/face-test-never-released@champion",
        "--image_test", "[x/manifest.json]", "--tracking_uri", mlflow_server.url,
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert [line for line in lines if "error:" in line] == lines[-1:], done.stderr[-3000:]
    assert lines[-1].startswith("error: models:/face-test-never-released@champion: Registered Model with name=face-test-never-released not found")
    assert f"in the MLflow store {mlflow_server.url}" in lines[-1] and "pass --tracking_uri or set MLFLOW_TRACKING_URI" in lines[-1]
