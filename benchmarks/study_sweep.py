"""What the study scripts (loss_study.py, default_study.py) share: run a study's sweep from its YAML
(data, evaluator, then `genpipe tune`), read back what the sweep wrote, and log the study's own outputs
to the sweep's MLflow parent run, beside the trials table."""
from __future__ import annotations

import csv
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_or_read(config: Path, analyse_only: bool):
    """(params, tune report, trial rows) of the study `config`, sweeping first unless `analyse_only`."""
    from components.config import load_params

    params = load_params(config)
    if not analyse_only:
        from pipelines import evaluator, prepare, tune

        prepare.run(params, REPO)
        evaluator.run(params, REPO)
        tune.run(params, REPO, resume=None)
    report = json.loads((REPO / params.tune.report).read_text())
    return params, report, read_csv(REPO / params.tune.trials_csv)


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def log_to_parent(params, report: dict, paths: list[Path]) -> None:
    from mlflow.tracking import MlflowClient

    from components.tracking import mlflow_store

    client = MlflowClient(mlflow_store.resolve_uri(params.tracking.uri, REPO))
    for path in paths:
        client.log_artifact(report["mlflow_parent_run_id"], str(path), "study")
