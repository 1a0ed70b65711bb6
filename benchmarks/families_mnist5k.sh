#!/usr/bin/env bash
# The mnist5k figures of README "Conditional and translation models": for each preset given (default
# all: cgan pix2pix_sr cyclegan vae; also ddgan_sr), prepare + evaluator when it has its own dataset, `train` (Ray
# Train, 2 workers), `evaluate`. Outputs under data/families/<preset> and reports/families/<preset>,
# beside, not over, the default pipeline's; cgan and vae are scored under the default pipeline's
# evaluator (`dvc repro` once first), so their FIDs sit on one table with the DCGAN and DDPM.
# Run it alone: timings.
set -euo pipefail
export PATH="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin:$PATH"  # genpipe from the project venv
for preset in "${@:-cgan pix2pix_sr cyclegan vae}"; do
  for p in $preset; do
    out=reports/families/$p
    mkdir -p "$out"
    common=(--set preset=$p --set train.output_dir=data/families/$p/train --set train.curves_dir=$out/train_curves
            --set evaluate.headline=$out/headline.json)
    case $p in
      pix2pix*|cyclegan*|ddgan_sr)  # translation presets: their own paired dataset and evaluator
        # prepared beside the default pipeline's data/prepared (a DVC output), not in it
        common+=(--set data.prepared_dir=data/families/prepared --set evaluator.output_dir=data/families/$p/evaluator)
        genpipe prepare "${common[@]}"
        /usr/bin/time -f "evaluator wall %e s" genpipe evaluator "${common[@]}" 2>&1 | tee "$out/evaluator.log" ;;
    esac
    /usr/bin/time -f "train wall %e s" genpipe train "${common[@]}" 2>&1 | tee "$out/train.log"
    /usr/bin/time -f "evaluate wall %e s" genpipe evaluate "${common[@]}" \
      --set evaluate.report=$out/metrics.json --set evaluate.grid=$out/samples.png 2>&1 | tee "$out/evaluate.log"
  done
done
