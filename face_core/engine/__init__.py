"""The training engine both stages run on: trainer config and factory, strategies, checkpoints, tracking, optimiser, metrics.

Knows nothing of the model (it takes FLOP counts, block classes and modules as arguments) and
nothing of SLURM; pretraining and fine-tuning both run on it as it is.
"""
