"""Sweep files: every shipped one loads, bad ones name the file and key, trial values land in the recipe."""

from pathlib import Path

import pytest

from finetune.config import FinetuneConfig, FinetuneDataConfig, FinetuneImages
from finetune.sweep.search_space import apply_overrides, load_search_space, sample_values, to_tune
from plumbing.recipes import ConfigError, validate

SWEEPS = sorted(Path(__file__).resolve().parents[3].joinpath("configs", "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEPS, ids=[p.name for p in SWEEPS])
def test_every_shipped_sweep_fits_the_finetune_recipe(path: Path) -> None:
    space = load_search_space(path)
    recipe = FinetuneConfig(data=FinetuneDataConfig(images=FinetuneImages(train=["train.json"], val=["val.json"])))
    validate(apply_overrides(recipe, sample_values(space)))  # every key exists; first values are allowed
    assert set(to_tune(space)) == set(space.parameters)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def test_distributions_become_tune_samplers(tmp_path: Path) -> None:
    from ray.tune.search.sample import Categorical, Float, Integer

    space = load_search_space(write(tmp_path, """
parameters:
  optim.base_lr: {loguniform: [1.0e-4, 1.0e-2]}
  optim.layer_decay: {uniform: [0.6, 0.9]}
  model.moae.num_experts: {randint: [2, 9]}
  iat.strength: {choice: [0.0, 1.0]}
  model.moae.top_k: {grid: [1, 2]}
"""))
    tune_space = to_tune(space)
    assert isinstance(tune_space["optim.base_lr"], Float) and tune_space["optim.base_lr"].lower == 1e-4
    assert isinstance(tune_space["model.moae.num_experts"], Integer)
    assert isinstance(tune_space["iat.strength"], Categorical)
    assert tune_space["model.moae.top_k"] == {"grid_search": [1, 2]}
    assert space.scheduler.kind == "asha" and space.metric == "" and space.mode == ""


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("parameters:\n  optim.base_lr: {loguniform: [0.0, 1.0]}\n", "parameters.optim.base_lr.values"),
        ("parameters:\n  optim.base_lr: {uniform: [2.0, 1.0]}\n", "needs low < high"),
        ("parameters:\n  optim.base_lr: {gaussian: [0.0, 1.0]}\n", "parameters.optim.base_lr.kind"),
        ("parameters:\n  optim.base_lr: {uniform: [1e-4, 1e-2]}\n", "needs [low, high] numbers"),  # YAML reads 1e-4 as a string
        ("parameters:\n  optim.base_lr: [1, 2]\n", "parameters.optim.base_lr must be one mapping"),
        ("parameters: {}\n", "parameters={}"),
        ("scheduler: {kind: pbt}\nparameters:\n  iat.strength: {grid: [0.0, 1.0]}\n", "use choice instead of grid"),
        ("scheduler: {reduction_factor: 1}\nparameters:\n  iat.strength: {choice: [0.0]}\n", "scheduler.reduction_factor"),
        ("scheduler: {patience: 3}\nparameters:\n  iat.strength: {choice: [0.0]}\n", "patience"),
        ("metrc: val/loss\nparameters:\n  iat.strength: {choice: [0.0]}\n", "unknown keys ['metrc']"),
    ],
)
def test_bad_sweep_files_name_the_file_and_key(tmp_path: Path, text: str, names: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_search_space(path)
    assert str(path) in str(caught.value) and names in str(caught.value)


def test_missing_sweep_file_is_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="search space file not found"):
        load_search_space(tmp_path / "absent.yaml")


def test_overrides_set_nested_keys_on_a_copy_and_refuse_unknown_ones() -> None:
    base = FinetuneConfig()
    trial = apply_overrides(base, {"optim.base_lr": 0.5, "model.moae.top_k": 1})
    assert trial.optim.base_lr == 0.5 and trial.model.moae.top_k == 1
    assert base.optim.base_lr != 0.5 and base.model.moae.top_k == 2  # the recipe itself is untouched
    with pytest.raises(ConfigError, match="'optim.learning_rate'.*no key 'learning_rate'"):
        apply_overrides(base, {"optim.learning_rate": 0.1})
    with pytest.raises(ConfigError, match="'optimiser.lr'.*no section 'optimiser'"):
        apply_overrides(base, {"optimiser.lr": 0.1})
