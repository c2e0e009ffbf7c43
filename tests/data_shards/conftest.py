"""A small demo shard set shared by the data_shards tests (built once per session, in seconds)."""

from pathlib import Path

import pytest

from data_shards.synth import make_demo_shards


@pytest.fixture(scope="session")
def demo_shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Manifest paths of a tiny synthetic demo set: images 300, clips 40, 64 px, 8 frames."""
    out: Path = tmp_path_factory.mktemp("demo")
    return make_demo_shards(str(out), images=300, clips=40, img_size=64, frames=8, seed=0)
