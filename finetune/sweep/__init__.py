"""Ray Tune sweeps over fine-tuning: the driver, one trial, the search space, the report callback, the results."""
