"""Score a released fine-tuned model on test shards: load it by folder or MLflow URI, print its metrics.

The model comes back through :func:`face_core.release.task.load_task_model` (files downloaded and
checksummed, network rebuilt from config and safetensors); each test set is read once with
:func:`data_shards.loaders.eval_loader`. Metrics, computed by :mod:`face_core.evaluation.metrics`
as fine-tuning's test computes them: AU F1 at threshold 0.5 and at the thresholds chosen on
validation (recorded in the release), WAR and UAR for expressions. A model trained on
a modality whose classes were mapped onto the shared vocabulary by name (``spec.class_maps``: a
joint S4D model, AffectNet-7 images beside DFEW clips) scores that modality's test sets through
the same mapping by name: their order may differ, and a class the model lacks is not scored
(counted in ``test/samples_unscored_class_*``). Beside them, per
modality: the samples scored, the samples the manifests promise, the ones missing and the
corrupt samples and truncated shards skipped on the way; one summary line per modality on stderr
says the same (a ``warning:`` when samples are missing), so a metric over part of a test set is
never mistaken for the whole. At an interactive terminal a progress bar counts the batches.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from data_shards.decode import LabelMap, classes_onto
from data_shards.loaders import LoaderConfig, eval_loader, normalize_pixels
from data_shards.shard_sets import ShardSet, resolve_sets
from face_core.evaluation.metrics import MaskedMultilabelF1, f1_at_indices, nearest_threshold_indices, onto_vocabulary, uar, war
from face_core.model.task_model import head_name
from face_core.release.task import load_task_model
from plumbing.console import interactive_console
from plumbing.recipes import ConfigError


def check_vocabulary(release: Any, sets: Sequence[ShardSet], modality: str) -> list[int] | None:
    """Check the test sets' AU ids and class names against the model's; return how their classes map onto the model's.

    AU ids must be the model's, in the same order. Class names too, unless the model learned this
    modality through a class map (``spec.class_maps``): then they are matched by name, and the
    returned list gives each test class's index in the model's vocabulary (-1: none). None = the same names.
    """
    labels = LabelMap([s.manifest for s in sets])
    spec = release.spec
    tasks = spec.tasks_for(modality)
    if "au" in tasks and labels.au_ids != spec.au_ids:
        raise ConfigError(f"--{modality}_test: AU ids {labels.au_ids} differ from the model's {spec.au_ids}")
    if "expression" not in tasks or labels.class_names == spec.class_names:
        return None
    if modality not in spec.class_maps:
        raise ConfigError(f"--{modality}_test: classes {labels.class_names} differ from the model's {spec.class_names}")
    mapping = classes_onto(labels.class_names, spec.class_names)
    if all(i < 0 for i in mapping):
        raise ConfigError(f"--{modality}_test: classes {labels.class_names} share no class with the model's {spec.class_names}")
    return mapping


def score_modality(release: Any, shards: Sequence[str], modality: str, batch_size: int) -> dict[str, float]:
    """Test metrics of one modality's heads over every sample of ``shards``."""
    import torch
    from torchmetrics.classification import MulticlassConfusionMatrix
    from tqdm import tqdm

    spec, encoder = release.spec, release.encoder_config
    sets = resolve_sets(list(shards), [], modality)
    mapping = check_vocabulary(release, sets, modality)
    onto = torch.tensor(mapping, dtype=torch.long) if mapping else None
    loader = eval_loader(LoaderConfig(
        shards=list(shards), modality=modality, batch_size=batch_size, img_size=encoder.img_size,
        num_frames=encoder.num_frames, frame_stride=release.frame_stride, num_workers=0,
        pin_memory=False, rank=0, world_size=1,
    ))  # fmt: skip
    heads = {task: head_name(task, modality) for task in spec.tasks_for(modality)}
    f1 = MaskedMultilabelF1(len(spec.au_ids)) if "au" in heads else None
    confusion = MulticlassConfusionMatrix(len(spec.class_names), ignore_index=-1) if "expression" in heads else None
    samples = unscored = 0
    batches = tqdm(loader, total=len(loader), desc=f"scoring {modality}s", unit="batch", file=sys.stderr, disable=not interactive_console(sys.stderr))
    with torch.inference_mode():
        for batch in batches:
            out = release.model(normalize_pixels(batch["pixels"]), list(heads.values()))
            valid = batch["valid"]  # False: a padding row of the loader
            samples += int(valid.sum())
            if f1 is not None:
                f1.update(out[heads["au"]].float().sigmoid()[valid], batch["aus"][valid])
            if confusion is not None:
                expression = batch["expression"][valid]
                if onto is not None:
                    mapped = onto_vocabulary(expression, onto)
                    unscored += int(((expression >= 0) & (mapped < 0)).sum())
                    expression = mapped
                confusion.update(out[heads["expression"]].argmax(dim=-1)[valid], expression)
    results = sample_counts(modality, samples, sum(s.num_samples for s in sets), loader.skipped)
    if onto is not None:
        results[f"test/samples_unscored_class_{modality}"] = float(unscored)
    if f1 is not None:
        table = f1.table()
        chosen = release.au_thresholds.get(modality) or [0.5] * len(spec.au_ids)
        results[f"test/au_f1_{modality}"] = table[f1.threshold_index(0.5)].mean().item()
        results[f"test/au_f1_valthr_{modality}"] = f1_at_indices(table, nearest_threshold_indices(chosen)).mean().item()
    if confusion is not None:
        matrix = confusion.compute()
        results[f"test/war_{modality}"], results[f"test/uar_{modality}"] = war(matrix).item(), uar(matrix).item()
    return results


def sample_counts(modality: str, scored: int, expected: int, skipped: dict[str, int]) -> dict[str, float]:
    """``test/samples_*`` counts of one modality, and their summary line on stderr (a warning when samples are missing)."""
    counts = {
        f"test/samples_{modality}": float(scored), f"test/samples_expected_{modality}": float(expected),
        f"test/samples_missing_{modality}": float(expected - scored),
        **{f"test/samples_skipped_{kind}_{modality}": float(count) for kind, count in sorted(skipped.items())},
    }  # fmt: skip
    damage = ", ".join(f"{count} {kind.replace('_', ' ')}(s)" for kind, count in sorted(skipped.items()) if count) or "nothing"
    summary = f"scored {scored} of the {expected} {modality} samples the manifests list; skipped {damage}"
    print(f"warning: {summary}" if scored < expected else summary, file=sys.stderr)
    return counts


def score_release(
    path_or_uri: str, *, image_test: Sequence[str] = (), clip_test: Sequence[str] = (), batch_size: int = 32, tracking_uri: str | None = None
) -> dict[str, float]:
    """Test metrics of a released fine-tuned model (folder or ``models:/``/``runs:/`` URI) on the given shard sets.

    URIs resolve in ``tracking_uri``, else ``$MLFLOW_TRACKING_URI``.
    """
    if not image_test and not clip_test:
        raise ConfigError("give test shard sets: --image_test [...] and/or --clip_test [...]")
    release = load_task_model(path_or_uri, tracking_uri, flag="--tracking_uri")
    results: dict[str, float] = {}
    for modality, shards in (("image", image_test), ("clip", clip_test)):
        if not shards:
            continue
        if modality not in release.spec.modalities:
            raise ConfigError(f"--{modality}_test: the released model has no {modality} heads (it has {release.spec.modalities})")
        results.update(score_modality(release, shards, modality, batch_size))
    return results
