#!/usr/bin/env bash
# One benchmark run: `genpipe train` then `genpipe evaluate` with the given --set overrides, every output
# beside, not over, the default pipeline's: the generator under data/<report_dir minus reports/>/<name>,
# curves, logs, metrics and samples under <report_dir>/<name>. Shared by fusion_mnist5k.sh and
# stacked_mnist.sh; "train wall" / "evaluate wall" lines in the logs are what their reports read.
#   bash benchmarks/train_and_evaluate.sh <report_dir> <name> [key=value ...]
set -euo pipefail
report_dir=$1 name=$2
shift 2
out=$report_dir/$name
mkdir -p "$out"
common=(--set train.output_dir=data/${report_dir#reports/}/$name/train --set train.curves_dir=$out/train_curves
        --set evaluate.headline=$out/headline.json)
for kv in "$@"; do common+=(--set "$kv"); done
/usr/bin/time -f "train wall %e s" genpipe train "${common[@]}" 2>&1 | tee "$out/train.log"
/usr/bin/time -f "evaluate wall %e s" genpipe evaluate "${common[@]}" \
  --set evaluate.report=$out/metrics.json --set evaluate.grid=$out/samples.png 2>&1 | tee "$out/evaluate.log"
