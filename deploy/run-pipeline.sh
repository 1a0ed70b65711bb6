#!/usr/bin/env bash
# Runs the genpipe pipeline on a Ray cluster whose nodes share no disk. It runs on the head node, as the
# driver: deploy/ray-cluster.yaml starts it with `ray exec`, deploy/rayjob.yaml makes it the RayJob's
# entrypoint. It clones the project at a git ref, pulls what DVC already has, runs the stages with every
# location the nodes share on S3, and pushes the outputs to the DVC remote.
#
# Settings come from the environment, secrets included: on `ray up` nodes from ~/.genpipe/*.env, which
# the cluster YAML writes (the MLflow user comes from SSM Parameter Store), on Kubernetes from the pod
# (the MLflow user from a Secret). S3 credentials come from the AWS default chain (an instance role,
# IRSA, or the standard AWS_* variables). None of them is ever written to params.yaml.
set -euo pipefail

for env_file in "$HOME/.genpipe/cluster.env" "$HOME/.genpipe/secrets.env"; do
  if [[ -f $env_file ]]; then
    # shellcheck source=/dev/null
    source "$env_file"
  fi
done

: "${GENPIPE_BUCKET:?the S3 bucket for Ray storage, prepared data and the DVC remote (a name, no s3://)}"
: "${GENPIPE_GIT_URL:?the git URL of the genpipe project to run}"
: "${MLFLOW_TRACKING_URI:?the team MLflow server (https://...)}"
: "${MLFLOW_TRACKING_USERNAME:?the MLflow pipeline user (from a secret)}"
: "${MLFLOW_TRACKING_PASSWORD:?the MLflow pipeline password (from a secret)}"
if [[ ${RAY_AUTH_MODE:-} != token ]]; then
  echo "run-pipeline.sh: RAY_AUTH_MODE is '${RAY_AUTH_MODE:-}', expected 'token': the cluster runs with" \
       "Ray token authentication" >&2
  exit 2
fi
if [[ $GENPIPE_BUCKET == *[/:]* ]]; then
  echo "run-pipeline.sh: GENPIPE_BUCKET='$GENPIPE_BUCKET' must be a bucket name, without s3:// or a prefix" >&2
  exit 2
fi

ref=${GENPIPE_GIT_REF:-main}
workers=${GENPIPE_NUM_WORKERS:-2}
s3="s3://$GENPIPE_BUCKET"
export RAY_ADDRESS=${RAY_ADDRESS:-auto}  # join this cluster (a RayJob's driver has it set already)

work=$(mktemp -d "${TMPDIR:-/tmp}/genpipe-run.XXXXXX")
git clone --quiet --branch "$ref" "$GENPIPE_GIT_URL" "$work/genpipe"
cd "$work/genpipe"
git config user.name "genpipe cluster run"  # the author of the commit `dvc exp run` records
git config user.email "genpipe-cluster@localhost"

# The DVC remote, in .dvc/config.local (never committed): an S3 prefix, credentials from the AWS chain.
dvc remote add --local --force --default cluster "$s3/dvc"
dvc pull --allow-missing  # what earlier runs pushed; a first run finds nothing, and that is fine

# `dvc exp run` is `dvc repro` with params set for this run (-S): every path the nodes share is on S3.
exp="cluster-$(date -u +%Y%m%d-%H%M%S)"
dvc exp run --name "$exp" \
  --set-param "scaling.storage_path=$s3/ray/train" \
  --set-param "tune.storage_path=$s3/ray/tune" \
  --set-param "data.remote=$s3/prepared" \
  --set-param "scaling.num_workers=$workers"
dvc push

# Optional: the run's params.yaml and dvc.lock, as a git ref others can `dvc exp pull` (needs push rights).
if [[ ${GENPIPE_EXP_PUSH:-0} == 1 ]]; then
  dvc exp push --no-cache origin "$exp"
fi
echo "run-pipeline.sh: experiment $exp done; outputs pushed to $s3/dvc"
