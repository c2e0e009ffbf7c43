"""Releases through a real MLflow server: log, register, alias, load in a fresh process, same numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tracking_server import MlflowServer, free_port

from face_core.model.config import MAEConfig, ViTConfig
from face_core.model.mae import MaskedAutoencoder
from face_core.model.vit import VisionTransformer
from face_core.release.pretrained import write_release
from face_core.release.registry import ReleaseChecksumError, download_release, register_release
from plumbing.recipes import ConfigError

ENCODER = ViTConfig(img_size=32, patch_size=8, num_frames=4, tubelet_size=2, embed_dim=32, depth=2, num_heads=2)


def pixels(count: int = 3) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)


def expected_embedding(encoder: VisionTransformer, batch: np.ndarray) -> np.ndarray:
    """What the released model must give: our encoder on pixels normalised as in training."""
    from data_shards.loaders import normalize_pixels

    with torch.inference_mode():
        return encoder.eval()(normalize_pixels(torch.from_numpy(batch))).numpy()


def run_fresh(script: str, tracking_uri: str, cache: Path, timeout: float = 180) -> None:
    """Run ``script`` in a new Python process pointed at the server (downloads cached in ``cache``)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "FACE_RELEASE_CACHE": str(cache)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.slow
def test_release_registers_with_alias_and_loads_back_exactly_in_a_fresh_process(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    torch.manual_seed(0)
    mae = MaskedAutoencoder(MAEConfig(encoder=ENCODER, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2))
    folder = write_release(mae, mae.config, tmp_path / "release")
    version = register_release(folder, "face-test-mae", alias="champion", tracking_uri=mlflow_server.url)

    client = MlflowClient(mlflow_server.url)
    assert client.get_model_version_by_alias("face-test-mae", "champion").version == version.version == "1"
    assert version.tags["package_version"] and version.tags["run_id"] == version.run_id
    batch = pixels()
    np.save(tmp_path / "pixels.npy", batch)
    np.save(tmp_path / "expected.npy", expected_embedding(mae.encoder, batch))

    run_fresh(
        f"""
        import numpy as np, torch, mlflow
        from data_shards.loaders import normalize_pixels
        from face_core.release.loading import load_model
        x = np.load({str(tmp_path / 'pixels.npy')!r})
        expected = np.load({str(tmp_path / 'expected.npy')!r})
        model = load_model("models:/face-test-mae@champion")  # our loader: factory + safetensors
        with torch.inference_mode():
            ours = model.encoder(normalize_pixels(torch.from_numpy(x))).numpy()
        assert np.array_equal(ours, expected), abs(ours - expected).max()
        for uri in ("models:/face-test-mae@champion", "runs:/{version.run_id}/model"):
            served = mlflow.pyfunc.load_model(uri)  # plain MLflow, no import of ours by hand
            out = served.predict(x, params={{"batch_size": 2}})
            assert set(out) == {{"embedding"}}, set(out)
            assert out["embedding"].dtype == np.float32 and np.array_equal(out["embedding"], expected), uri
        print("fresh process: identical outputs")
        """,
        mlflow_server.url,
        tmp_path / "cache",
    )


@pytest.mark.slow
def test_signature_input_example_and_requirements_are_recorded(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    from mlflow.models import Model

    torch.manual_seed(1)
    encoder = VisionTransformer(ENCODER)
    folder = write_release(encoder, ENCODER, tmp_path / "release")
    version = register_release(folder, "face-test-encoder", tracking_uri=mlflow_server.url)
    local = download_release("models:/face-test-encoder/1", dst=tmp_path / "download", tracking_uri=mlflow_server.url)
    assert sorted(p.name for p in local.iterdir()) == ["config.json", "model.safetensors"]
    model_dir = local.parent.parent
    logged = Model.load(str(model_dir))
    assert logged.flavors["python_function"]["loader_module"] == "face_core.release.pretrained"
    assert "python_model" not in logged.flavors["python_function"]  # nothing pickled
    spec = logged.signature.inputs.to_dict()[0]["tensor-spec"]
    assert spec["dtype"] == "uint8" and list(spec["shape"]) == [-1, 3, 32, 32]
    assert [o["name"] for o in logged.signature.outputs.to_dict()] == ["embedding"]
    assert (model_dir / "input_example.json").is_file()
    requirements = (model_dir / "requirements.txt").read_text().split()
    assert any(r.startswith("face-foundation==") for r in requirements) and any(r.startswith("torch==") for r in requirements)
    assert logged.metadata["package_version"] == version.tags["package_version"]
    assert set(logged.metadata["sha256"]) == {"config.json", "model.safetensors"}


@pytest.mark.slow
def test_an_altered_artifact_is_refused_before_loading(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    torch.manual_seed(2)
    folder = write_release(VisionTransformer(ENCODER), ENCODER, tmp_path / "release")
    version = register_release(folder, "face-test-tampered", tracking_uri=mlflow_server.url)
    stored = [p for p in (mlflow_server.root / "artifacts").rglob("model.safetensors") if version.source.split("/")[-1] in str(p)]
    assert len(stored) == 1, stored
    data = bytearray(stored[0].read_bytes())
    data[-1] ^= 0xFF  # flip one weight byte on the server's disk
    stored[0].write_bytes(bytes(data))
    with pytest.raises(ReleaseChecksumError, match="changed \\['model.safetensors'\\]"):
        download_release("models:/face-test-tampered/1", dst=tmp_path / "download", tracking_uri=mlflow_server.url)


def test_a_down_server_is_reported_at_once_naming_it(tmp_path: Path) -> None:
    torch.manual_seed(3)
    folder = write_release(VisionTransformer(ENCODER), ENCODER, tmp_path / "release")
    dead = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(ConfigError, match=f"MLflow tracking server {dead} is unreachable"):
        register_release(folder, "never-registered", tracking_uri=dead)
    print(f"down server reported after {time.monotonic() - started:.2f} s")


def test_release_errors_name_the_folder_and_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="config.json: missing"):
        register_release(tmp_path / "absent", "x", tracking_uri="sqlite:///unused.db")
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "config.json").write_text(json.dumps({"kind": "pickle"}))
    with pytest.raises(ConfigError, match="kind='pickle' names no loader_module"):
        register_release(odd, "x", tracking_uri="sqlite:///unused.db")
    (odd / "config.json").write_text(json.dumps({"kind": "pickle", "loader_module": "json"}))
    with pytest.raises(ConfigError, match="loader_module='json' defines no _load_pyfunc"):
        register_release(odd, "x", tracking_uri="sqlite:///unused.db")
    folder = write_release(VisionTransformer(ENCODER), ENCODER, tmp_path / "release")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ConfigError, match="no MLflow tracking URI"):
        register_release(folder, "x")


@pytest.mark.slow
def test_release_of_a_checkpoint_lands_in_its_training_run(mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    from face_core.release.registry import register_trained_release

    client = MlflowClient(mlflow_server.url)
    training = client.create_run(client.create_experiment("face-test-training"), run_name="pretrain")
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    record = {"tracking_uri": mlflow_server.url, "experiment_id": training.info.experiment_id, "run_id": training.info.run_id}
    (run_dir / "mlflow_run.json").write_text(json.dumps(record))  # as face_core.engine.tracking writes it
    torch.manual_seed(4)
    folder = write_release(VisionTransformer(ENCODER), ENCODER, tmp_path / "release")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    version = register_trained_release(folder, "face-test-lineage", alias="champion", checkpoint=run_dir / "checkpoints" / "last.ckpt")
    assert version.run_id == training.info.run_id
    assert client.get_model_version_by_alias("face-test-lineage", "champion").version == version.version
    local = download_release(f"runs:/{training.info.run_id}/model", dst=tmp_path / "download", tracking_uri=mlflow_server.url)
    assert (local / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()


@pytest.mark.slow
def test_downloads_are_cached_by_content_and_a_damaged_copy_is_fetched_again(
    mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACE_RELEASE_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(5)
    folder = write_release(VisionTransformer(ENCODER), ENCODER, tmp_path / "release")
    version = register_release(folder, "face-test-cached", alias="champion", tracking_uri=mlflow_server.url)
    first = download_release("models:/face-test-cached/1", tracking_uri=mlflow_server.url)
    assert first.parent == tmp_path / "cache" and not list(first.parent.glob(".download-*"))
    weights = first / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = download_release(f"runs:/{version.run_id}/model", tracking_uri=mlflow_server.url)
    assert again == first and weights.stat().st_mtime_ns == stamp  # same content, not downloaded twice
    weights.write_bytes(weights.read_bytes()[:-1])  # a truncated copy in the cache
    repaired = download_release("models:/face-test-cached@champion", tracking_uri=mlflow_server.url)
    assert (repaired / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()


@pytest.mark.slow
def test_release_command_registers_with_name_and_alias(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    torch.manual_seed(6)
    source = write_release(VisionTransformer(ENCODER), ENCODER, tmp_path / "trained")  # release accepts a release folder too
    command = [
        sys.executable, "-m", "pretrain", "release", str(source), "--out", str(tmp_path / "released"),
        "--name", "face-test-cli", "--alias", "champion", "--tracking_uri", mlflow_server.url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "models:/face-test-cli@champion" in done.stdout
    version = MlflowClient(mlflow_server.url).get_model_version_by_alias("face-test-cli", "champion")
    local = download_release(f"models:/face-test-cli/{version.version}", dst=tmp_path / "download", tracking_uri=mlflow_server.url)
    assert (local / "model.safetensors").read_bytes() == (tmp_path / "released" / "model.safetensors").read_bytes()
