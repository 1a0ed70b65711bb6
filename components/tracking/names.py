"""The names that link the stages through MLflow and train.output_dir: the tags genpipe sets on runs and
registered versions, and the summary train writes beside its export. Plain strings: importing this module
imports nothing (the CLI reads the summary before any work)."""
from __future__ import annotations

SUMMARY_FILE = "train_summary.json"  # in train.output_dir: the candidate's MLflow run and logged model
EVALUATOR_HASH_TAG = "genpipe.evaluator_hash"  # on an evaluated run and its registered version
REFERENCE_TAG = "genpipe.eval_reference"  # beside it: evaluate.reference, the split its numbers compare with
MODEL_URI_TAG = "genpipe.model_uri"  # on a registered version: the logged model it was registered from
WEIGHTS_TAG = "genpipe.weights_sha256"  # on a registered version: its weights' hash (one version per set of weights)
FINAL_STEP_TAG = "genpipe.final_step"  # on a finished run: the step its logged model was exported at
