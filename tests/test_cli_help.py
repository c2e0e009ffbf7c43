"""Every stage's command line answers ``--help`` quickly, without importing the heavy stack."""

import subprocess
import sys

import pytest

PACKAGES = ["data_shards", "pretrain", "finetune", "slurm"]
HEAVY = ["torch", "lightning", "mlflow", "ray", "deepspeed"]


@pytest.mark.parametrize("package", PACKAGES)
def test_help_works_and_stays_light(package: str) -> None:
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['{package}', '--help']\n"
        "try:\n"
        f"    runpy.run_module('{package}', run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    assert stop.code in (0, None), stop.code\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
    assert done.stdout.strip().endswith("HEAVY="), f"--help imported heavy modules: {done.stdout.splitlines()[-1]}"



# One command per package and an abbreviation of one of its keys (argparse would expand it silently).
ABBREVIATED = {
    "data_shards": ("synth", "img_siz", "img_size"),
    "pretrain": ("fit", "trainer.max_step", "trainer.max_steps"),
    "finetune": ("score", "tracking_ur", "tracking_uri"),
    "slurm": ("status", "job_i", "job_id"),
}


@pytest.mark.parametrize("package", PACKAGES)
def test_an_abbreviated_key_is_refused_in_one_error_line_without_heavy_imports(package: str) -> None:
    command, given, meant = ABBREVIATED[package]
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['{package}', '{command}', '--{given}', '1']\n"
        "try:\n"
        f"    runpy.run_module('{package}', run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    print('EXIT', stop.code)\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-2:] == ["EXIT 2", "HEAVY="], done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: unknown key '{given}'; did you mean {meant}") and f"python -m {package} {command} --help" in line, line
