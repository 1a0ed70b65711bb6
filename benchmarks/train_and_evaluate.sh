#!/usr/bin/env bash
# One benchmark run: `genpipe train` then `genpipe evaluate` with the given --set overrides, every output
# beside, not over, the default pipeline's: the generator, MLflow records and checkpoints under
# data/<report_dir minus reports/>/<name>, curves, logs, metrics and samples under <report_dir>/<name>.
# Shared by fusion_mnist5k.sh and stacked_mnist.sh; "train wall" / "evaluate wall" lines in the logs are
# what their reports read.
#   bash benchmarks/train_and_evaluate.sh <report_dir> <name> [key=value ...]
set -euo pipefail
report_dir=$1 name=$2
shift 2
out=$report_dir/$name
mkdir -p "$out"
# Each run has its own MLflow store and Ray checkpoints beside its generator, emptied first: a benchmark
# times a fresh training, never train's resume or reuse of an earlier run with the same settings.
run_data=data/${report_dir#reports/}/$name
rm -rf "$run_data/mlflow" "$run_data/checkpoints" && mkdir -p "$run_data/mlflow"
common=(--set train.output_dir=$run_data/train --set train.curves_dir=$out/train_curves
        --set evaluate.headline=$out/headline.json --set "tracking.uri=sqlite:///$PWD/$run_data/mlflow/mlflow.db"
        --set "scaling.storage_path=$PWD/$run_data/checkpoints")
for kv in "$@"; do common+=(--set "$kv"); done
/usr/bin/time -f "train wall %e s" genpipe train "${common[@]}" 2>&1 | tee "$out/train.log"
/usr/bin/time -f "evaluate wall %e s" genpipe evaluate "${common[@]}" \
  --set evaluate.report=$out/metrics.json --set evaluate.grid=$out/samples.png 2>&1 | tee "$out/evaluate.log"
