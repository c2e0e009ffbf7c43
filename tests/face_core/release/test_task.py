"""Fine-tuned releases: checkpoint -> folder -> MLflow registry -> a fresh process, same probabilities."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from finetune_demo import tiny_config


def reference_outputs(checkpoint: str, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """What the release must give: the trained module's own model (identity head and all) on the same input."""
    from data_shards.loaders import normalize_pixels
    from finetune.lightning_module import FinetuneModule

    module = FinetuneModule.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True).eval()
    with torch.inference_mode():
        out = module.model(normalize_pixels(torch.from_numpy(pixels)), ["au_image", "expression_image"])
    return {
        "embedding": out["feature"].numpy(),
        "au_probabilities": out["au_image"].sigmoid().numpy(),
        "expression_probabilities": out["expression_image"].softmax(dim=-1).numpy(),
    }


@pytest.mark.slow
def test_finetuned_model_released_registered_and_served_in_a_fresh_process(demo: dict[str, str], tmp_path: Path) -> None:
    from mlflow import MlflowClient
    from mlflow.models import Model

    from face_core.release.registry import download_release
    from face_core.release.task import read_task_release
    from finetune.cli import release
    from finetune.training import run_finetuning

    config = tiny_config(demo, tmp_path / "run", "--eval.test", "false", "--eval.identity_probe", "false")
    assert config.iat.strength > 0 and config.model.moae.top_blocks > 0  # the identity head and MoAE are exercised
    checkpoint = run_finetuning(config).best_checkpoint
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    folder = Path(release(checkpoint, out=str(tmp_path / "release"), name="face-au-tiny", alias="champion", tracking_uri=tracking_uri))
    version = MlflowClient(tracking_uri).get_model_version_by_alias("face-au-tiny", "champion")

    stored = json.loads((folder / "config.json").read_text())
    assert stored["kind"] == "task" and stored["spec"]["subjects"] == [] and stored["spec"]["subject_maps"] == {}
    assert set(stored["au_thresholds"]) == {"image", "clip"} and len(stored["au_thresholds"]["image"]) == len(stored["spec"]["au_ids"])
    release = read_task_release(folder)
    assert release.model.identity_head is None  # no subject information leaves with the model

    pixels = np.random.default_rng(5).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    expected = reference_outputs(checkpoint, pixels)
    np.savez(tmp_path / "expected.npz", pixels=pixels, **expected)

    logged = Model.load(str(download_release("models:/face-au-tiny@champion", dst=tmp_path / "dl", tracking_uri=tracking_uri).parent.parent))
    assert logged.flavors["python_function"]["loader_module"] == "face_core.release.task"
    assert logged.metadata["au_ids"] == stored["spec"]["au_ids"] and logged.metadata["class_names"] == stored["spec"]["class_names"]
    assert [o["name"] for o in logged.signature.outputs.to_dict()] == ["embedding", "au_probabilities", "expression_probabilities"]

    script = f"""
        import numpy as np, mlflow
        from face_core.release.task import load_task_model
        data = np.load({str(tmp_path / 'expected.npz')!r})
        for uri in ("models:/face-au-tiny@champion", "runs:/{version.run_id}/model"):
            out = mlflow.pyfunc.load_model(uri).predict(data["pixels"])
            for name in ("embedding", "au_probabilities", "expression_probabilities"):
                assert np.array_equal(out[name], data[name]), (uri, name, abs(out[name] - data[name]).max())
        assert load_task_model("models:/face-au-tiny@champion").spec.au_ids
        print("identical")
        from finetune.cli import score
        metrics = score("models:/face-au-tiny@champion", image_test=[{demo['images-test']!r}], clip_test=[{demo['clips-test']!r}])
        assert set(metrics) >= {{"test/au_f1_image", "test/au_f1_valthr_image", "test/war_image", "test/uar_clip"}}, metrics
        assert metrics["test/samples_image"] > 0 and all(0.0 <= metrics[k] <= 1.0 for k in metrics if not k.startswith("test/samples"))
    """
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "FACE_RELEASE_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "identical" in done.stdout, done.stdout[-2000:] + done.stderr[-3000:]


def test_release_refuses_what_is_not_a_finetuning_checkpoint(tmp_path: Path) -> None:
    from face_core.release.task import read_task_release
    from finetune.release import release_finetuned

    with pytest.raises(FileNotFoundError, match="no such file"):
        release_finetuned(tmp_path / "absent.ckpt", tmp_path / "out")
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"model_config": {}}}, other)
    with pytest.raises(ValueError, match="not a fine-tuning checkpoint"):
        release_finetuned(other, tmp_path / "out")
    (tmp_path / "folder").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json: missing"):
        read_task_release(tmp_path / "folder")


def test_the_clip_frame_stride_is_read_from_new_and_old_recipes() -> None:
    from face_core.release.task import recorded_frame_stride

    assert recorded_frame_stride({"data": {"clips": {"frame_stride": 3}}}) == 3
    assert recorded_frame_stride({"data": {"clip_stride": 2}}) == 2  # a release written before the data sections
    assert recorded_frame_stride({}) == 1
