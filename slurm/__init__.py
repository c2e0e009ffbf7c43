"""Submitting every stage to SLURM with submitit, and Ray Tune sweeps inside allocations."""
