#!/usr/bin/env bash
# The mnist5k sweep of the README: the params.yaml space (6 random trials, ASHA), then `train` retrains
# the best configuration at the default full budget and `evaluate` scores it under the same evaluator
# as the default run (reports/metrics.json). Outputs beside, not over, the default pipeline's.
# Needs the default pipeline's data and evaluator (`dvc repro` once). Run it alone: timings.
set -euo pipefail
common=(--set tune.enabled=true --set tune.output_dir=data/tune_mnist5k
        --set tune.report=reports/tune/mnist5k.json --set tune.trials_csv=reports/tune/mnist5k_trials.csv)
time genpipe tune "${common[@]}"
time genpipe train "${common[@]}" --set train.output_dir=data/train_tuned
time genpipe evaluate "${common[@]}" --set train.output_dir=data/train_tuned \
  --set evaluate.report=reports/tune/mnist5k_tuned_metrics.json --set evaluate.grid=reports/tune/mnist5k_tuned_samples.png
