#!/usr/bin/env bash
# The label-free MNIST-5k benchmark (reports/modes/labelfree.json, docs/gan-game.md "Every mode without
# labels"): candidates that never see a label, each trained afresh (Ray Train, the default pipeline's 2
# workers and step budget) and scored under the default pipeline's pinned evaluator, which reads the class
# histogram of their samples (`dvc repro` once first: its data and evaluator). Outputs under
# data/modes/labelfree/<name> and reports/modes/labelfree/<name>; then benchmarks/labelfree_report.py
# writes reports/modes/labelfree.json (the shipped preset's figures and every candidate's) and .md.
# Run it alone: the train wall time is part of the goal.
#   bash benchmarks/labelfree.sh                          # the preset and the candidates it was chosen from
#   bash benchmarks/labelfree.sh "k50=preset=labelfree model.clusters=50"
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$root/.venv/bin:$PATH"  # genpipe from the project venv
cd "$root"
runs=("$@")
# the preset (200 clusters, 62 epochs), and the candidates it was chosen from at the default's 74 epochs
[ ${#runs[@]} -eq 0 ] && runs=("labelfree=preset=labelfree" "clusters30=preset=labelfree model.clusters=30 train.epochs=74"
                               "clusters100=preset=labelfree model.clusters=100 train.epochs=74"
                               "clusters200=preset=labelfree model.clusters=200 train.epochs=74")
for run in "${runs[@]}"; do
  # shellcheck disable=SC2086  # the overrides are space-separated key=value words
  bash benchmarks/train_and_evaluate.sh reports/modes/labelfree "${run%%=*}" ${run#*=}
done
python benchmarks/labelfree_report.py
