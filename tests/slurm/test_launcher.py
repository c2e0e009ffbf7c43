"""The launcher without a cluster: flags, --dry-run, resource mapping, the requeue bound and the stop-on-signal callback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_jobs import ROOT, run_slurm_cli

from plumbing.recipes import ConfigError
from slurm.cli import normalize_argv
from slurm.resources import SlurmResources, time_to_minutes, trainer_layout

TINY = str(ROOT / "configs" / "pretrain" / "tiny.yaml")


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("30", 30), ("90:30", 91), ("02:00:00", 120), ("1:30:00", 90), ("1-00", 1440), ("2-01:30", 2970), ("1-00:00:01", 1441)],
)
def test_slurm_time_formats(text: str, minutes: int) -> None:
    assert time_to_minutes(text) == minutes


def test_impossible_resources_name_the_flag() -> None:
    from plumbing.recipes import validate

    with pytest.raises(ConfigError) as caught:
        validate({"resources": SlurmResources(nodes=0, time="soon", mem="lots")})
    message = str(caught.value)
    assert "resources.nodes=0" in message and "resources.time='soon'" in message and "resources.mem='lots'" in message


def test_one_task_per_device() -> None:
    gpus = trainer_layout(SlurmResources(nodes=2, gpus_per_node=4, tasks_per_node=7), "auto")
    assert gpus == {"accelerator": "gpu", "devices": 4, "num_nodes": 2, "strategy": "ddp"}
    cpu = trainer_layout(SlurmResources(nodes=1, tasks_per_node=1), "auto")
    assert cpu == {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto"}
    assert trainer_layout(SlurmResources(nodes=2), "deepspeed_stage_2")["strategy"] == "deepspeed_stage_2"


def test_argv_accepts_dashes_bare_booleans_and_trailing_overrides() -> None:
    argv = ["submit", "pretrain", "--config", "r.yaml", "--gpus-per-node=2", "--dry-run", "--", "--trainer.max_steps", "5"]
    assert normalize_argv(argv) == [
        "submit", "pretrain", "--recipe", "r.yaml", "--gpus_per_node=2", "--dry_run", "true",
        "--overrides", '["--trainer.max_steps", "5"]',
    ]  # fmt: skip
    assert normalize_argv(["--help"]) == ["--help"]


def test_dry_run_prints_the_sbatch_script_and_resolved_config(tmp_path: Path) -> None:
    folder = tmp_path / "submitit"
    done = run_slurm_cli(
        "submit", "pretrain", "--config", TINY, "--nodes", "2", "--gpus-per-node", "4", "--partition", "gpu",
        "--time", "1-02:00:00", "--account", "proj", "--qos", "high", "--constraint", "a100", "--mem", "64G",
        "--cpus-per-task", "8", "--folder", str(folder), "--dry-run", "--", "--trainer.max_steps", "7",
    )  # fmt: skip
    out = done.stdout
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4", "#SBATCH --partition=gpu",
                 "#SBATCH --time=1560", "#SBATCH --account=proj", "#SBATCH --qos=high", "#SBATCH --constraint=a100",
                 "#SBATCH --mem=64G", "#SBATCH --cpus-per-task=8", "#SBATCH --signal=USR2@120", "srun --unbuffered"):
        assert line in out, line
    config = out.split("# resolved config of pretrain")[1]
    for line in ("accelerator: gpu", "devices: 4", "num_nodes: 2", "strategy: ddp", "max_steps: 7", "embed_dim: 64"):
        assert line in config, line
    assert not folder.exists(), "a dry run submits nothing"


def test_the_dry_run_scripts_are_the_ones_submitit_submits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from slurm.launcher import Plan, sbatch_script, submit_plan
    from slurm.stages import PlannedJob

    stand_ins = tmp_path / "bin"  # sbatch answers with job ids 1, 2, ...; srun only needs to exist
    stand_ins.mkdir()
    (stand_ins / "sbatch").write_text(f'#!/bin/sh\necho x >> {tmp_path}/calls\necho "Submitted batch job $(wc -l < {tmp_path}/calls)"\n')
    (stand_ins / "srun").write_text("#!/bin/sh\nexit 1\n")
    for tool in stand_ins.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stand_ins}{os.pathsep}{os.environ['PATH']}")
    folder = str(tmp_path / "sub mitit")
    resources = SlurmResources(nodes=2, gpus_per_node=4, partition="gpu", time="1-02:00:00", account="proj", mem="64G", array_parallelism=2)
    jobs = [PlannedJob(f"seed={seed}", str(tmp_path), print, {}) for seed in range(3)]
    plan = Plan("finetune", resources, folder, jobs, after=PlannedJob("summary", str(tmp_path), print, {}))
    assert [record.job_id for record in submit_plan(plan)] == ["1_0", "1_1", "1_2", "2"]
    assert (Path(folder) / "1_submission.sh").read_text() == sbatch_script(plan.sbatch(), folder, array_size=3)
    assert (Path(folder) / "2_submission.sh").read_text() == sbatch_script(plan.after_sbatch("1"), folder)


def test_dry_run_of_finetune_folds_plans_one_element_per_fold_and_seed_and_a_summary(demo_shards: dict[str, str], tmp_path: Path) -> None:
    recipe = ROOT / "configs" / "finetune" / "tiny.yaml"
    out = run_slurm_cli(
        "submit", "finetune", "--config", str(recipe), "--folds", "2", "--seeds", "[0,1]", "--folder", str(tmp_path), "--dry-run",
        "--", "--data.images.train", f"[{demo_shards['images-train']}]", "--data.clips.train", "[]",
        "--trainer.output_dir", str(tmp_path / "ft"),
    ).stdout  # fmt: skip
    assert "#SBATCH --array=0-3%4" in out
    for seed in (0, 1):
        for fold in (0, 1):  # the folders of `python -m finetune folds`
            assert f"# resolved config of fold={fold} seed={seed} -> {tmp_path / 'ft'}/fold{fold}/seed{seed}" in out
    assert "#SBATCH --dependency=afterok:ARRAY_JOB_ID" in out
    assert f"# resolved config of folds.json of 2 folds -> {tmp_path / 'ft'}" in out
    assert f"tracking_uri: sqlite:///{tmp_path / 'ft'}/mlflow.db" in out, "every fold logs to the store of the parent run"
    assert "partition: random subject folds (seed 0)" in out
    published = run_slurm_cli(
        "submit", "finetune", "--config", str(recipe), "--fold-partition", "published", "--folder", str(tmp_path), "--dry-run",
        "--", "--data.images.train", f"[{demo_shards['images-train']}]", "--data.clips.train", "[]", "--trainer.output_dir", str(tmp_path / "ft2"),
        check=False,
    )  # fmt: skip
    assert published.returncode == 2 and "published" in published.stderr and "Traceback" not in published.stderr  # the demo's subjects are in no published partition


def _bp4d_named_shards(tmp_path: Path) -> str:
    """A real shard set with one 64 px image of each of BP4D's 41 people (the FMAE-IAT label layout)."""
    import json

    import numpy as np
    from PIL import Image

    from data_shards.build import BuildConfig
    from data_shards.cli import build

    people = [f"F{i:02d}" for i in range(1, 24)] + [f"M{i:02d}" for i in range(1, 19)]
    lines = []
    for index, person in enumerate(people):
        path = tmp_path / "img" / f"2{person}_T1" / "frame_1.jpg"
        path.parent.mkdir(parents=True)
        Image.fromarray(np.full((96, 96, 3), 60 + index, dtype=np.uint8)).save(path)
        lines.append(json.dumps({"img_path": f"2{person}_T1/frame_1.jpg", "AUs": [1] + [999] * 11}) + "\n")
    (tmp_path / "labels.json").write_text("".join(lines))
    build(str(tmp_path / "img"), str(tmp_path / "shards"), labels=str(tmp_path / "labels.json"), layout="bp4d",
          shards=BuildConfig(img_size=64, progress=False))
    return str(tmp_path / "shards" / "manifest.json")


def test_fold_arrays_split_subjects_as_finetune_folds_does(tmp_path: Path) -> None:
    from finetune.config import FinetuneConfig
    from finetune.folds import fold_runs, plan_folds
    from plumbing.recipes import load_recipe
    from slurm.stages import Fanout, finetune_jobs

    shards = _bp4d_named_shards(tmp_path)
    overrides = ["--data.images.train", f"[{shards}]", "--data.clips.train", "[]", "--trainer.output_dir", str(tmp_path / "ft")]
    recipe = str(ROOT / "configs" / "finetune" / "tiny.yaml")
    jobs, summary = finetune_jobs(recipe, overrides, SlurmResources(), Fanout(folds=0, fold_partition="auto", seeds=[3]))
    assert [job.name for job in jobs] == ["fold=0 seed=3", "fold=1 seed=3", "fold=2 seed=3"]  # BP4D's 3 published folds
    assert summary.config["partition"].startswith("published BP4D")
    local = FinetuneConfig(**load_recipe(FinetuneConfig, recipe, overrides))
    splits, _ = plan_folds(local, 0, 0.15, "auto", [3])
    expected = fold_runs(local, splits, [3])
    for job, run in zip(jobs, expected):
        assert job.config.data.test_subjects == run.config.data.test_subjects and job.config.trainer.seed == 3
        assert Path(job.output).relative_to(tmp_path / "ft") == Path(run.config.trainer.output_dir).relative_to(tmp_path / "ft")
    with pytest.raises(ConfigError, match="--folds 2 .*has 3 folds"):
        finetune_jobs(recipe, overrides, SlurmResources(), Fanout(folds=2))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--time", "soon"], "resources.time='soon'"),
        (["--num-parts", "2"], "--num_parts does not apply to stage pretrain"),
        (["--fold-partition", "published"], "--fold_partition does not apply to stage pretrain"),
        (["--", "--trainer.max_stepz", "3"], "max_stepz"),
    ],
)
def test_bad_flags_end_with_one_clear_error(flags: list[str], message: str) -> None:
    done = run_slurm_cli("submit", "pretrain", "--config", TINY, "--dry-run", *flags, check=False)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_missing_recipe_and_unknown_folder_are_named(tmp_path: Path) -> None:
    done = run_slurm_cli("submit", "pretrain", "--config", str(tmp_path / "nope.yaml"), "--dry-run", check=False)
    assert done.returncode == 2 and "nope.yaml" in done.stderr
    done = run_slurm_cli("status", "--folder", str(tmp_path / "never"), check=False)
    assert done.returncode == 2 and "no jobs submitted from" in done.stderr


def test_requeues_are_bounded() -> None:
    from plumbing.recipes import load_recipe
    from pretrain.cli import fit
    from pretrain.config import PretrainConfig
    from slurm.jobs import PretrainJob, RequeueLimitReached

    job = PretrainJob(PretrainConfig(**load_recipe(fit, TINY)), max_requeues=2)
    for _ in range(2):
        assert job.checkpoint().function is job
    with pytest.raises(RequeueLimitReached, match="stopped by SLURM 3 times, more than max_requeues=2"):
        job.checkpoint()


def test_stop_on_signal_saves_at_a_step_boundary_and_gives_the_signals_back(tmp_path: Path) -> None:
    import lightning.pytorch as pl
    import torch
    from lightning.fabric.plugins.environments import SLURMEnvironment

    from slurm.requeue import StopOnSignal, StopRequested

    class SignalledAtStep3(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
            if batch_idx == 2:
                os.kill(os.getpid(), signal.SIGUSR2)  # arrives mid-step, as from SLURM
            return self.layer(batch).pow(2).mean()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def untouched(signum: int, frame: object) -> None:
        raise AssertionError("the previous USR2 handler must not run during training")

    previous = signal.signal(signal.SIGUSR2, untouched)
    try:
        environment = SLURMEnvironment()
        callback = StopOnSignal(tmp_path / "last.ckpt")
        trainer = pl.Trainer(
            accelerator="cpu", max_steps=50, callbacks=[callback], plugins=[environment], logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip
        data = torch.utils.data.DataLoader(torch.randn(64, 4), batch_size=4)
        with pytest.raises(StopRequested) as stopped:
            trainer.fit(SignalledAtStep3(), data)
        assert stopped.value.step == 3 and stopped.value.signals == frozenset({"USR2"})
        assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 3
        assert environment.auto_requeue is False, "Lightning's own SLURM requeue must be off"
        assert signal.getsignal(signal.SIGUSR2) is untouched
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_help_lists_the_commands_without_heavy_imports() -> None:
    probe = "import sys, runpy; sys.argv=['slurm','submit','--help']\ntry:\n runpy.run_module('slurm', run_name='__main__')\nexcept SystemExit: pass\n"
    probe += "print('HEAVY', [m for m in ('torch','lightning','mlflow','ray','submitit') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "--gpus_per_node" in done.stdout and "--dry_run" in done.stdout and "--num_parts" in done.stdout
    assert done.stdout.strip().endswith("HEAVY []")
