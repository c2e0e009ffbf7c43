"""Shared fixtures: tiny identity-confounded demo shards and a tiny encoder release to fine-tune from."""


import pytest


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Demo shards at 32 px / 4 frames, and an encoder release built for 64 px / 8 frames.

    The size mismatch is deliberate: fine-tuning must interpolate the position table.
    """
    from data_shards.synth import make_demo_shards
    from face_core.model.config import ViTConfig
    from face_core.model.vit import VisionTransformer
    from face_core.release.pretrained import write_release

    root = tmp_path_factory.mktemp("finetune-demo")
    sets = make_demo_shards(str(root / "data"), images=160, clips=32, img_size=32, frames=4, seed=3)
    encoder = ViTConfig(img_size=64, patch_size=8, num_frames=8, tubelet_size=2, embed_dim=64, depth=2, num_heads=2)
    write_release(VisionTransformer(encoder), encoder, root / "encoder")
    return {**sets, "encoder": str(root / "encoder")}
