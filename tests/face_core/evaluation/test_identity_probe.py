"""The identity probe finds identity where it is linearly present and reports chance where it is not."""

import pytest
import torch

from face_core.evaluation.identity_probe import hashes_of, identity_probe, probe_halves


def test_halves_are_per_subject_and_disjoint() -> None:
    subjects = torch.tensor([0, 0, 0, 1, 1, 2, -1, 1])
    hashes = hashes_of([f"k{i}" for i in range(8)])
    train, test = probe_halves(subjects, hashes)
    assert not (train & test).any()
    assert train.sum() == 4 and test.sum() == 2  # subjects 0 and 1 split 2+1; 2 (one sample) and -1 are left out
    for subject in (0, 1):
        assert train[subjects == subject].any() and test[subjects == subject].any()
    assert not (train | test)[subjects == 2].any() and not (train | test)[subjects == -1].any()


def test_probe_accuracy_tracks_identity_content() -> None:
    torch.manual_seed(0)
    subjects = torch.arange(10).repeat_interleave(20)
    hashes = hashes_of([f"s{i}" for i in range(200)])
    centres = torch.randn(10, 16) * 3
    leaky = centres[subjects] + torch.randn(200, 16)
    clean = torch.randn(200, 16)
    high = identity_probe(leaky, subjects, hashes)
    low = identity_probe(clean, subjects, hashes)
    assert high.accuracy > 0.9
    assert low.accuracy < 0.35
    assert high.chance == pytest.approx(0.1) and high.subjects == 10 and high.train_samples == 100


def test_probe_needs_two_subjects() -> None:
    with pytest.raises(ValueError, match=">= 2 subjects"):
        identity_probe(torch.randn(4, 3), torch.tensor([0, 0, 0, 0]), torch.arange(4))
