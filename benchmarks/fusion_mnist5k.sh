#!/usr/bin/env bash
# The mnist5k GAN–diffusion figures (reports/fusion/, docs/families.md "ddgan"): for each run given as
# name=overrides (default: the default dcgan, the ddgan and the ddpm preset), `train` (Ray Train, 2 workers,
# trained afresh) and `evaluate` under the default pipeline's evaluator (benchmarks/train_and_evaluate.sh),
# outputs under data/fusion/<name> and reports/fusion/<name>, beside, not over, the default pipeline's
# (`dvc repro` once first: its data and evaluator). Then benchmarks/fusion_report.py writes
# reports/fusion/summary.json and .md. Run it alone: timings.
#   bash benchmarks/fusion_mnist5k.sh                                   # the default dcgan, ddgan and ddpm
#   bash benchmarks/fusion_mnist5k.sh "ddgan_t1=preset=ddgan ddgan.timesteps=1"   # one more run
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$root/.venv/bin:$PATH"  # genpipe from the project venv
cd "$root"
runs=("$@")
# the DDPM on one sampling seed: 2,000 samples take ~13 min at its 100 passes each; five would take ~1 h
[ ${#runs[@]} -eq 0 ] && runs=("dcgan_s0=seed=0" "ddgan=preset=ddgan" "ddpm=preset=ddpm evaluate.error_seeds=1")
for run in "${runs[@]}"; do
  # shellcheck disable=SC2086  # the overrides are space-separated key=value words
  bash benchmarks/train_and_evaluate.sh reports/fusion "${run%%=*}" ${run#*=}
done
python benchmarks/fusion_report.py
