#!/usr/bin/env bash
# The mnist5k GAN–diffusion figures (reports/fusion/, docs/families.md "ddgan"): for each run given as
# name=overrides (default: the ddgan and ddpm presets), `train` (Ray Train, 2 workers) and `evaluate`
# under the default pipeline's evaluator (benchmarks/train_and_evaluate.sh), outputs under
# data/fusion/<name> and reports/fusion/<name>, beside, not over, the default pipeline's (`dvc repro` once
# first: its data, evaluator and the dcgan row). Then benchmarks/fusion_report.py writes
# reports/fusion/summary.json and .md. Run it alone: timings.
#   bash benchmarks/fusion_mnist5k.sh                                   # ddgan vs ddpm (vs the default dcgan)
#   bash benchmarks/fusion_mnist5k.sh "ddgan_t1=preset=ddgan ddgan.timesteps=1"   # one more run
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$root/.venv/bin:$PATH"  # genpipe from the project venv
cd "$root"
runs=("$@")
[ ${#runs[@]} -eq 0 ] && runs=("ddgan=preset=ddgan" "ddpm=preset=ddpm")
for run in "${runs[@]}"; do
  # shellcheck disable=SC2086  # the overrides are space-separated key=value words
  bash benchmarks/train_and_evaluate.sh reports/fusion "${run%%=*}" ${run#*=}
done
python benchmarks/fusion_report.py
