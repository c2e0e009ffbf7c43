"""Subject folds (never sharing a subject), published subject partitions, fold x seed runs and their summary with
95% intervals (issue 11)."""

import json
import math
from pathlib import Path

import mlflow
import pytest
from finetune_demo import TINY, demo_overrides

from finetune.cli import folds
from finetune.folds import (
    choose_splits,
    interval95,
    matching_partition,
    published_partitions,
    subject_folds,
    subject_key,
    summarise,
    summary_table,
)
from plumbing.cli import run_cli
from plumbing.recipes import ConfigError

BP4D = [f"F{i:03d}" for i in range(1, 24)] + [f"M{i:03d}" for i in range(1, 19)]


def test_published_partitions_are_whole_and_disjoint() -> None:
    sizes = {p.name: (len(p.folds), sum(len(f) for f in p.folds)) for p in published_partitions()}
    assert sizes == {"bp4d": (3, 41), "bp4d_plus": (4, 140), "disfa": (3, 27)}
    for partition in published_partitions():
        subjects = [s for fold in partition.folds for s in fold]
        assert len(set(subjects)) == len(subjects), partition.name
    bp4d = next(p for p in published_partitions() if p.name == "bp4d")
    assert sorted(s for fold in bp4d.folds for s in fold) == sorted(BP4D)
    assert bp4d.folds[0][:3] == ("F001", "F002", "F008")  # JAA-Net's fold 1


def test_subjects_find_their_partition_whatever_the_padding() -> None:
    assert subject_key("F01") == subject_key("F001") == ("F", 1) and subject_key("SN012") == ("SN", 12)
    assert matching_partition(BP4D).name == "bp4d"  # BP4D's subjects are also BP4D+ ids: the tighter one wins
    assert matching_partition([f"{s[0]}{int(s[1:]):02d}" for s in BP4D]).name == "bp4d"  # FMAE-IAT spells F01
    assert matching_partition(["F082", "M058", "F001"]).name == "bp4d_plus"
    assert matching_partition([f"SN{i:03d}" for i in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)]).name == "disfa"
    assert matching_partition(["s000", "s001"]) is None


def test_folds_use_the_published_partition_by_default() -> None:
    spelled = [f"{s[0]}{int(s[1:]):02d}" for s in BP4D]
    splits, source = choose_splits(spelled, 3, 0.15, "auto", seed=0)
    assert "BP4D" in source and len(splits) == 3
    assert set(splits[0].test) == {"F01", "F02", "F08", "F09", "F10", "F16", "F18", "F23", "M01", "M04", "M07", "M08", "M12", "M14"}
    for split in splits:
        assert not (set(split.train) | set(split.val)) & set(split.test) and split.val
        assert sorted(split.train + split.val + split.test) == sorted(spelled)
    with pytest.raises(ConfigError, match="has 3 folds"):
        choose_splits(spelled, 4, 0.15, "auto", seed=0)
    random_splits, source = choose_splits(spelled, 4, 0.15, "random", seed=0)
    assert len(random_splits) == 4 and source.startswith("random")
    with pytest.raises(ConfigError, match="no published partition"):
        choose_splits(["s000", "s001", "s002"], 3, 0.0, "published", seed=0)


def test_k_zero_is_the_partitions_fold_count() -> None:
    subjects = {p.name: [s for fold in p.folds for s in fold] for p in published_partitions()}
    counts = {name: len(choose_splits(found, 0, 0.15, "auto", seed=0)[0]) for name, found in subjects.items()}
    assert counts == {"bp4d": 3, "bp4d_plus": 4, "disfa": 3}
    assert len(choose_splits(BP4D, 0, 0.15, "random", seed=0)[0]) == 3
    assert len(choose_splits([f"s{i:03d}" for i in range(9)], 0, 0.15, "auto", seed=0)[0]) == 3


def test_interval_is_the_t_interval_of_the_mean() -> None:
    mean, std, low, high = interval95([0.60, 0.65, 0.70])
    assert mean == pytest.approx(0.65) and std == pytest.approx(0.05)
    assert (high - low) / 2 == pytest.approx(4.302653 * 0.05 / math.sqrt(3), rel=1e-5)  # t(0.975, 2 dof)
    assert math.isnan(interval95([0.5])[2])


def test_summary_covers_every_fold_and_seed(tmp_path: Path) -> None:
    values = {(0, 0): 0.60, (0, 1): 0.62, (1, 0): 0.70, (1, 1): 0.68}
    for (fold, seed), f1 in values.items():
        folder = tmp_path / f"fold{fold}" / f"seed{seed}"
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps({"test": {"test/au_f1_image": f1}}))
    summary = summarise(tmp_path, 2, [0, 1])
    metric = summary["metrics"]["test/au_f1_image"]
    assert summary["runs"] == 4 and metric["n"] == 4
    assert metric["per_fold"] == {"0": pytest.approx(0.61), "1": pytest.approx(0.69)}
    assert metric["mean"] == pytest.approx(0.65) and metric["ci95"][0] < 0.65 < metric["ci95"][1]
    table = summary_table(summary)
    assert "95% interval" in table and "test/au_f1_image" in table and "2 folds x 2 seeds" in table


@pytest.mark.slow
def test_fold_by_seed_runs_nest_under_one_parent_run(demo: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    overrides = [*demo_overrides(demo, tmp_path / "folds"), "--tasks.tasks", "[au]", "--data.clips.train", "[]", "--data.clips.val", "[]",
                 "--data.clips.test", "[]", "--eval.identity_probe", "false"]
    args = ["folds", "--config", str(TINY), *overrides, "--partition", "random", "--k", "2", "--seeds", "[0,1]"]
    summary_file = Path(run_cli([folds], prog="python -m finetune", description="", args=args))  # what `python -m finetune folds` runs
    summary = json.loads(summary_file.read_text())
    assert summary["runs"] == 4 and summary["finished"] == [0, 1] and summary["partition"].startswith("random")
    metric = summary["metrics"]["test/au_f1_image"]
    assert metric["n"] == 4 and metric["ci95"][0] <= metric["mean"] <= metric["ci95"][1]
    assert "95% interval" in capsys.readouterr().out
    record = json.loads((tmp_path / "folds" / "mlflow_run.json").read_text())
    client = mlflow.MlflowClient(record["tracking_uri"])
    parent = client.get_run(record["run_id"])
    assert parent.data.metrics["test/au_f1_image/mean"] == pytest.approx(metric["mean"])
    assert "test/au_f1_image/ci95_low" in parent.data.metrics and "test/au_f1_image/fold1" in parent.data.metrics
    children = client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted((r.data.tags["face.fold"], r.data.tags["face.seed"]) for r in children) == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]


@pytest.mark.parametrize("val_fraction", [0.0, 1.0, -0.1])
def test_a_val_fraction_that_leaves_no_validation_subjects_is_refused(val_fraction: float) -> None:
    """An empty validation list would select every subject, the test fold's included: refused with one line naming the flag."""
    subjects = [f"S{i:02d}" for i in range(12)]
    with pytest.raises(ConfigError, match=r"--val_fraction"):
        subject_folds(subjects, k=3, val_fraction=val_fraction)
    with pytest.raises(ConfigError, match=r"--val_fraction"):
        choose_splits(subjects, 3, val_fraction, "random", 0)


def test_folds_command_refuses_val_fraction_0_in_one_line(demo: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m finetune folds --val_fraction 0` ends with one `error:` line before any fold trains."""
    args = ["folds", "--config", str(TINY), *demo_overrides(demo, tmp_path / "folds"), "--partition", "random", "--k", "2", "--val_fraction", "0"]
    with pytest.raises(SystemExit) as stopped:
        run_cli([folds], prog="python -m finetune", description="", args=args)
    assert stopped.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--val_fraction=0.0" in lines[0] and "test fold" in lines[0]
    assert not (tmp_path / "folds" / "fold0").exists()


def test_subject_folds_are_exclusive_and_cover_everyone() -> None:
    subjects = [f"S{i:02d}" for i in range(41)] * 3  # repeated: one entry per sample
    folds = subject_folds(subjects, k=3, val_fraction=0.1, seed=7)
    assert len(folds) == 3
    tests = [set(f.test) for f in folds]
    assert set().union(*tests) == set(subjects)
    assert sum(len(t) for t in tests) == 41 and {len(t) for t in tests} <= {13, 14}
    for fold in folds:
        train, val, test = set(fold.train), set(fold.val), set(fold.test)
        assert not (train & val or train & test or val & test)
        assert train | val | test == set(subjects)
        assert len(val) == round(len(train | val) * 0.1)
    assert subject_folds(subjects, 3, 0.1, seed=7) == folds  # deterministic


def test_subject_fold_errors() -> None:
    with pytest.raises(ValueError, match="k=1"):
        subject_folds(["a", "b"], 1)
    with pytest.raises(ValueError, match="3 distinct subjects"):
        subject_folds(["a", "b", "c"], 4)
