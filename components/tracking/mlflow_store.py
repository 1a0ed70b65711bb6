"""Where runs go and how they are found again.

Default store: SQLite at <repo>/mlflow/mlflow.db with artifacts under <repo>/mlflow/artifacts
(MLflow 3.17 refuses the file store). A team server: set MLFLOW_TRACKING_URI."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

RUN_NAME_TAG = "genpipe.run_name"


def default_uri(repo_root: Path) -> str:
    return f"sqlite:///{(repo_root / 'mlflow' / 'mlflow.db').resolve()}"


def resolve_uri(configured: str | None, repo_root: Path) -> str:
    """tracking.uri in params, else $MLFLOW_TRACKING_URI, else the embedded SQLite store."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(repo_root)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return uri


def artifact_root_for(uri: str) -> str | None:
    """A SQLite store keeps artifacts beside its db (MLflow would otherwise use ./mlruns of whatever
    directory the process runs in); a server chooses its own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None


def experiment_id(client: MlflowClient, name: str, artifact_root: str | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = f"{artifact_root}/{name}" if artifact_root else None
    return client.create_experiment(name, artifact_location=location)


def find_run(client: MlflowClient, exp_id: str, run_name: str):
    """Latest MLflow run that trained this genpipe run name (so a resume continues it)."""
    runs = client.search_runs([exp_id], filter_string=f"tags.`{RUN_NAME_TAG}` = '{run_name}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


class RunLogger:
    """Metrics and images into one existing run; used by rank 0 only (one writer per store)."""

    def __init__(self, uri: str, run_id: str):
        self.client = MlflowClient(uri)
        self.run_id = run_id

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        ts = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()])

    def log_image(self, image: np.ndarray, artifact_file: str) -> None:
        self.client.log_image(self.run_id, image, artifact_file=artifact_file)
