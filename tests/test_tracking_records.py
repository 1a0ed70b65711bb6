"""The tracking store and registry record only what happened: a rerun never reopens or re-marks a finished
run, an experiment's temporary copy records into the user's real store, and a sweep's best trial is never
a promotion candidate."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from components.config import load_params
from components.data.shards import read_manifest
from components.tracking import mlflow_store
from components.tracking.names import SUMMARY_FILE
from components.training import checkpoint as ckpt
from conftest import tiny_params
from pipelines import evaluator, prepare, train, tune

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")


def _info(params, run_id: str):
    return MlflowClient(params.tracking.uri).get_run(run_id).info


def _runs(params) -> list:
    client = MlflowClient(params.tracking.uri)
    exp = client.get_experiment_by_name(params.experiment_name)
    return client.search_runs([exp.experiment_id]) if exp else []


def _logged_models(params, run_id: str) -> list[str]:
    client = MlflowClient(params.tracking.uri)
    exp = client.get_experiment_by_name(params.experiment_name)
    found = client.search_logged_models([exp.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    return sorted(f"models:/{m.model_id}" for m in found)


# ---- 1. a finished run is never reopened ------------------------------------------------------

@no_gpu
def test_gpu_rerun_on_a_machine_without_one_is_refused_and_the_finished_run_stays_finished(run_root):
    params = tiny_params(run_root)
    first = train.run(params, run_root, use_ray=False)
    before = _info(params, first["mlflow_run_id"])
    gpu = tiny_params(run_root, scaling={"use_gpu": True})  # same run key: the same MLflow run
    with pytest.raises(train.TrainError, match=r"scaling.use_gpu is true but this machine has no CUDA GPU"):
        train.run(gpu, run_root, use_ray=False)
    after = _info(params, first["mlflow_run_id"])
    assert (after.status, after.end_time) == ("FINISHED", before.end_time)
    assert len(_runs(params)) == 1


@no_gpu
@pytest.mark.ray
@pytest.mark.usefixtures("local_ray")
def test_ray_gpu_rerun_refused_by_the_resource_check_leaves_the_finished_run_untouched(run_root):
    params = tiny_params(run_root, scaling={"use_gpu": True})
    name = train.run_name_for(params, read_manifest(params.prepared_path(run_root)))
    client = MlflowClient(params.tracking.uri)
    exp_id = mlflow_store.experiment_id(client, params.experiment_name, None)
    run_id = client.create_run(exp_id, run_name=name, tags={mlflow_store.RUN_NAME_TAG: name}).info.run_id
    client.set_terminated(run_id, "FINISHED")  # e.g. the run the champion came from
    before = client.get_run(run_id).info
    with pytest.raises(train.TrainError, match=r"with scaling.use_gpu needs 1 GPUs?; the Ray cluster has 0"):
        train.run(params, run_root, use_ray=True)
    after = client.get_run(run_id).info
    assert (after.status, after.end_time) == ("FINISHED", before.end_time)
    assert len(_runs(params)) == 1


def test_rerun_of_a_finished_run_rebuilds_the_output_without_logging_anything(run_root, capsys):
    params = tiny_params(run_root)
    first = train.run(params, run_root, use_ray=False)
    run_id = first["mlflow_run_id"]
    before = _info(params, run_id)
    weights = (run_root / "train" / ckpt.GENERATOR_WEIGHTS).read_bytes()
    points = len(MlflowClient(params.tracking.uri).get_metric_history(run_id, "d_loss"))
    shutil.rmtree(run_root / "train")
    capsys.readouterr()

    second = train.run(params, run_root, use_ray=False)
    said = [line for line in capsys.readouterr().out.splitlines() if "already FINISHED" in line]
    assert len(said) == 1 and run_id in said[0]
    assert second == first  # same run, same logged model, same step count
    assert json.loads((run_root / "train" / SUMMARY_FILE).read_text()) == first
    assert (run_root / "train" / ckpt.GENERATOR_WEIGHTS).read_bytes() == weights
    assert _logged_models(params, run_id) == [first["model_uri"]]  # no second logged model
    after = _info(params, run_id)
    assert (after.status, after.end_time) == ("FINISHED", before.end_time)
    assert len(MlflowClient(params.tracking.uri).get_metric_history(run_id, "d_loss")) == points
    assert len(_runs(params)) == 1


def test_rerun_of_a_finished_run_without_its_checkpoints_rebuilds_from_its_logged_model(run_root):
    """A `dvc exp run --temp` copy has no data/checkpoints: the run's logged export is used instead, and
    when that is gone too the error says what to do."""
    params = tiny_params(run_root)
    first = train.run(params, run_root, use_ray=False)
    weights = (Path(params.train.output_dir) / "generator.safetensors").read_bytes()
    before = _info(params, first["mlflow_run_id"])
    folder = (run_root / "checkpoints" / first["run_name"]).resolve()
    shutil.rmtree(folder)
    again = train.run(params, run_root, use_ray=False)
    assert again == first and (Path(params.train.output_dir) / "generator.safetensors").read_bytes() == weights
    assert _logged_models(params, first["mlflow_run_id"]) == [first["model_uri"]]

    from components.tracking.logged_model import _artifacts_of

    where, _ = _artifacts_of(params.tracking.uri, first["model_uri"])
    shutil.rmtree(where.removeprefix("file://"))
    with pytest.raises(train.TrainError) as e:
        train.run(params, run_root, use_ray=False)
    msg = str(e.value)
    assert first["mlflow_run_id"] in msg and str(folder) in msg and "step 6" in msg and "train.run_name" in msg
    assert first["model_uri"] in msg and "cannot be read" in msg
    after = _info(params, first["mlflow_run_id"])
    assert (after.status, after.end_time) == ("FINISHED", before.end_time)


def test_a_finished_run_is_not_extended_under_its_name(run_root):
    named = {"run_name": "fixed-name"}
    first = train.run(tiny_params(run_root, train=named), run_root, use_ray=False)
    longer = tiny_params(run_root, train={**named, "max_steps": 9})
    before = _info(longer, first["mlflow_run_id"])
    with pytest.raises(train.TrainError, match=r"FINISHED at step 6; these params train to step 9.*train.run_name"):
        train.run(longer, run_root, use_ray=False)
    after = _info(longer, first["mlflow_run_id"])
    assert (after.status, after.end_time) == ("FINISHED", before.end_time)


def test_an_interrupted_run_still_resumes_in_the_same_mlflow_run(run_root, capsys):
    params = tiny_params(run_root)
    first = train.run(params, run_root, use_ray=False)
    client = MlflowClient(params.tracking.uri)
    client.set_terminated(first["mlflow_run_id"], "KILLED")  # what a Ctrl-C during training records
    capsys.readouterr()
    second = train.run(params, run_root, use_ray=False)
    assert "resuming from checkpoint at step 6" in capsys.readouterr().out
    assert second["mlflow_run_id"] == first["mlflow_run_id"]
    assert _info(params, first["mlflow_run_id"]).status == "FINISHED"


# ---- 2. `dvc exp run --temp/--queue`: the store of the real repository ----------------------------

@pytest.mark.parametrize("executor", ["tmpabc", "standalone/tmpabc", "celery/tmpabc"])
def test_an_experiment_copy_resolves_to_the_real_repository_store(tmp_path, monkeypatch, executor):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    real = tmp_path / "real"
    copy = real / ".dvc" / "tmp" / "exps" / executor
    for root in (real, copy):
        (root / ".dvc").mkdir(parents=True, exist_ok=True)
        (root / "dvc.yaml").write_text("stages: {}\n")
    uri = mlflow_store.resolve_uri(None, copy)
    assert uri == f"sqlite:///{(real / 'mlflow' / 'mlflow.db').resolve()}"
    assert mlflow_store.artifact_root_for(uri) == (real / "mlflow" / "artifacts").resolve().as_uri()
    assert mlflow_store.resolve_uri(None, real) == uri
    assert not (copy / "mlflow").exists()
    assert mlflow_store.resolve_uri("sqlite:///elsewhere.db", copy) == "sqlite:///elsewhere.db"  # configured wins


def test_a_folder_named_exps_outside_a_dvc_tmp_is_its_own_repository(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    repo = tmp_path / "tmp" / "exps" / "repo"
    repo.mkdir(parents=True)
    assert mlflow_store.resolve_uri(None, repo) == f"sqlite:///{(repo / 'mlflow' / 'mlflow.db').resolve()}"


def test_train_in_an_experiment_copy_records_its_run_in_the_real_store(run_root, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    real = run_root / "real"
    copy = real / ".dvc" / "tmp" / "exps" / "standalone" / "tmpabc"
    for root in (real, copy):
        (root / ".dvc").mkdir(parents=True, exist_ok=True)
    params = tiny_params(run_root, tracking={"uri": None})
    summary = train.run(params, copy, use_ray=False)
    real_uri = f"sqlite:///{(real / 'mlflow' / 'mlflow.db').resolve()}"
    assert summary["tracking_uri"] == real_uri and not (copy / "mlflow").exists()
    run = MlflowClient(real_uri).get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith((real / "mlflow" / "artifacts").resolve().as_uri())


# ---- 3. a sweep's best trial is not a promotion candidate ------------------------------------------

@pytest.mark.ray
@pytest.mark.usefixtures("local_ray")
def test_a_sweep_registers_its_best_trial_apart_from_the_promotion_candidates(tmp_path):
    raw = {
        "seed": 0,
        "data": {"source": "ring8", "prepared_dir": str(tmp_path / "prepared")},
        "model": {"family": "mlp", "latent_dim": 2, "g_channels": 32, "d_channels": 32, "hidden_layers": 2},
        "train": {"batch_size": 128, "log_every": 10, "output_dir": str(tmp_path / "train")},
        "scaling": {"num_workers": 1},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        "evaluator": {"output_dir": str(tmp_path / "evaluator")},
        "promote": {"metric": "reverse_kl"},
        "tune": {"enabled": True, "search": "grid", "num_samples": 1, "scheduler": "fifo", "trial_steps": 20,
                 "eval_every": 20, "eval_samples": 200, "space": {"train.lr_g": {"grid": [1e-3]}},
                 "storage_path": str(tmp_path / "tune_runs"), "output_dir": str(tmp_path / "tune"),
                 "report": str(tmp_path / "reports" / "tune.json"),
                 "trials_csv": str(tmp_path / "reports" / "trials.csv")},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    params = load_params(tmp_path / "params.yaml")
    prepare.run(params, tmp_path)
    evaluator.run(params, tmp_path)
    report = tune.run(params, tmp_path)

    client = MlflowClient(params.tracking.uri)
    production = params.registered_model_name
    assert client.search_model_versions(f"name = '{production}'") == []  # promote and `champion` see nothing
    sweeps = f"{production}-sweeps"
    assert report["registered"]["name"] == sweeps
    (mv,) = client.search_model_versions(f"name = '{sweeps}'")
    assert str(mv.version) == str(report["registered"]["version"])
    assert mv.tags["genpipe.sweep"] == report["sweep"] and mv.tags["genpipe.source"] == "tune"
    assert mv.tags["genpipe.model_uri"] == report["registered"]["model_uri"] and not mv.aliases
    best = client.get_run(mv.run_id)
    assert best.data.tags["genpipe.trial_id"] == report["best_trial"]
