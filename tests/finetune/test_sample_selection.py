"""Subject filters and class-balanced sampling over real demo shards."""

from collections import Counter

import pytest

from data_shards.streaming import LoaderConfig, eval_loader, train_loader
from finetune.sample_selection import class_acceptance, select_samples


def test_subject_filter_reads_only_kept_subjects(demo: dict[str, str]) -> None:
    config = LoaderConfig(shards=[demo["images-train"]], batch_size=8, num_workers=0, img_size=32)
    loader = eval_loader(config)
    vocabulary = loader.subjects
    kept = vocabulary[:5]
    selected = select_samples(loader, kept)
    seen = [vocabulary[i] for batch in selected for i in batch["subject"].tolist()]
    everyone = [vocabulary[i] for batch in loader for i in batch["subject"].tolist()]
    assert set(seen) == set(kept)
    assert Counter(seen) == Counter(s for s in everyone if s in kept)  # each kept sample exactly once


def test_class_balance_evens_out_classes(demo: dict[str, str]) -> None:
    assert class_acceptance([10, 40, 0, 20]) == (1.0, 0.25, 0.0, 0.5)
    with pytest.raises(ValueError, match="expression counts"):
        class_acceptance([0, 0])
    config = LoaderConfig(shards=[demo["images-train"]], batch_size=16, num_workers=0, img_size=32, shuffle_buffer=20,
                          samples_per_epoch=16 * 30)
    loader = train_loader(config)
    plain = Counter(e for batch in loader for e in batch["expression"].tolist())
    counts = [plain.get(c, 0) for c in range(7)]
    balanced_loader = select_samples(train_loader(config), None, class_acceptance(counts), length=30)
    balanced = Counter(e for batch in balanced_loader for e in batch["expression"].tolist())
    assert sum(balanced.values()) == 16 * 30  # still a full epoch of fixed-size batches
    spread = lambda c: max(c.values()) / min(c.values())  # noqa: E731
    assert spread(balanced) < spread(plain)
