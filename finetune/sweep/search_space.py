"""The search space of a fine-tuning sweep: which recipe keys vary, how, and how trials are pruned.

A sweep file (``configs/sweeps/*.yaml``) names dotted keys of the fine-tuning recipe and one
distribution for each::

    metric: ""              # empty = the recipe's monitored validation metric
    mode: ""                # max or min; empty = the recipe's
    scheduler: {kind: asha, grace_period: 1, reduction_factor: 2}
    parameters:
      optim.base_lr: {loguniform: [1.0e-4, 3.0e-3]}
      optim.layer_decay: {uniform: [0.6, 0.9]}
      iat.strength: {choice: [0.0, 0.5, 1.0]}
      moae.num_experts: {grid: [4, 8]}

Distributions: ``uniform``/``loguniform`` ``[low, high]``, ``randint`` ``[low, high)``,
``choice`` (sampled) and ``grid`` (every value, for every sample). Plain Python is used here;
:func:`to_tune` builds Ray Tune's objects only when a sweep runs. :func:`apply_overrides` sets a
trial's values into a copy of the typed recipe, naming any key the recipe does not have.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from plumbing.recipes import ConfigError, validate

Problems = list[tuple[str, str]]
KINDS = ("uniform", "loguniform", "randint", "choice", "grid")


@dataclass
class Distribution:
    """How one recipe key varies across trials.

    Args:
        kind: ``uniform``, ``loguniform``, ``randint``, ``choice`` or ``grid``.
        values: ``[low, high]`` for ranges, the candidate values for ``choice``/``grid``.
    """

    kind: str
    values: list[Any]

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        if self.kind not in KINDS:
            return [("kind", f"unknown distribution; expected one of {list(KINDS)}")]
        if self.kind in ("choice", "grid"):
            return [] if self.values else [("values", f"{self.kind} needs at least one value")]
        if len(self.values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.values):
            return [("values", f"{self.kind} needs [low, high] numbers")]
        low, high = self.values
        if not low < high:
            return [("values", "needs low < high")]
        if self.kind == "loguniform" and low <= 0:
            return [("values", "loguniform needs low > 0")]
        if self.kind == "randint" and not (isinstance(low, int) and isinstance(high, int)):
            return [("values", "randint needs integer bounds")]
        return []


@dataclass
class SchedulerConfig:
    """Trial scheduler: ASHA prunes weak trials early; PBT copies strong ones and perturbs them.

    Args:
        kind: ``asha`` (default) or ``pbt``.
        grace_period: ASHA: validation rounds every trial gets before it may be stopped.
        reduction_factor: ASHA: keep the best ``1 / reduction_factor`` at each rung.
        perturbation_interval: PBT: validation rounds between exploit/explore steps.
        quantile_fraction: PBT: the bottom fraction copies the top fraction.
    """

    kind: Literal["asha", "pbt"] = "asha"
    grace_period: int = 1
    reduction_factor: float = 2.0
    perturbation_interval: int = 1
    quantile_fraction: float = 0.25

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found: Problems = []
        if self.kind not in ("asha", "pbt"):
            found.append(("kind", "must be asha or pbt"))
        if self.grace_period < 1 or self.perturbation_interval < 1:
            found.append(("grace_period", "grace_period and perturbation_interval must be >= 1"))
        if self.reduction_factor <= 1:
            found.append(("reduction_factor", "must be > 1"))
        if not 0 < self.quantile_fraction <= 0.5:
            found.append(("quantile_fraction", "must be in (0, 0.5]"))
        return found


@dataclass
class SearchSpace:
    """A whole sweep file: metric, scheduler and the distribution of each recipe key.

    Args:
        parameters: distribution of each dotted recipe key.
        scheduler: ASHA or PBT settings.
        metric: validation metric to optimise; empty = the recipe's monitored metric.
        mode: ``max`` or ``min``; empty = the recipe's.
    """

    parameters: dict[str, Distribution] = field(default_factory=dict)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    metric: str = ""
    mode: Literal["", "max", "min"] = ""

    def problems(self) -> Problems:
        """Impossible settings as (field, reason) pairs."""
        found: Problems = []
        if not self.parameters:
            found.append(("parameters", "name at least one recipe key to vary"))
        if self.mode not in ("", "max", "min"):
            found.append(("mode", "must be max, min or empty"))
        if self.scheduler.kind == "pbt" and any(d.kind == "grid" for d in self.parameters.values()):
            found.append(("parameters", "PBT perturbs sampled values: use choice instead of grid"))
        return found


def parse_distribution(key: str, raw: Any, source: str) -> Distribution:
    """``{kind: values}`` from a sweep file -> :class:`Distribution` (errors name the file and key)."""
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ConfigError(f"{source}: parameters.{key} must be one mapping like {{choice: [a, b]}}, got {raw!r}")
    (kind, values), = raw.items()
    return Distribution(str(kind), list(values) if isinstance(values, (list, tuple)) else [values])


def load_search_space(path: str | Path) -> SearchSpace:
    """Read and validate a sweep file; raise ``ConfigError`` naming the file and the key."""
    import yaml

    source = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"search space file not found: {source}")
    raw = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with a 'parameters' key")
    unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(SearchSpace)})
    if unknown:
        raise ConfigError(f"{source}: unknown keys {unknown}; expected parameters, scheduler, metric, mode")
    scheduler_raw = raw.get("scheduler") or {}
    try:
        scheduler = SchedulerConfig(**scheduler_raw)
    except TypeError as err:
        raise ConfigError(f"{source}: scheduler: {err}") from err
    parameters = {str(k): parse_distribution(str(k), v, source) for k, v in (raw.get("parameters") or {}).items()}
    space = SearchSpace(parameters, scheduler, str(raw.get("metric", "")), raw.get("mode", ""))
    return validate(space, source=source)


def to_tune(space: SearchSpace) -> dict[str, Any]:
    """Ray Tune's ``param_space``: one sampler per dotted key (imports Ray Tune)."""
    from ray import tune

    build = {
        "uniform": lambda v: tune.uniform(*v),
        "loguniform": lambda v: tune.loguniform(*v),
        "randint": lambda v: tune.randint(*v),
        "choice": tune.choice,
        "grid": tune.grid_search,
    }
    return {key: build[d.kind](d.values) for key, d in space.parameters.items()}


def apply_overrides(config: Any, values: dict[str, Any]) -> Any:
    """A deep copy of the dataclass ``config`` with each dotted key set; unknown keys raise ``ConfigError``."""
    result = copy.deepcopy(config)
    for dotted, value in values.items():
        *parents, leaf = dotted.split(".")
        target = result
        for part in parents:
            if not dataclasses.is_dataclass(target) or not hasattr(target, part):
                raise ConfigError(f"sweep parameter {dotted!r}: the fine-tuning recipe has no section {part!r}")
            target = getattr(target, part)
        if not dataclasses.is_dataclass(target) or leaf not in {f.name for f in dataclasses.fields(target)}:
            raise ConfigError(f"sweep parameter {dotted!r}: the fine-tuning recipe has no key {leaf!r} there")
        setattr(target, leaf, value)
    return result


def sample_values(space: SearchSpace) -> dict[str, Any]:
    """One representative value per key (the first candidate or the lower bound), to check a space early."""
    return {key: d.values[0] for key, d in space.parameters.items()}
