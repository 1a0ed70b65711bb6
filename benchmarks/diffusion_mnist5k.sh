#!/usr/bin/env bash
# The mnist5k diffusion figures of the README: `train` the ddpm preset (Ray Train, 2 workers), then
# `evaluate` it under the default pipeline's evaluator with DDIM 50 at guidance 1 (the preset), 3 and 0
# (unconditional). Outputs beside, not over, the default pipeline's. Needs the default pipeline's data
# and evaluator (`dvc repro` once). Run it alone: timings.
set -euo pipefail
out=reports/diffusion
mkdir -p "$out"
common=(--set preset=ddpm --set train.output_dir=data/ddpm/train)
/usr/bin/time -f "train wall %e s" genpipe train "${common[@]}" 2>&1 | tee "$out/train.log"
for w in 1 3 0; do
  genpipe evaluate "${common[@]}" --set diffusion.guidance=$w \
    --set evaluate.report=$out/metrics_ddim50_w$w.json --set evaluate.grid=$out/samples_ddim50_w$w.png
done
