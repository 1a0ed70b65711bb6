"""The train stage in one process (--no-ray) against a real SQLite MLflow store in a temp dir."""
from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from components.tracking.names import SUMMARY_FILE
from components.training import checkpoint as ckpt
from conftest import tiny_params
from pipelines import train


@pytest.fixture
def trained(run_root):
    params = tiny_params(run_root)
    summary = train.run(params, run_root, use_ray=False)
    return params, summary


def test_mlflow_gets_params_metrics_images_and_model(trained, run_root):
    params, summary = trained
    client = MlflowClient(params.tracking.uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "digits-dcgan"
    assert run.data.params["train.lr_g"] == "0.0002" and run.data.params["model.latent_dim"] == "16"
    history = client.get_metric_history(run.info.run_id, "d_loss")
    assert [m.step for m in history] == [2, 4, 6] and all(np.isfinite(m.value) for m in history)
    assert {"g_loss", "d_real", "d_fake", "images_per_s"} <= set(run.data.metrics)
    samples = [a.path for a in client.list_artifacts(run.info.run_id, "samples")]
    assert samples and all(p.endswith(".png") for p in samples)
    local = client.download_artifacts(run.info.run_id, samples[-1])
    from PIL import Image

    assert np.asarray(Image.open(local)).std() > 0  # a real grid, not a blank image


def test_logged_model_loads_and_samples_without_project_pickles(trained, run_root):
    params, summary = trained
    mlflow.set_tracking_uri(params.tracking.uri)
    model = mlflow.pyfunc.load_model(summary["model_uri"])
    a = model.predict({"num_samples": 5, "seed": 3})
    b = model.predict({"num_samples": 5, "seed": 3})
    c = model.predict({"num_samples": 5, "seed": 4})
    assert a.shape == (5, 1, 8, 8) and a.dtype == np.float32
    assert a.min() >= -1.0 and a.max() <= 1.0
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_exported_generator_matches_the_final_checkpoint(trained, run_root):
    params, summary = trained
    g, spec = ckpt.load_generator(params.train.output_dir)
    store = ckpt.LocalCheckpoints(run_root / "checkpoints" / summary["run_name"], keep=2)
    state = ckpt.load(store.latest())
    assert spec["step"] == state["step"] == summary["steps"] == 6
    for k, v in g.state_dict().items():
        assert torch.equal(v, state["generator"][k]), k
    on_disk = json.loads((run_root / "train" / SUMMARY_FILE).read_text())
    assert on_disk["mlflow_run_id"] == summary["mlflow_run_id"]


def test_rerun_with_same_config_resumes_the_same_run(trained, run_root, capsys):
    params, first = trained
    # an interrupted run resumes (a FINISHED one is never reopened: tests/test_tracking_records.py)
    MlflowClient(params.tracking.uri).set_terminated(first["mlflow_run_id"], "KILLED")
    longer = tiny_params(run_root, train={"max_steps": 9, "run_name": first["run_name"].removesuffix("-noray")})
    second = train.run(longer, run_root, use_ray=False)
    assert "resuming from checkpoint at step 6" in capsys.readouterr().out
    assert second["mlflow_run_id"] == first["mlflow_run_id"] and second["steps"] == 9
    steps = [m.step for m in MlflowClient(params.tracking.uri).get_metric_history(second["mlflow_run_id"], "d_loss")]
    assert steps == [2, 4, 6, 8, 9]


def test_nan_marks_the_mlflow_run_failed(run_root, nan_objective):
    name, _ = nan_objective(5)
    params = tiny_params(run_root, train={"objective": name})
    with pytest.raises(train.TrainError, match="non-finite loss at step 5"):
        train.run(params, run_root, use_ray=False)
    client = MlflowClient(params.tracking.uri)
    exp = client.get_experiment_by_name(params.experiment_name)
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FAILED"
    assert not (run_root / "train").exists()  # no half-written model output
