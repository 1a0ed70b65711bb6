"""What links the stages: the files one stage writes and the next reads, and the MLflow tags they share.
Stages import this module, never each other."""
from __future__ import annotations

import json
from pathlib import Path

SUMMARY_FILE = "train_summary.json"  # in train.output_dir: the candidate's MLflow run and logged model
BEST_FILE = "best.json"  # in tune.output_dir: the sweep's best configuration, applied by train/evaluate/promote
EVALUATOR_HASH_TAG = "genpipe.evaluator_hash"  # on an evaluated run and its registered version
MODEL_URI_TAG = "genpipe.model_uri"  # on a registered version: the logged model it was registered from
WEIGHTS_TAG = "genpipe.weights_sha256"  # on a registered version: its weights' hash (one version per set of weights)


class MissingStageOutput(ValueError):
    """A stage's input that an earlier stage writes is not there; the message names the file and the stage."""


def read_train_summary(params, repo_root: Path) -> dict:
    path = (Path(repo_root) / params.train.output_dir / SUMMARY_FILE).resolve()
    if not path.is_file():
        raise MissingStageOutput(f"no trained candidate: {path} is missing; run `genpipe train` first")
    return json.loads(path.read_text())


def tuned_overrides(params, repo_root: Path) -> dict:
    """The best configuration the tune stage chose, as dotted keys for train/evaluate/promote; {} when the
    sweep is off."""
    if not params.tune.enabled:
        return {}
    path = (Path(repo_root) / params.tune.output_dir / BEST_FILE).resolve()
    if not path.is_file():
        raise MissingStageOutput(f"tune.enabled is true but {path} is missing; run `genpipe tune` first "
                                 "(or set tune.enabled: false to train params as they are)")
    return json.loads(path.read_text())["overrides"]
