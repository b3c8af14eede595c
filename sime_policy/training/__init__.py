"""Training a policy on a store version: the optimisation loop, checkpoints, EMA, LR schedule, logs, devices."""
