#!/usr/bin/env bash
# The mnist5k diffusion figures of the README: `train` the ddpm preset (Ray Train, 2 workers), then
# `evaluate` it under the default pipeline's evaluator as the preset samples (DDIM 50, η = 1, guidance 3)
# and at guidance 1. Outputs beside, not over, the default pipeline's. Needs the default pipeline's data
# and evaluator (`dvc repro` once). Run it alone: timings. Other samplers of the same model, on any
# device: benchmarks/diffusion_samplers.py.
set -euo pipefail
export PATH="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin:$PATH"  # genpipe from the project venv
out=reports/diffusion
mkdir -p "$out"
common=(--set preset=ddpm --set train.output_dir=data/ddpm/train --set train.curves_dir=$out/train_curves
        --set evaluate.headline=$out/headline.json)
/usr/bin/time -f "train wall %e s" genpipe train "${common[@]}" 2>&1 | tee "$out/train.log"
/usr/bin/time -f "evaluate wall %e s" genpipe evaluate "${common[@]}" \
  --set evaluate.report=$out/metrics.json --set evaluate.grid=$out/samples.png
genpipe evaluate "${common[@]}" --set diffusion.guidance=1 \
  --set evaluate.report=$out/metrics_w1.json --set evaluate.grid=$out/samples_w1.png
