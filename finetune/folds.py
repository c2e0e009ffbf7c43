"""Subject-exclusive k-fold fine-tuning over several seeds as one command (``python -m finetune folds``).

The subjects are split by a published partition when the data are a dataset that has one (the
3 BP4D and 3 DISFA folds of JAA-Net that FMAE-IAT uses, the 4 BP4D+ folds of the FMAE-IAT
README: ``finetune/partitions/*.json``), or dealt at random (seeded, round-robin) into ``k``
folds (3 unless given). Subject ids match whatever their zero padding (``F01`` = ``F001``). Fold ``i`` tests on
fold ``i``'s subjects; validation subjects (model selection and the AU thresholds, never the
test fold) are carved out of the others. No subject is ever in two of train/val/test.

Each fold runs once per seed, in ``<output_dir>/fold<i>`` (one seed) or
``<output_dir>/fold<i>/seed<s>``, as MLflow child runs of one parent run of the whole set.
``<output_dir>/folds.json`` summarises every test metric over the finished runs: per fold
(mean over seeds), mean, sample standard deviation and a 95% t-interval of the mean over all
fold x seed runs. The summary is printed and logged to the parent run: a fold draw alone can move
BP4D+ F1 by about 0.065, more than most published gains, so differences are read against it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import mlflow
from lightning.pytorch.loggers import MLFlowLogger
from scipy import stats

from data_shards.manifest import read_manifest
from face_core.engine.tracking import resolve_tracking_uri
from finetune.config import FinetuneConfig
from finetune.training import run_finetuning
from plumbing.files import write_json_atomic
from plumbing.recipes import ConfigError, validate
from plumbing.tracking_store import read_run_record, sqlite_artifact_location, write_run_record

SUMMARY = "folds.json"
PUBLISHED = ("bp4d", "bp4d_plus", "disfa")
RANDOM_FOLDS = 3  # random folds when k is 0 (the published partitions of BP4D and DISFA have 3)
Partition = Literal["auto", "published", "random"]


@dataclass(frozen=True)
class SubjectSplit:
    """The subjects of one fold's train, validation and test parts (disjoint, sorted)."""

    fold: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]


@dataclass(frozen=True)
class PublishedPartition:
    """A dataset's published subject folds (``finetune/partitions/<name>.json``)."""

    name: str
    dataset: str
    source: str
    folds: tuple[tuple[str, ...], ...]


def subject_key(subject: str) -> tuple[str, int] | str:
    """A subject id without its zero padding: ``F01`` and ``F001`` -> ``('F', 1)``; other ids unchanged."""
    match = re.fullmatch(r"([A-Za-z]+)0*(\d+)", subject)
    return (match.group(1).upper(), int(match.group(2))) if match else subject


def published_partitions() -> list[PublishedPartition]:
    """The partitions shipped with the package."""
    found = []
    for name in PUBLISHED:
        data = json.loads((resources.files("finetune") / "partitions" / f"{name}.json").read_text())
        found.append(PublishedPartition(name, data["dataset"], data["source"], tuple(tuple(fold) for fold in data["folds"])))
    return found


def matching_partition(subjects: Sequence[str]) -> PublishedPartition | None:
    """The published partition that holds every one of ``subjects`` (the tightest one: BP4D before BP4D+), or None."""
    wanted = {subject_key(s) for s in subjects}
    best: PublishedPartition | None = None
    for partition in published_partitions():
        known = {subject_key(s) for fold in partition.folds for s in fold}
        if wanted <= known and (best is None or len(known) < sum(len(f) for f in best.folds)):
            best = partition
    return best


def _with_validation(folds: list[list[str]], val_fraction: float, seed: int) -> list[SubjectSplit]:
    """Each fold tests on its subjects; ``val_fraction`` of the others (at least one) validate, the rest train.

    ``val_fraction`` 0 is refused: an empty validation subject list reads as "every subject" in a
    run, so model selection and AU thresholds would see the test fold.
    """
    if not 0.0 < val_fraction < 1.0:
        reason = "leaves no validation subjects, and an empty list selects every subject, the test fold's included" if val_fraction == 0 else "must be in (0, 1)"
        raise ConfigError(f"--val_fraction={val_fraction}: {reason}; give a share of each fold's training subjects in (0, 1), e.g. 0.15")
    splits = []
    for index, test in enumerate(folds):
        rest = sorted(s for i, fold in enumerate(folds) if i != index for s in fold)
        random.Random(seed + 1 + index).shuffle(rest)
        n_val = max(1, round(len(rest) * val_fraction))
        if n_val >= len(rest):
            raise ValueError(f"fold {index}: {len(rest)} training subjects leave none after {n_val} for validation")
        splits.append(SubjectSplit(index, tuple(sorted(rest[n_val:])), tuple(sorted(rest[:n_val])), tuple(sorted(test))))
    return splits


def subject_folds(subjects: Sequence[str], k: int, val_fraction: float = 0.15, seed: int = 0) -> list[SubjectSplit]:
    """``k`` random subject-exclusive splits of the distinct ``subjects`` (shuffled with ``seed``, dealt round-robin).

    ``val_fraction`` (in (0, 1)) of each fold's training subjects, at least one, become its
    validation subjects.
    """
    distinct = sorted(set(subjects))
    if k < 2:
        raise ValueError(f"k={k}: a k-fold split needs k >= 2")
    if len(distinct) < k:
        raise ValueError(f"{len(distinct)} distinct subjects cannot fill k={k} folds")
    order = distinct[:]
    random.Random(seed).shuffle(order)
    return _with_validation([order[i::k] for i in range(k)], val_fraction, seed)


def published_folds(subjects: Sequence[str], partition: PublishedPartition, val_fraction: float = 0.15, seed: int = 0) -> list[SubjectSplit]:
    """The splits of ``partition`` over ``subjects``, spelled as ``subjects`` spell them (a missing subject is left out)."""
    spelled = {subject_key(s): s for s in subjects}
    folds = [[spelled[key] for key in map(subject_key, fold) if key in spelled] for fold in partition.folds]
    empty = [i for i, fold in enumerate(folds) if not fold]
    if empty:
        raise ConfigError(f"the data hold no subject of the published {partition.dataset} fold(s) {empty}")
    return _with_validation(folds, val_fraction, seed)


def pooled_subjects(config: FinetuneConfig) -> list[str]:
    """Every subject named by the manifests of the pooled training sets (``data.images.train``, ``data.clips.train``)."""
    entries = [*config.data.images.train, *config.data.clips.train]
    if not entries:
        raise ConfigError("data.images.train / data.clips.train: k-fold runs need the pooled shard sets there")
    subjects: set[str] = set()
    for entry in entries:
        manifest_path = entry if entry.endswith(".json") or Path(entry).is_dir() else str(Path(entry.split("{")[0]).parent)
        subjects.update(read_manifest(manifest_path).subjects)
    if not subjects:
        raise ConfigError(f"the manifests of {entries} list no subjects: subject-exclusive folds need subject labels")
    return sorted(subjects)


def choose_splits(subjects: Sequence[str], k: int, val_fraction: float, partition: Partition, seed: int) -> tuple[list[SubjectSplit], str]:
    """The splits a run uses and a line saying which partition they come from.

    ``auto``: the published partition when one holds every subject, else random folds;
    ``published``: it must exist; ``random``: seeded random folds. ``k`` 0 means the published
    partition's fold count (BP4D 3, BP4D+ 4, DISFA 3), or :data:`RANDOM_FOLDS` random folds;
    another ``k`` must equal the published count.
    """
    if partition not in ("auto", "published", "random"):
        raise ConfigError(f"partition={partition!r}: expected 'auto', 'published' or 'random'")
    published = matching_partition(subjects) if partition != "random" else None
    if partition == "published" and published is None:
        raise ConfigError(f"partition='published': no published partition holds the subjects {sorted(subjects)[:5]}...")
    if published is not None:
        if k not in (0, len(published.folds)):
            raise ConfigError(f"k={k}, but the published {published.dataset} partition has {len(published.folds)} folds: "
                              f"ask for {len(published.folds)} folds (0 = the partition's count), or for the random partition")
        return published_folds(subjects, published, val_fraction, seed), f"published {published.dataset} partition ({published.source})"
    return subject_folds(subjects, k or RANDOM_FOLDS, val_fraction, seed), f"random subject folds (seed {seed})"


def fold_config(config: FinetuneConfig, split: SubjectSplit, seed: int, folder: Path, tracking_uri: str = "") -> FinetuneConfig:
    """``config`` restricted to one fold and one seed, run in ``folder``: the pooled sets filtered by the fold's subjects."""
    data = dataclasses.replace(
        config.data,
        images=dataclasses.replace(config.data.images, val=list(config.data.images.train), test=list(config.data.images.train)),
        clips=dataclasses.replace(config.data.clips, val=list(config.data.clips.train), test=list(config.data.clips.train)),
        train_subjects=list(split.train), val_subjects=list(split.val), test_subjects=list(split.test),
    )
    output_dir = Path(config.trainer.output_dir)
    name = "-".join(folder.relative_to(output_dir).parts)
    trainer = dataclasses.replace(config.trainer, output_dir=str(folder), seed=seed)
    tracking = dataclasses.replace(
        config.tracking, tracking_uri=tracking_uri or config.tracking.tracking_uri,
        run_name=f"{config.tracking.run_name or output_dir.name}-{name}",
    )
    return dataclasses.replace(config, data=data, trainer=trainer, tracking=tracking)


@dataclass(frozen=True)
class FoldRun:
    """One fine-tuning run of a fold x seed set: its fold, seed and config (output folder included)."""

    fold: int
    seed: int
    config: FinetuneConfig


def fold_runs(config: FinetuneConfig, splits: Sequence[SubjectSplit], seeds: Sequence[int], tracking_uri: str = "") -> list[FoldRun]:
    """Every (fold, seed) run of ``splits`` x ``seeds``, in the folders of :func:`run_folders`, logging to ``tracking_uri``."""
    folders = run_folders(Path(config.trainer.output_dir), len(splits), list(seeds) or [config.trainer.seed])
    return [FoldRun(fold, seed, fold_config(config, splits[fold], seed, folder, tracking_uri)) for (fold, seed), folder in folders.items()]


def interval95(values: Sequence[float]) -> tuple[float, float, float, float]:
    """Mean, sample standard deviation and the 95% t-interval of the mean (NaN spread for one value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan, math.nan
    std = statistics.stdev(values)
    half = float(stats.t.ppf(0.975, len(values) - 1)) * std / math.sqrt(len(values))
    return mean, std, mean - half, mean + half


def run_folders(output_dir: Path, k: int, seeds: Sequence[int]) -> dict[tuple[int, Any], Path]:
    """Where each (fold, seed) run lives: ``fold<i>`` with one seed (None when none is named), ``fold<i>/seed<s>`` with several."""
    if len(seeds) <= 1:
        return {(i, seeds[0] if seeds else None): output_dir / f"fold{i}" for i in range(k)}
    return {(i, s): output_dir / f"fold{i}" / f"seed{s}" for i in range(k) for s in seeds}


def summarise(output_dir: Path, k: int, seeds: Sequence[int] = ()) -> dict[str, Any]:
    """Every test metric of the finished runs (their ``result.json``): per run, per fold, mean, std and 95% interval.

    The sample counts (``test/samples_*``) are kept per run only.
    """
    runs: dict[str, dict[str, float]] = {}
    by_fold: dict[int, list[dict[str, float]]] = {}
    for (fold, _), folder in run_folders(output_dir, k, seeds).items():
        result = folder / "result.json"
        if result.is_file():
            metrics = json.loads(result.read_text())["test"]
            runs["-".join(folder.relative_to(output_dir).parts)] = metrics
            by_fold.setdefault(fold, []).append(metrics)
    names = sorted({name for metrics in runs.values() for name in metrics if not name.startswith("test/samples_")})  # counts, not metrics
    summary: dict[str, Any] = {"k": k, "seeds": list(seeds), "runs": len(runs), "finished": sorted(by_fold), "metrics": {}}
    for name in names:
        values = [m[name] for m in runs.values() if name in m and math.isfinite(m[name])]
        if not values:
            continue
        mean, std, low, high = interval95(values)
        per_fold = {str(f): statistics.fmean(m[name] for m in ms if name in m) for f, ms in sorted(by_fold.items()) if any(name in m for m in ms)}
        summary["metrics"][name] = {"per_fold": per_fold, "mean": mean, "std": std, "ci95": [low, high], "n": len(values)}
    summary["mean"] = {n: v["mean"] for n, v in summary["metrics"].items()}
    summary["std"] = {n: v["std"] for n, v in summary["metrics"].items()}
    summary["folds"] = {str(f): ms[0] for f, ms in by_fold.items()} if len(seeds) <= 1 else {}
    summary["per_run"] = runs
    return summary


def summary_table(summary: dict[str, Any], partition: str = "") -> str:
    """The summary as text: one line per metric with each fold, the mean, the std and the 95% interval."""
    folds = [str(f) for f in summary["finished"]]
    seeds = max(1, len(summary["seeds"]))
    lines = [f"folds summary: {summary['runs']} runs ({len(folds)} folds x {seeds} seed{'s' if seeds > 1 else ''})"
             + (f", {partition}" if partition else "") + "; mean, sample std and 95% t-interval over all runs"]
    width = max([len(n) for n in summary["metrics"]] + [6])
    lines.append(f"{'metric':<{width}}  " + "  ".join(f"{'fold' + f:>7}" for f in folds) + f"  {'mean':>7}  {'std':>7}  95% interval")
    for name, values in summary["metrics"].items():
        cells = "  ".join(f"{values['per_fold'].get(f, math.nan):7.4f}" for f in folds)
        low, high = values["ci95"]
        lines.append(f"{name:<{width}}  {cells}  {values['mean']:7.4f}  {values['std']:7.4f}  [{low:.4f}, {high:.4f}]")
    return "\n".join(lines)


def child_tags(parent_run_id: str, fold: int, seed: int) -> dict[str, str]:
    """The MLflow tags that make a fold's run a child of the set's parent run, with its fold and seed."""
    return {"mlflow.parentRunId": parent_run_id, "face.fold": str(fold), "face.seed": str(seed)}


class ChildRun(pl.Callback):
    """Tag a fold's MLflow run as a child of the folds' parent run when it starts (:func:`child_tags`)."""

    def __init__(self, parent_run_id: str, fold: int, seed: int) -> None:
        self.tags = child_tags(parent_run_id, fold, seed)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Set the tags on the run's MLflow logger."""
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger):
                for key, value in self.tags.items():
                    logger.experiment.set_tag(logger.run_id, key, value)


def parent_run(config: FinetuneConfig, output_dir: Path, tracking_uri: str, partition: str) -> str:
    """The MLflow run of the whole fold x seed set (reopened when ``output_dir`` already records one)."""
    client = mlflow.MlflowClient(tracking_uri)
    record = read_run_record(output_dir)
    if record and record["tracking_uri"] == tracking_uri:
        return record["run_id"]
    experiment = client.get_experiment_by_name(config.tracking.experiment)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(
        config.tracking.experiment, artifact_location=sqlite_artifact_location(tracking_uri))
    run = client.create_run(experiment_id, run_name=config.tracking.run_name or f"{output_dir.name}-folds", tags={"face.folds": "true"})
    client.log_param(run.info.run_id, "partition", partition[:500])
    write_run_record(output_dir, tracking_uri, experiment_id, run.info.run_id)
    return run.info.run_id


def adopt_runs(tracking_uri: str, parent_run_id: str, runs: Sequence[FoldRun]) -> None:
    """Tag every finished run of ``runs`` logged to ``tracking_uri`` as a child of the parent run.

    Runs started elsewhere (the elements of a SLURM fold array) are nested here; runs tagged at
    their start (:class:`ChildRun`) get the same tags again.
    """
    client = mlflow.MlflowClient(tracking_uri)
    for run in runs:
        record = read_run_record(run.config.trainer.output_dir)
        if record and record["tracking_uri"] == tracking_uri:
            for key, value in child_tags(parent_run_id, run.fold, run.seed).items():
                client.set_tag(record["run_id"], key, value)


def log_summary(tracking_uri: str, run_id: str, summary: dict[str, Any], summary_file: Path) -> None:
    """Log each metric's mean, std, interval and per-fold values to the parent run, and the summary file."""
    client = mlflow.MlflowClient(tracking_uri)
    for name, values in summary["metrics"].items():
        low, high = values["ci95"]
        named = {"mean": values["mean"], "std": values["std"], "ci95_low": low, "ci95_high": high}
        named.update({f"fold{fold}": value for fold, value in values["per_fold"].items()})
        for suffix, value in named.items():
            if math.isfinite(value):
                client.log_metric(run_id, f"{name}/{suffix}", value)
    client.log_metric(run_id, "runs", summary["runs"])
    client.log_artifact(run_id, str(summary_file))


def folds_tracking_uri(config: FinetuneConfig) -> str:
    """The one MLflow store of a fold x seed set (its parent run and every fold's run); empty when tracking is off."""
    return resolve_tracking_uri(config.tracking, config.trainer.output_dir) if config.tracking.enabled else ""


def record_splits(config: FinetuneConfig, splits: Sequence[SubjectSplit], source: str) -> None:
    """Write ``<output_dir>/fold_subjects.json``: which partition, and each fold's train/val/test subjects."""
    output_dir = Path(config.trainer.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output_dir / "fold_subjects.json", {"partition": source, "splits": [dataclasses.asdict(s) for s in splits]})


def finish_folds(config: FinetuneConfig, splits: Sequence[SubjectSplit], seeds: Sequence[int], source: str) -> Path:
    """Summarise the finished runs of a fold x seed set; write, print and log the summary; return its file.

    ``<output_dir>/folds.json`` gets :func:`summarise`'s summary and the partition; with tracking,
    the parent run (created when missing) adopts every finished run and gets the summary's
    metrics and file. ``python -m finetune folds`` and the summary job of a SLURM fold array
    both end here.
    """
    output_dir = Path(config.trainer.output_dir)
    seeds = list(seeds) or [config.trainer.seed]
    record_splits(config, splits, source)
    summary = summarise(output_dir, len(splits), seeds)
    summary["partition"] = source
    write_json_atomic(output_dir / SUMMARY, summary)
    print(summary_table(summary, source))
    tracking_uri = folds_tracking_uri(config)
    if tracking_uri:
        parent = parent_run(config, output_dir, tracking_uri, source)
        adopt_runs(tracking_uri, parent, fold_runs(config, splits, seeds, tracking_uri))
        log_summary(tracking_uri, parent, summary, output_dir / SUMMARY)
    return output_dir / SUMMARY


def plan_folds(config: FinetuneConfig, k: int, val_fraction: float, partition: Partition, seeds: Sequence[int]) -> tuple[list[SubjectSplit], str]:
    """The splits of ``config``'s pooled subjects (:func:`choose_splits`, seeded by ``trainer.seed``) and their source; checks ``seeds``."""
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds={list(seeds)}: a seed must not repeat")
    return choose_splits(pooled_subjects(config), k, val_fraction, partition, config.trainer.seed)


def run_folds(
    config: FinetuneConfig, *, k: int, val_fraction: float, only: list[int], partition: Partition = "auto", seeds: Sequence[int] = ()
) -> Path:
    """Run the folds in ``only`` (all when empty) for every seed (the recipe's when empty); write, print and log the summary.

    Returns the summary file. Each run is an MLflow child of one parent run of the set.
    """
    splits, source = plan_folds(config, k, val_fraction, partition, seeds)
    unknown = [i for i in only if not 0 <= i < len(splits)]
    if unknown:
        raise ConfigError(f"only={only}: fold indices must be in [0, {len(splits)})")
    print(f"[folds] {len(splits)} folds from the {source}")
    record_splits(config, splits, source)
    tracking_uri = folds_tracking_uri(config)
    parent = parent_run(config, Path(config.trainer.output_dir), tracking_uri, source) if tracking_uri else ""
    for run in fold_runs(config, splits, seeds, tracking_uri):
        if not only or run.fold in only:
            run_finetuning(validate(run.config), [ChildRun(parent, run.fold, run.seed)] if parent else [])
    return finish_folds(config, splits, seeds, source)
