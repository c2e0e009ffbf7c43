"""Synthetic faces: deterministic by seed, AUs visible, identity confounded with AUs in train only."""

import json
from pathlib import Path

import numpy as np

from data_shards.synth import AU_IDS, CLASS_NAMES, EXPRESSION_AUS, draw_sample, identity_of, synth_dataset
from data_shards.synth_faces import Pose, render_face


def _rows(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_same_seed_same_bytes_other_seed_other_faces(tmp_path: Path) -> None:
    first = synth_dataset(str(tmp_path / "a"), images=40, clips=4, img_size=32, frames=3, seed=7)
    again = synth_dataset(str(tmp_path / "b"), images=40, clips=4, img_size=32, frames=3, seed=7, workers=2)
    other = synth_dataset(str(tmp_path / "c"), images=40, clips=4, img_size=32, frames=3, seed=8)
    for name in first:
        assert Path(first[name]).read_text() == Path(again[name]).read_text()
    one = sorted((tmp_path / "a/images/train").glob("*.jpg"))[0]
    assert one.read_bytes() == (tmp_path / "b/images/train" / one.name).read_bytes()
    assert Path(first["images-train"]).read_text() != Path(other["images-train"]).read_text()


def test_every_au_changes_the_pixels_at_64px() -> None:
    for subject in range(8):  # light and dark skin tones alike
        identity = identity_of(0, subject)
        neutral = render_face(identity, {}, Pose(), 64).astype(int)
        for au in AU_IDS:
            moved = render_face(identity, {au: 1.0}, Pose(), 64).astype(int)
            changed = (np.abs(moved - neutral).max(axis=2) > 25).sum()
            assert changed >= 6, f"AU{au} changes only {changed} pixels of subject {subject}"


def test_expression_aus_are_always_labelled_active() -> None:
    for split in ("train", "test"):
        for index in range(200):
            sample = draw_sample(0, split, index, 1)
            assert set(EXPRESSION_AUS[CLASS_NAMES[sample.expression]]) <= set(sample.active)


def _subject_predicts_aus(rows: list[dict]) -> float:
    """Mean over AUs of how much better the per-subject majority vote is than the global one."""
    gains = []
    for au in AU_IDS:
        labels = np.array([row["aus"][au] for row in rows])
        subjects = np.array([row["subject"] for row in rows])
        global_acc = max(labels.mean(), 1 - labels.mean())
        per_subject = sum(max(labels[subjects == s].sum(), (1 - labels[subjects == s]).sum()) for s in set(subjects)) / len(rows)
        gains.append(per_subject - global_acc)
    return float(np.mean(gains))


def test_identity_predicts_aus_in_train_but_not_in_test(tmp_path: Path) -> None:
    labels = synth_dataset(str(tmp_path), images=2400, clips=0, img_size=16, frames=1, seed=0)
    train, test = _rows(labels["images-train"]), _rows(labels["images-test"])
    assert not {r["subject"] for r in train} & {r["subject"] for r in test}  # subject-exclusive splits
    assert _subject_predicts_aus(train) > 0.08
    assert _subject_predicts_aus(test) < 0.06


def test_clips_are_au_trajectories_from_onset_to_apex() -> None:
    sample = draw_sample(0, "val", 5, 8)
    active = [au for au in sample.active]
    assert all(sample.frames[0][au] == 0.0 for au in active)
    peaks = [max(frame[au] for frame in sample.frames) for au in active]
    assert all(peak > 0.5 for peak in peaks)
    assert len(sample.poses) == 8


def test_pretraining_pool_is_unlabelled_and_shares_no_subject(tmp_path: Path) -> None:
    labels = synth_dataset(str(tmp_path), images=60, clips=0, img_size=16, frames=1, seed=0, pretrain_images=40)
    pool = _rows(labels["images-pretrain"])
    assert len(pool) == 40 and all(set(row) == {"path", "subject", "source"} for row in pool)
    labelled = {row["subject"] for split in ("train", "val", "test") for row in _rows(labels[f"images-{split}"])}
    assert not {row["subject"] for row in pool} & labelled


def test_drawn_poses_move_the_face_but_keep_every_au_visible() -> None:
    rng = np.random.default_rng(0)
    identity = identity_of(0, 3)
    centred = render_face(identity, {}, Pose(), 64).astype(int)
    for _ in range(12):
        pose = Pose.draw(rng)
        neutral = render_face(identity, {}, pose, 64).astype(int)
        assert np.abs(neutral - centred).mean() > 5  # placement, rotation, light and background vary
        for au in AU_IDS:
            moved = render_face(identity, {au: 1.0}, pose, 64).astype(int)
            changed = (np.abs(moved - neutral).max(axis=2) > 20).sum()
            assert changed >= 4, f"AU{au} changes only {changed} pixels under {pose}"
