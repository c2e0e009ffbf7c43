"""Identity leakage: how well a linear probe recovers *who* a face is from frozen features.

What is measured, and why it is honest: identity classification needs the probe to have seen
each subject, so the probe is trained and tested on the *same* subjects but on disjoint samples.
Those subjects are the held-out (test) subjects, which neither the task heads nor the IAT
identity head ever saw: a low probe accuracy therefore means the encoder's feature space does
not encode identity in general, not merely that it forgot the training identities. Each
subject's samples are ordered by a hash of their key and dealt alternately into probe-train and
probe-test halves (deterministic, independent of how ranks split the data). The probe is a
multinomial logistic regression on standardised features, fit full-batch with L-BFGS and a
small L2 penalty (the project's one fitter, :mod:`face_core.evaluation.linear_probe`); chance level
(1 / subjects) is reported beside it.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from face_core.evaluation.linear_probe import fit_multinomial, standardiser


@dataclass
class ProbeResult:
    """Probe accuracy on its held-back half, with chance level and the sizes it was measured on."""

    accuracy: float
    chance: float
    subjects: int
    train_samples: int
    test_samples: int

    def as_dict(self) -> dict[str, float]:
        """The fields as a plain dict (for logging)."""
        return {key: float(value) for key, value in asdict(self).items()}


def key_hash(key: str) -> int:
    """A stable 31-bit hash of a sample key (the same on every rank and run)."""
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


def probe_halves(subjects: torch.Tensor, hashes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks (probe-train, probe-test): each subject's samples alternate by hash order.

    Subjects with fewer than two samples (or subject -1) are left out of both halves.
    """
    train = torch.zeros_like(subjects, dtype=torch.bool)
    test = torch.zeros_like(subjects, dtype=torch.bool)
    for subject in subjects.unique():
        if subject < 0:
            continue
        members = (subjects == subject).nonzero().flatten()
        if members.numel() < 2:
            continue
        ordered = members[hashes[members].argsort(stable=True)]
        train[ordered[0::2]] = True
        test[ordered[1::2]] = True
    return train, test


def identity_probe(
    features: torch.Tensor, subjects: torch.Tensor, hashes: torch.Tensor, steps: int = 300, l2: float = 1e-3
) -> ProbeResult:
    """Fit a linear identity probe on half of each subject's samples, report accuracy on the rest.

    ``features`` ``(N, D)`` are frozen pooled features, ``subjects`` ``(N,)`` identity indices
    (-1 = unknown), ``hashes`` ``(N,)`` from :func:`key_hash` of the sample keys. The objective
    is the mean cross-entropy plus ``l2 * ||W||^2`` (:func:`face_core.evaluation.linear_probe.fit_multinomial`
    at ``C = 1 / (2 l2 N)``), at most ``steps`` L-BFGS iterations.
    """
    features, subjects, hashes = features.detach().float().cpu(), subjects.cpu(), hashes.cpu()
    train, test = probe_halves(subjects, hashes)
    kept = sorted(set(subjects[train].tolist()))
    if len(kept) < 2:
        raise ValueError(f"an identity probe needs >= 2 subjects with >= 2 samples each; found {len(kept)}")
    relabel = {subject: index for index, subject in enumerate(kept)}
    labels = torch.tensor([relabel.get(int(s), -1) for s in subjects])
    mean, std = standardiser(features[train])
    inputs = (features - mean) / std
    count = int(train.sum())
    weight, bias = fit_multinomial(inputs[train], labels[train], len(kept), c=1.0 / (2 * l2 * count), steps=steps)
    predicted = (inputs[test] @ weight + bias).argmax(dim=1)
    accuracy = (predicted == labels[test]).float().mean().item()
    return ProbeResult(accuracy, 1.0 / len(kept), len(kept), count, int(test.sum()))


def hashes_of(keys: Sequence[str]) -> torch.Tensor:
    """:func:`key_hash` of each key, int64 ``(N,)``."""
    return torch.tensor([key_hash(key) for key in keys], dtype=torch.long)
