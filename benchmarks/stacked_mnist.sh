#!/usr/bin/env bash
# The Stacked MNIST mode benchmark (reports/stacked/, docs/gan-game.md "Stacked MNIST") in the VEEGAN/PacGAN
# setting: 128,000 training images, each three digits drawn with replacement from mnist5k's 5,000 (not MNIST's
# 70,000) as its channels; 1,000 modes counted by the pinned per-channel digit reader on 26,000 samples.
# Prepares the data and its evaluator (under data/stacked/), then trains and evaluates each run given as
# name=overrides for each seed in $SEEDS (default 0 1 2), keeps each run's 26,000 scored samples as uint8
# data/stacked/samples/<name>-s<seed>.npz (a DVC output), and writes reports/stacked/summary.{json,md}.
# Run it alone: it reports timings.
#
# The papers' schedule, scaled to 2 CPU cores (docs/gan-game.md "Stacked MNIST" says what each cut costs):
# - kept: batch 64 (PacGAN-m: D judges 64 packed inputs, 64·m samples from G and from the data), Adam 2e-4
#   with β1 = 0.5, z of 100 dimensions, two G updates per D update (the reference code's), nonsaturating loss;
# - cut: STEPS updates (default 2,000: one of the reference's 50 epochs of 2,000), and genpipe's DCGAN at its
#   default widths (D 32-64 channels, 4×4 kernels, two stages on 28×28) for the reference's 64-512, 5×5, four.
#   bash benchmarks/stacked_mnist.sh                     # the table's runs, seeds 0 1 2
#   SEEDS=0 ONLY="dcgan pacgan2" bash benchmarks/stacked_mnist.sh   # some of the table's runs, by name
#   SEEDS=0 bash benchmarks/stacked_mnist.sh "dcgan=train.max_steps=500"   # a run of your own overrides
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$root/.venv/bin:$PATH"  # genpipe from the project venv
cd "$root"
# preset=null: label-free GANs (mode counts measure unconditional models; params.yaml's default preset,
# cgan, would hand D the labels); a run's own preset= (ddgan) comes later and wins
data=(preset=null data.source=stacked_mnist data.prepared_dir=data/stacked/prepared evaluator.kind=per_channel
      evaluator.output_dir=data/stacked/evaluator)
one_node=(scaling.num_workers=1 scaling.cpus_per_worker=2 train.log_every=100 train.checkpoint_every=1000
          train.sample_every=1000)
gan="train.max_steps=${STEPS:-2000} train.batch_size=64 model.latent_dim=100 train.g_steps_per_d_step=2
     train.lr_g=0.0002 train.lr_d=0.0002 train.beta1=0.5 train.objective=nonsaturating"
sets=(); for kv in "${data[@]}"; do sets+=(--set "$kv"); done
genpipe prepare "${sets[@]}"
genpipe evaluator "${sets[@]}"
runs=("$@")
# dcgan_d8 / pacgan2_d8: D at a quarter of its width (8-16 channels), the reduced-D regime in which the
# Unrolled GAN paper's DCGAN drops modes on Stacked MNIST: where packing has a collapse to repair.
# dcgan_clusters: label-free conditioning on 1,000 k-means clusters of the images' first 32 principal
# components (model.clusters, as the labelfree preset on mnist5k), on the reference schedule; labelfree: the
# labelfree preset itself (the default pipeline's DCGAN, noised D, one G update per D update, z of 64) with
# those 1,000 clusters and batch 64, for 5,000 steps (the default pipeline's ~5,000), with an EMA of G, and
# for 10,000 steps, and with a G twice as wide (three unrelated digits share G's last feature maps).
labelfree="preset=labelfree model.clusters=1000 model.cluster_dims=32 train.batch_size=64"
# ddgan keeps its preset's schedule at 720 steps (4 NFE per sample, so 26,000 samples cost minutes), scored on
# one sampling seed. ddpm: its preset's UNet and schedule for 1,000 steps, unconditional, sampled by
# deterministic DDIM in 10 steps (26,000 samples at the preset's 100 passes each would take ~3 h on 2 cores);
# ddpm_3k: the same for 3,000 steps (is 1,000 too few?). labelfree_wide_2k5 / _10k: labelfree_wide at half and
# twice its steps (how its KL falls with training).
ddpm="preset=ddpm diffusion.class_conditional=false diffusion.guidance=1.0 diffusion.sampler=ddim diffusion.sample_steps=10
      diffusion.eta=0.0 evaluate.error_seeds=1"
[ ${#runs[@]} -eq 0 ] && runs=("dcgan=$gan" "pacgan2=$gan train.pack=2" "pacgan3=$gan train.pack=3"
                               "pacgan4=$gan train.pack=4" "dcgan_dd=$gan train.diffusion_d=true"
                               "dcgan_d8=$gan model.d_channels=8" "pacgan2_d8=$gan model.d_channels=8 train.pack=2"
                               "dcgan_clusters=$gan model.clusters=1000 model.cluster_dims=32"
                               "labelfree=$labelfree train.max_steps=5000" "labelfree_ema=$labelfree train.max_steps=5000 train.ema_decay=0.999"
                               "labelfree_10k=$labelfree train.max_steps=10000" "labelfree_wide=$labelfree train.max_steps=5000 model.g_channels=64"
                               "labelfree_wide_2k5=$labelfree train.max_steps=2500 model.g_channels=64"
                               "labelfree_wide_10k=$labelfree train.max_steps=10000 model.g_channels=64"
                               "ddgan=preset=ddgan ddgan.class_conditional=false train.max_steps=720 evaluate.error_seeds=1"
                               "ddpm=$ddpm train.max_steps=1000" "ddpm_3k=$ddpm train.max_steps=3000")
if [ -n "${ONLY:-}" ]; then  # ONLY="pacgan2 dcgan_dd": just these of the runs, by name
  kept=(); for run in "${runs[@]}"; do [[ " $ONLY " == *" ${run%%=*} "* ]] && kept+=("$run"); done; runs=("${kept[@]}")
fi
mkdir -p data/stacked/samples
for seed in ${SEEDS:-0 1 2}; do
  for run in "${runs[@]}"; do
    name=${run%%=*}
    # shellcheck disable=SC2086  # the overrides are space-separated key=value words
    bash benchmarks/train_and_evaluate.sh reports/stacked "$name-s$seed" "${data[@]}" "${one_node[@]}" seed=$seed \
      evaluate.mode_samples_file=data/stacked/samples/$name-s$seed.npz ${run#*=}
  done
done
python benchmarks/stacked_report.py
