"""What the study scripts (loss_study.py, default_study.py, class_balance_fid.py) share: run a study's
sweep from its YAML (data, evaluator, then `genpipe tune`), read back what the sweep wrote, the real
splits' evaluator features (the floor), and log the study's own outputs to the sweep's MLflow parent run,
beside the trials table."""
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


def wide_csv(x: str, series: dict[str, dict]) -> str:
    """A DVC plot's CSV: one row per `x` value (sorted), one column per series ({x value: y}), blank where a
    series has no point. Written by the csv module: a series name with a comma ('labels, EMA') stays one
    quoted field, as DVC's reader (csv.DictReader) expects. Declare the columns as the plot's `y` list in
    benchmarks/dvc.yaml: a plot without one draws only the last column."""
    import io

    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow([x, *series])
    for at in sorted({k for points in series.values() for k in points}):
        out.writerow([at, *(f"{points[at]:.6g}" if at in points else "" for points in series.values())])
    return buf.getvalue()


def real_features(params):
    """The evaluator's features of the test and train splits, the train labels and the evaluator's info:
    what a real-vs-real comparison (the floor) needs."""
    import torch

    from components.data.shards import load_split
    from components.evaluation import open_evaluator

    extractor, info = open_evaluator(params, REPO)
    prepared = params.prepared_path(REPO)
    train_x, train_y = load_split(prepared, "train")
    test_x, _ = load_split(prepared, "test")
    return extractor.features(torch.as_tensor(test_x)), extractor.features(torch.as_tensor(train_x)), train_y, info


def fid_floor(params) -> float:
    """FID of the train split against the test split: the best a model can score (as `evaluate` reports)."""
    from components.metrics import scores

    test, train, _, _ = real_features(params)
    return scores.fid_kid(test, train, kid_subset_size=params.evaluate.kid_subset_size, seed=params.evaluate.seed)["fid"]


def log_to_parent(params, report: dict, paths: list[Path]) -> None:
    from mlflow.tracking import MlflowClient

    from components.tracking import mlflow_store

    client = MlflowClient(mlflow_store.resolve_uri(params.tracking.uri, REPO))
    for path in paths:
        client.log_artifact(report["mlflow_parent_run_id"], str(path), "study")
