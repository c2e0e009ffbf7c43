"""Strategy, accelerator and precision selection from the trainer config (no processes started)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lightning.pytorch.strategies import DDPStrategy

from face_core.engine.config import TrainerConfig
from face_core.engine.strategies import CPUDeepSpeedStrategy, build_strategy, deepspeed_config, resolve_precision
from plumbing.recipes import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def test_auto_and_ddp() -> None:
    assert build_strategy(TrainerConfig(strategy="auto"), "cpu", 8) == "auto"
    assert isinstance(build_strategy(TrainerConfig(strategy="auto", devices=2), "cpu", 8), DDPStrategy)
    assert isinstance(build_strategy(TrainerConfig(strategy="ddp"), "cpu", 8), DDPStrategy)


def test_precision_is_bf16_on_gpu_and_fp32_on_cpu() -> None:
    assert resolve_precision(TrainerConfig(), "gpu") == "bf16-mixed"
    assert resolve_precision(TrainerConfig(), "cpu") == "32-true"
    assert resolve_precision(TrainerConfig(precision="32"), "gpu") == "32-true"


@pytest.mark.parametrize("stage", [2, 3])
def test_shipped_deepspeed_configs_match_their_stage(stage: int) -> None:
    path = ROOT / "configs" / "deepspeed" / f"zero{stage}.json"
    trainer = TrainerConfig(strategy=f"deepspeed_stage_{stage}", deepspeed_config=str(path))
    config = deepspeed_config(trainer, micro_batch_size=32)
    assert config["zero_optimization"]["stage"] == stage and config["train_micro_batch_size_per_gpu"] == 32
    assert "gradient_accumulation_steps" not in config  # Lightning sets it from the trainer
    assert isinstance(build_strategy(trainer, "cpu", 32), CPUDeepSpeedStrategy)


def test_deepspeed_config_errors_name_the_key(tmp_path: Path) -> None:
    wrong = tmp_path / "zero.json"
    wrong.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    with pytest.raises(ConfigError, match="trainer.deepspeed_config=.*stage 3.*deepspeed_stage_2"):
        deepspeed_config(TrainerConfig(strategy="deepspeed_stage_2", deepspeed_config=str(wrong)), 8)
    with pytest.raises(FileNotFoundError, match="trainer.deepspeed_config='missing.json'"):
        deepspeed_config(TrainerConfig(strategy="deepspeed_stage_2", deepspeed_config="missing.json"), 8)
    assert TrainerConfig(strategy="ddp", deepspeed_config="x.json").problems() == [
        ("deepspeed_config", "is only used with a deepspeed strategy, not strategy='ddp'")
    ]


def test_fsdp_needs_a_gpu() -> None:
    with pytest.raises(ConfigError, match="trainer.strategy='fsdp' needs CUDA GPUs"):
        build_strategy(TrainerConfig(strategy="fsdp", devices=2), "cpu", 8)
