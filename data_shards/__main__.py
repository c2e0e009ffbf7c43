"""``python -m data_shards``: see :mod:`data_shards.cli`."""

from data_shards.cli import build, demo, merge, synth, verify
from plumbing.cli import run_cli

if __name__ == "__main__":
    run_cli([synth, build, merge, verify, demo], prog="python -m data_shards", description="Build, verify and synthesise WebDataset shards of face images and clips.")
