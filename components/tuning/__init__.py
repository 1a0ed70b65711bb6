"""Hyperparameter sweeps without Ray: the search space (space.py). Ray Tune drives them from pipelines/tune.py."""
