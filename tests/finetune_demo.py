"""Helpers of the fine-tuning tests: the shipped tiny recipe pointed at the ``demo`` fixture's data."""

from pathlib import Path

from finetune.cli import fit
from finetune.config import FinetuneConfig
from plumbing.recipes import load_recipe, validate

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "finetune" / "tiny.yaml"


def demo_overrides(demo: dict[str, str], output_dir: Path) -> list[str]:
    """Command-line overrides pointing the tiny recipe at the demo shards and encoder, small and fast."""
    sets = {f"--data.{m}s.{s}": f"[{demo[f'{m}s-{s}']}]" for m in ("image", "clip") for s in ("train", "val", "test")}
    return [
        "--model.init", demo["encoder"], "--model.img_size", "32", "--model.num_frames", "4",
        *[item for pair in sets.items() for item in pair],
        "--data.images.batch_size", "16", "--data.clips.batch_size", "4", "--data.num_workers", "0",
        "--data.shuffle_buffer", "50", "--data.samples_per_epoch", "0",
        "--trainer.output_dir", str(output_dir), "--trainer.max_epochs", "1",
        "--eval.probe_epochs", "50",
    ]


def tiny_config(demo: dict[str, str], output_dir: Path, *extra: str) -> FinetuneConfig:
    """The shipped tiny recipe with :func:`demo_overrides` and ``extra`` overrides, validated."""
    return validate(FinetuneConfig(**load_recipe(fit, str(TINY), [*demo_overrides(demo, output_dir), *extra])))
