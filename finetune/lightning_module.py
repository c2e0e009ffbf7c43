"""The Lightning wiring of fine-tuning: task losses, IAT, MoAE balance, metrics, pictures, probe.

The plain-PyTorch :class:`~face_core.model.task_model.FaceTaskModel` lives at attribute ``model``. Each
training batch is one modality (``pixels`` ``(B, C, H, W)`` images or ``(B, C, T, H, W)``
clips); every head is evaluated on every step but only the batch's modality heads enter the loss
(the others with weight 0, so DDP sees the same graph on every rank). Evaluation batches may
carry several views per sample, ``(B, V, C, ...)``: their probabilities (and features) are
averaged (multi-clip x multi-crop test).

Model selection uses the validation split only: after each validation epoch the per-AU
thresholds that maximise validation F1 are stored in buffers (saved with the checkpoint) and the
test reports F1 at 0.5 and at those thresholds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from timm.data.random_erasing import RandomErasing
from torchmetrics.classification import MulticlassConfusionMatrix

from data_shards.loaders import normalize_pixels
from face_core.engine.optim import build_adamw, build_param_groups, layer_decay_scale, scaled_lr
from face_core.engine.training_metrics import StepWindow
from face_core.evaluation.identity_probe import hashes_of, identity_probe
from face_core.evaluation.metrics import (
    MaskedMultilabelF1,
    absent_classes,
    best_threshold_indices,
    f1_at_indices,
    onto_vocabulary,
    per_class_recall,
    threshold_index,
    uar,
    war,
)
from face_core.model.adapters import MixtureOfAdapterExperts
from face_core.model.config import ViTConfig
from face_core.model.task_model import TaskSpec, build_task_model, head_name, reversal_strength
from finetune.config import FinetuneConfig
from finetune.figures import au_f1_picture, confusion_picture
from finetune.losses import masked_bce, one_hot_targets, soft_bce, soft_cross_entropy
from finetune.mixup import draw_mix, mix_targets
from plumbing.files import write_png_atomic
from plumbing.recipes import ConfigError, config_from_dict


def modality_of(pixels: torch.Tensor, views: bool = False) -> str:
    """``image`` or ``clip`` from a pixel batch's rank (one more with a views axis)."""
    return "clip" if pixels.ndim - int(views) == 5 else "image"


def erase_randomly(pixels: torch.Tensor, probability: float) -> None:
    """timm's ``RandomErasing`` (mode pixel, one box) on normalised pixels, in place, each sample on its own.

    The references erase after normalisation, as here, on the device. A clip ``(C, T, H, W)`` is
    seen as one picture of ``C * T`` channels, so one box is erased on every frame, each frame
    with its own noise (VideoMAE/S4D's ``cube`` erasing).
    """
    if probability > 0:
        eraser = RandomErasing(probability, mode="pixel", max_count=1, device=pixels.device)
        eraser(pixels.view(pixels.shape[0], -1, *pixels.shape[-2:]))


class FinetuneModule(pl.LightningModule):
    """Fine-tuning step, optimiser, validation/test metrics and the identity-leakage probe.

    Hyper-parameters are plain dicts (``dataclasses.asdict`` of the encoder's :class:`ViTConfig`,
    the :class:`FinetuneConfig` and the :class:`TaskSpec`), so a checkpoint rebuilds its model
    alone (``FinetuneModule.load_from_checkpoint``) and loads with ``weights_only=True``.
    ``encoder`` passes pretrained weights in (not stored as a hyper-parameter); without it the
    encoder is built fresh from ``encoder_config``. ``effective_batch`` is samples per optimiser
    step over all ranks (for the lr scaling rule). After testing, ``test_results`` holds the test
    metrics and the probe's result.
    """

    def __init__(
        self,
        encoder_config: dict[str, Any],
        config: dict[str, Any],
        spec: dict[str, Any],
        effective_batch: int,
        picture_dir: str = "",
        encoder: torch.nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["encoder"], logger=False)  # the run logs its params itself (resumable)
        self.config: FinetuneConfig = config_from_dict(FinetuneConfig, config)
        self.spec = TaskSpec(**spec)
        self.effective_batch, self.picture_dir = effective_batch, picture_dir
        self.model = build_task_model(config_from_dict(ViTConfig, encoder_config), self.config.model, self.spec, identity_head=self.config.iat.enabled, encoder=encoder)
        self.mixtures = [m for m in self.model.modules() if isinstance(m, MixtureOfAdapterExperts)]
        self._mix_rng: np.random.Generator | None = None  # seeded by (seed, rank) at the first step
        weights = self.config.tasks.au_pos_weight
        if weights and len(weights) != len(self.spec.au_ids):
            raise ConfigError(f"tasks.au_pos_weight has {len(weights)} values but the data have {len(self.spec.au_ids)} AUs {self.spec.au_ids}")
        self.register_buffer("au_pos_weight", torch.tensor(weights) if weights else None, persistent=False)
        for modality, mapping in self.spec.subject_maps.items():
            self.register_buffer(f"subject_map_{modality}", torch.tensor(mapping, dtype=torch.long), persistent=False)
        for modality, mapping in self.spec.class_maps.items():
            self.register_buffer(f"class_map_{modality}", torch.tensor(mapping, dtype=torch.long), persistent=False)
        heads = self.spec.head_sizes()
        self.metrics = torch.nn.ModuleDict({stage: torch.nn.ModuleDict({name: self._metric(name) for name in heads}) for stage in ("val", "test")})
        half = threshold_index(0.5)
        for name in heads:
            if name.startswith("au_"):
                self.register_buffer(f"threshold_index_{name}", torch.full((len(self.spec.au_ids),), half, dtype=torch.long))
        self.probe_parts: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.scored: dict[str, torch.Tensor] = {}  # test samples scored per modality on this rank (on the device)
        self.test_results: dict[str, float] = {}
        self.window = StepWindow()  # read by the engine's TrainingMetrics

    def _metric(self, name: str) -> torch.nn.Module:
        if name.startswith("au_"):
            return MaskedMultilabelF1(len(self.spec.au_ids))
        return MulticlassConfusionMatrix(len(self.spec.class_names), ignore_index=-1)

    @property
    def learning_rate(self) -> float:
        """Peak learning rate after the linear scaling rule."""
        return scaled_lr(self.config.optim.base_lr, self.effective_batch)

    @property
    def mix_rng(self) -> np.random.Generator:
        """The generator of every mixup/cutmix draw: seeded by (seed, rank), as the references seed ``seed + rank``."""
        if self._mix_rng is None:
            self._mix_rng = np.random.default_rng([self.config.trainer.seed, self.global_rank])
        return self._mix_rng

    # ----------------------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Task losses of the batch's modality + identity loss (behind the reversal) + MoAE balance."""
        pixels = normalize_pixels(batch["pixels"])
        modality = modality_of(pixels)
        data = self.config.data
        erase_randomly(pixels, data.section(modality).augment.random_erase)
        mix = draw_mix(pixels, data.mixup_alpha, data.cutmix_alpha, data.mix_prob, data.mix_switch_prob, self.mix_rng)
        strength = 0.0
        if self.model.identity_head is not None:
            progress = self.global_step / max(1, int(self.trainer.estimated_stepping_batches))
            strength = reversal_strength(self.config.iat.strength, self.config.iat.schedule, progress)
        out = self.model(pixels, list(self.model.heads), strength)
        batch_size = pixels.shape[0]
        total = sum(0.0 * out[name].sum() for name in self.model.heads if not name.endswith(modality))
        for task in self.spec.tasks_for(modality):
            loss = self._task_loss(task, out[head_name(task, modality)], batch, mix)
            self.log(f"train/{task}_loss_{modality}", loss, batch_size=batch_size)
            total = total + loss
        if self.model.identity_head is not None:
            subjects = batch["subject"].to(self.device)
            mapping = getattr(self, f"subject_map_{modality}")
            known = subjects >= 0
            identity = torch.where(known, mapping[subjects.clamp(min=0)], subjects)
            targets, present = mix_targets(*one_hot_targets(identity, len(self.spec.subjects)), mix)
            identity_criterion = soft_bce if self.config.iat.loss == "bce" else soft_cross_entropy
            identity_loss = identity_criterion(out["identity"], targets, present)
            total = total + self.config.iat.loss_weight * identity_loss
            self.log("train/identity_loss", identity_loss, batch_size=batch_size)
            self.log("train/iat_lambda", strength, batch_size=batch_size)
        if self.mixtures:
            balance = torch.stack([m.balance_loss for m in self.mixtures]).sum()
            total = total + self.config.model.moae.balance_coef * balance
            self.log("train/moae_balance_loss", balance, batch_size=batch_size)
            for index, mixture in enumerate(self.mixtures):
                for expert, load in enumerate(mixture.expert_load):
                    self.log(f"moae/load_block{index}_expert{expert}", load, batch_size=batch_size)
        self.log("train/loss", total, batch_size=batch_size)
        self.window.add(modality, total, batch_size)
        return total

    def _task_loss(self, task: str, logits: torch.Tensor, batch: dict[str, Any], mix: Any) -> torch.Tensor:
        if task == "au":
            aus = batch["aus"].to(self.device)
            if mix is not None:  # NaN (missing) stays NaN when either mixed label is missing
                aus = aus * mix.lam + aus[mix.perm] * (1.0 - mix.lam)
            return masked_bce(logits, aus, self.au_pos_weight)
        hot, present = one_hot_targets(self._expression(batch), len(self.spec.class_names), self.config.tasks.label_smoothing)
        targets, present = mix_targets(hot, present, mix)
        return soft_cross_entropy(logits, targets, present)

    def _expression(self, batch: dict[str, Any]) -> torch.Tensor:
        """The batch's expression labels in the shared vocabulary (``TaskSpec.class_maps``), -1 = none."""
        labels = batch["expression"].to(self.device)
        mapping = getattr(self, f"class_map_{modality_of(batch['pixels'], bool(batch.get('views')))}", None)
        if mapping is None:
            return labels
        return onto_vocabulary(labels, mapping)

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW with pretraining's grouping and layer-wise lr decay; per-step warmup-cosine."""
        optim = self.config.optim
        total = int(self.trainer.estimated_stepping_batches)
        depth = len(self.model.encoder.blocks)
        groups = build_param_groups(self.model, optim.weight_decay, layer_decay_scale(depth, optim.layer_decay))
        optimizer, scheduler = build_adamw(groups, self.learning_rate, optim.betas, total, int(optim.warmup_fraction * total), optim.min_lr)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --------------------------------------------------------------------------- evaluation
    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        views = int(batch.get("views", 0))  # > 0: pixels (B, views, C, ...), averaged per sample
        raw = batch["pixels"]
        pixels = normalize_pixels(raw.flatten(0, 1) if views else raw)
        modality = modality_of(pixels)
        tasks = self.spec.tasks_for(modality)
        names = [head_name(task, modality) for task in tasks]
        out = self.model(pixels, names)  # padding rows too: every rank runs the same steps
        count = max(1, views)
        valid = batch["valid"].to(self.device)  # False: a padding row of the loader, counted nowhere
        for task, name in zip(tasks, names):
            logits = out[name].float()
            probs = logits.sigmoid() if task == "au" else logits.softmax(dim=-1)
            probs = probs.view(-1, count, probs.shape[-1]).mean(dim=1)[valid]
            metric = self.metrics[stage][name]
            if task == "au":
                metric.update(probs, batch["aus"].to(self.device)[valid])
            else:
                metric.update(probs.argmax(dim=-1), self._expression(batch)[valid])
        if stage == "test":
            self.scored[modality] = self.scored.get(modality, 0) + valid.sum()
        if stage == "test" and self.config.eval.identity_probe:
            feature = out["feature"].float().view(-1, count, out["feature"].shape[-1]).mean(dim=1)
            kept = batch["valid"].cpu()
            self.probe_parts.append((modality, feature[valid].cpu(), batch["subject"].cpu()[kept], hashes_of(batch["key"])[kept]))

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        """Update the validation metrics of the batch's modality heads."""
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        """Update the test metrics (multi-view batches averaged) and keep features for the probe."""
        self._evaluate(batch, "test")

    def on_validation_epoch_end(self) -> None:
        """Log validation metrics, store the per-AU thresholds chosen on this split, print a summary line."""
        results = self._summarise("val")
        for name, value in results.items():
            self.log(name, value, sync_dist=False)
        headline = [k for k in sorted(results) if k.startswith(("val/au_f1_", "val/war_", "val/uar_")) and "valthr" not in k]
        summary = " ".join(f"{k}={results[k]:.3f}" for k in headline)
        rank_zero_info(f"epoch {self.current_epoch} step {self.global_step}: {summary}")

    def on_test_epoch_start(self) -> None:
        """Forget features and counts of an earlier test run."""
        self.probe_parts, self.scored = [], {}

    def on_test_epoch_end(self) -> None:
        """Log test metrics and sample counts, save pictures, run the identity probe on the held-out subjects."""
        results = self._summarise("test")
        results.update(self._test_sample_counts())
        if self.config.eval.identity_probe:
            results.update(self._probe())
        for name, value in results.items():
            self.log(name, value, sync_dist=False)
        self.test_results = results

    def _test_sample_counts(self) -> dict[str, float]:
        """``test/samples_<m>`` scored and ``test/samples_skipped_<kind>_<m>`` (corrupt samples, truncated shards), over every rank.

        The skipped counts come from the data module's test loaders (``skipped_samples``), when it has them.
        """
        modalities = [m for m in self.spec.modalities if self.config.data.shards(m, "test")]  # from the config: alike on every rank
        counter = getattr(self.trainer.datamodule, "skipped_samples", None)
        skipped = {k.removeprefix("test_"): n for k, n in (counter() if counter else {}).items() if k.startswith("test_")}
        names = sorted(skipped)  # the same names on every rank
        scored = [self.scored.get(m, torch.zeros((), device=self.device)).double() for m in modalities]
        parts = [*scored, *(torch.tensor(float(skipped[n]), device=self.device, dtype=torch.float64) for n in names)]
        if not parts:
            return {}
        counts = torch.stack(parts)
        if self.trainer.world_size > 1:
            counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
        values = counts.tolist()
        results = {f"test/samples_{m}": value for m, value in zip(modalities, values)}
        for name, value in zip(names, values[len(modalities) :]):
            modality, kind = name.split("_", 1)
            results[f"test/samples_skipped_{kind}_{modality}"] = value
        return results

    def _summarise(self, stage: str) -> dict[str, float]:
        results: dict[str, float] = {}
        for name, metric in self.metrics[stage].items():
            modality = name.split("_", 1)[1]
            if not self.config.data.shards(modality, stage):
                continue  # decided from the config, not from this rank's batches: every rank must sync alike
            if name.startswith("au_"):
                results.update(self._summarise_au(stage, name, modality, metric))
            else:
                results.update(self._summarise_expression(stage, name, modality, metric))
            metric.reset()
        return results

    def _summarise_au(self, stage: str, name: str, modality: str, metric: MaskedMultilabelF1) -> dict[str, float]:
        f1 = metric.table()
        at_half = f1[metric.threshold_index(0.5)]
        thresholds = getattr(self, f"threshold_index_{name}")
        if stage == "val" and not self.trainer.sanity_checking:
            thresholds.copy_(best_threshold_indices(f1))
        tuned = f1_at_indices(f1, thresholds)
        results = {f"{stage}/au_f1_{modality}": at_half.mean().item(), f"{stage}/au_f1_valthr_{modality}": tuned.mean().item()}
        for au, value in zip(self.spec.au_ids, at_half.tolist()):
            results[f"{stage}/au{au}_f1_{modality}"] = value
        if stage == "test":
            picture = au_f1_picture(
                {"threshold 0.5": at_half.cpu().numpy(), "validation thresholds": tuned.cpu().numpy()},
                [f"AU{au}" for au in self.spec.au_ids], f"test per-AU F1 ({modality})",
            )
            self._save_picture(picture, f"test_au_f1_{modality}.png")
        return results

    def _summarise_expression(self, stage: str, name: str, modality: str, metric: MulticlassConfusionMatrix) -> dict[str, float]:
        confusion = metric.compute()
        missing = absent_classes(confusion)
        if missing:
            rank_zero_info(f"{stage} {modality}: classes {[self.spec.class_names[c] for c in missing]} have no sample; "
                           "they count as recall 0 in UAR")
        results = {f"{stage}/war_{modality}": war(confusion).item(), f"{stage}/uar_{modality}": uar(confusion).item()}
        for class_name, value in zip(self.spec.class_names, per_class_recall(confusion).tolist()):
            results[f"{stage}/recall_{class_name}_{modality}"] = value
        if stage == "test":
            picture = confusion_picture(confusion.cpu().numpy(), self.spec.class_names, f"test confusion ({modality})")
            self._save_picture(picture, f"test_confusion_{modality}.png")
        return results

    def _save_picture(self, picture: np.ndarray, filename: str) -> None:
        if not self.trainer.is_global_zero:
            return
        if self.picture_dir:
            write_png_atomic(Path(self.picture_dir) / filename, picture)
        log_image = getattr(getattr(self.logger, "experiment", None), "log_image", None)
        run_id = getattr(self.logger, "run_id", None)
        if callable(log_image) and run_id:
            log_image(run_id, picture, artifact_file=f"pictures/{filename}")

    def _probe(self) -> dict[str, float]:
        parts = self.probe_parts
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, parts)
            parts = [part for rank_parts in gathered for part in rank_parts]
        self.probe_parts = []
        results: dict[str, float] = {}
        for modality in sorted({part[0] for part in parts}):
            features, subjects, hashes = (torch.cat(column) for column in list(zip(*[p for p in parts if p[0] == modality]))[1:])
            try:
                probe = identity_probe(features, subjects, hashes, steps=self.config.eval.probe_epochs)
            except ValueError as err:
                rank_zero_info(f"identity probe on test {modality}s skipped: {err}")
                continue
            results.update({f"test/identity_probe_{key}_{modality}": value for key, value in probe.as_dict().items()})
        return results
