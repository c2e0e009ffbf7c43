"""Submitting every stage to SLURM with submitit, and Ray Tune sweeps inside allocations.

``python -m slurm {submit,status,logs,cancel}`` (:mod:`slurm.cli`). :mod:`slurm.launcher` plans and
submits (one job or one array), :mod:`slurm.stages` turns each stage's recipe into jobs,
:mod:`slurm.resources` maps flags to sbatch and to the trainer, :mod:`slurm.jobs` holds the
callables run on the nodes, :mod:`slurm.requeue` saves and stops on SLURM's signals,
:mod:`slurm.ray_cluster` runs a Ray cluster over an allocation, :mod:`slurm.monitor` and
:mod:`slurm.job_log` follow the submitted jobs. ``slurm/local-cluster/`` starts a real one-host
cluster; see ``slurm/README.md``.
"""
