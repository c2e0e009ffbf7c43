"""Project-wide plumbing under every stage: recipe validation, the command-line runner, atomic files.

The bottom layer: ``data_shards``, ``pretrain``, ``finetune`` and ``slurm`` all import it; it
imports none of them (``docs/architecture.md``).
"""
