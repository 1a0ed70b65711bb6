#!/usr/bin/env bash
# The Stacked MNIST mode benchmark (reports/stacked/, docs/gan-game.md "Stacked MNIST"): 1,000 modes, each
# image three mnist5k digits as channels. Prepares the data and its per-channel evaluator (a digit reader,
# under data/stacked/evaluator, beside the default pipeline's), then trains and evaluates each run given as
# name=overrides for each seed in $SEEDS (default 0 1 2), counting modes and KL on 26,000 samples per
# sampling seed (evaluate.mode_samples), and writes reports/stacked/summary.{json,md}. Run it alone: timings.
# Every run trains ~3,600 steps of the global batch (mnist5k's default budget), ddgan ~720 (its preset's);
# ddgan is scored on one sampling seed (26,000 samples at 4 passes each; five would take ~30 min).
#   bash benchmarks/stacked_mnist.sh                              # dcgan, PacGAN2, dcgan + noised D, ddgan
#   SEEDS=0 bash benchmarks/stacked_mnist.sh "dcgan_dd=train.diffusion_d=true"
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$root/.venv/bin:$PATH"  # genpipe from the project venv
cd "$root"
# preset=null: label-free GANs (mode counts measure unconditional models; params.yaml's default preset,
# cgan, would hand D the labels); a run's own preset= (ddgan) comes later and wins
data=(preset=null data.source=stacked_mnist data.prepared_dir=data/stacked/prepared evaluator.kind=per_channel
      evaluator.output_dir=data/stacked/evaluator)
sets=(); for kv in "${data[@]}"; do sets+=(--set "$kv"); done
genpipe prepare "${sets[@]}"
genpipe evaluator "${sets[@]}"
runs=("$@")
[ ${#runs[@]} -eq 0 ] && runs=("dcgan=train.epochs=10" "pacgan2=train.epochs=10 train.pack=2"
                               "dcgan_dd=train.epochs=10 train.diffusion_d=true"
                               "ddgan=preset=ddgan ddgan.class_conditional=false train.epochs=4 evaluate.error_seeds=1")
for seed in ${SEEDS:-0 1 2}; do
  for run in "${runs[@]}"; do
    # shellcheck disable=SC2086  # the overrides are space-separated key=value words
    bash benchmarks/train_and_evaluate.sh reports/stacked "${run%%=*}-s$seed" "${data[@]}" seed=$seed ${run#*=}
  done
done
python benchmarks/stacked_report.py
