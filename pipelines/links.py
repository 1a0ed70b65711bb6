"""What links the stages: the files one stage writes and the next reads, and the MLflow tags they share.
Stages import this module, never each other."""
from __future__ import annotations

import json
from pathlib import Path

# The summary file and the MLflow tags live with the components that write and read them as well.
from components.tracking.names import EVALUATOR_HASH_TAG, MODEL_URI_TAG, SUMMARY_FILE, WEIGHTS_TAG  # noqa: F401

BEST_FILE = "best.json"  # in tune.output_dir: the sweep's best configuration, applied by train/evaluate/promote


class MissingStageOutput(ValueError):
    """A stage's input that an earlier stage writes is not there; the message names the file and the stage."""


def read_train_summary(params, repo_root: Path) -> dict:
    path = (Path(repo_root) / params.train.output_dir / SUMMARY_FILE).resolve()
    if not path.is_file():
        raise MissingStageOutput(f"no trained candidate: {path} is missing; run `genpipe train` first")
    summary = json.loads(path.read_text())
    if "tracking_uri" in summary:  # written in another checkout (dvc pull, a copied mlflow/): the store as seen here
        from components.tracking.mlflow_store import recorded_uri

        summary["tracking_uri"] = recorded_uri(summary["tracking_uri"], params.tracking.uri, Path(repo_root))
    return summary


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
