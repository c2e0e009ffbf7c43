"""Fixtures every test folder shares: synthetic shard sets (in the sizes of :mod:`synthetic_sets`), the
fine-tuning demo, a real MLflow server.

The test folders mirror the packages and have no ``__init__.py`` (pytest's rootdir-based "prepend"
import), so this file's folder, ``tests/``, is on ``sys.path`` before any test module is imported:
the helper modules beside it (:mod:`synthetic_sets`, :mod:`tiny_pretraining`, :mod:`finetune_demo`,
:mod:`damage`, :mod:`public_checkpoints`, :mod:`tracking_server`) import by plain name from every folder. A helper used by the
tests of one folder only sits in that folder; no test imports a ``conftest`` module by name.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from synthetic_sets import SHARD_SIZES, ShardSets
from tracking_server import MlflowServer, running_server


@pytest.fixture(scope="session")
def synthetic_shards(tmp_path_factory: pytest.TempPathFactory) -> ShardSets:
    """``synthetic_shards(size)``: the manifest of each set (``images-train`` ... ``clips-test``) of the
    :data:`SHARD_SIZES` set ``size``, built on first use and shared by the whole session (read only:
    a test that damages shards copies them first, see :mod:`damage`)."""
    from data_shards.synth import make_demo_shards

    built: dict[str, dict[str, str]] = {}

    def shards(size: str) -> dict[str, str]:
        if size not in built:
            built[size] = make_demo_shards(str(tmp_path_factory.mktemp(f"shards-{size}")), **SHARD_SIZES[size])
        return dict(built[size])

    return shards


@pytest.fixture(scope="session")
def demo(synthetic_shards: ShardSets, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The fine-tuning demo: the ``tiny`` shards (32 px, 4 frames) and an encoder release built for 64 px
    and 8 frames (key ``encoder``). The size mismatch is deliberate: fine-tuning must interpolate the
    position table. See :mod:`finetune_demo` for the recipe pointed at them."""
    from face_core.model.config import ViTConfig
    from face_core.model.vit import VisionTransformer
    from face_core.release.pretrained import write_release

    folder = tmp_path_factory.mktemp("finetune-demo") / "encoder"
    encoder = ViTConfig(img_size=64, patch_size=8, num_frames=8, tubelet_size=2, embed_dim=64, depth=2, num_heads=2)
    write_release(VisionTransformer(encoder), encoder, folder)
    return {**synthetic_shards("tiny"), "encoder": str(folder)}


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real tracking server on 127.0.0.1 for the session (see :mod:`tracking_server`); its URI and storage folder."""
    with running_server(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server
