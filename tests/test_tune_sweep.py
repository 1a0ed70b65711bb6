"""Real Ray Tune sweeps of real Ray Train runs on ring8 (a tiny MLP GAN): MLflow parent/child runs
from concurrent trials on SQLite, a failing trial, ASHA early stopping that frees the workers, a PBT
exploit that continues the donor's step, and an interrupted sweep resumed."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import torch
import yaml
from mlflow.tracking import MlflowClient

from components.config import load_params
from components.evaluation import QuickScorer
from components.tracking.names import WEIGHTS_TAG
from components.training import checkpoint as ckpt
from pipelines import evaluator, prepare, train, tune
from pipelines.tune_trial import trial_params

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("local_ray")]  # conftest's local Ray…
RAY_NUM_CPUS = 4  # …with 4 logical CPUs on the 2-core CI machine: four 1-worker trials at once


def _raw(root: Path, **tune_cfg) -> dict:
    return {
        "seed": 0,
        "data": {"source": "ring8", "prepared_dir": str(root / "prepared")},
        "model": {"family": "mlp", "latent_dim": 2, "g_channels": 32, "d_channels": 32, "hidden_layers": 2},
        "train": {"batch_size": 128, "lr_g": 1e-3, "lr_d": 1e-3, "beta1": 0.0, "beta2": 0.99, "log_every": 20,
                  "output_dir": str(root / "train")},
        "scaling": {"num_workers": 1},
        "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}"},
        "evaluator": {"output_dir": str(root / "evaluator")},
        "promote": {"metric": "reverse_kl"},
        "tune": {"enabled": True, "num_samples": 1, "trial_steps": 60, "eval_every": 20, "eval_samples": 500,
                 "storage_path": str(root / "tune_runs"), "output_dir": str(root / "tune"),
                 "report": str(root / "reports" / "tune.json"), "trials_csv": str(root / "reports" / "trials.csv"),
                 **tune_cfg},
    }


def _digits(root: Path, **tune_cfg) -> dict:
    """DCGAN on the 8×8 digits, scored by FID under a briefly trained evaluator: a metric that moves in
    a few dozen steps (ring8's reverse KL stays at log 8 that early)."""
    raw = _raw(root, **tune_cfg)
    raw.update(data={"source": "digits", "prepared_dir": str(root / "prepared"), "row_group_rows": 64},
               model={"latent_dim": 16, "g_channels": 16, "d_channels": 16},
               evaluator={"epochs": 2, "output_dir": str(root / "evaluator")}, promote={"metric": "fid"})
    raw["train"].update(batch_size=32, beta1=0.5, beta2=0.999)
    return raw


def _setup(root: Path, raw: dict | None = None, **tune_cfg):
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw or _raw(root, **tune_cfg)))
    params = load_params(path)
    prepare.run(params, root)
    evaluator.run(params, root)
    return params


def _rows(params) -> list[dict]:
    with open(params.tune.trials_csv) as f:
        return list(csv.DictReader(f))


def test_concurrent_trials_log_parent_and_child_runs_and_a_failing_trial_is_recorded(tmp_path):
    # batch 10⁶ passes the config but not the data (2,250 training points): that trial raises at start-up
    params = _setup(tmp_path, search="grid", scheduler="fifo", max_concurrent_trials=4, error_seeds=3,
                    curves_csv=str(tmp_path / "reports" / "curves.csv"), space={
        "train.objective": {"grid": ["nonsaturating", "lsgan"]}, "train.batch_size": {"grid": [128, 1000000]}})
    report = tune.run(params, tmp_path)

    assert (report["trials_total"], report["trials_completed"], report["trials_failed"]) == (4, 2, 2)
    assert all("larger than the data" in f["reason"] for f in report["failures"])
    assert report["best_config"]["train.batch_size"] == 128
    client = MlflowClient(params.tracking.uri)
    parent = client.get_run(report["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.metrics["best_reverse_kl"] == report["best_value"]
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(c.info.status for c in children) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]
    with open(params.tune.curves_csv) as f:
        curves = list(csv.DictReader(f))  # every evaluation of every trial that reported, as MLflow has it
    for child in children:
        if child.info.status == "FINISHED":  # a metric curve: one point per in-training evaluation
            history = client.get_metric_history(child.info.run_id, "reverse_kl")
            assert [m.step for m in history] == [20, 40, 60]
            mine = [r for r in curves if r["trial_id"] == child.data.tags["genpipe.trial_id"]]
            assert [(int(r["step"]), float(r["reverse_kl"])) for r in mine] == [(m.step, m.value) for m in history]
            # error_seeds: the CSV scores the last checkpoint over 3 sampling seeds; `value` stays Tune's
            row = next(r for r in _rows(params) if r["trial_id"] == mine[0]["trial_id"])
            last = max(Path(params.tune.storage_path).glob(f"*/run_trial_{row['trial_id']}_*/checkpoint_*"))
            g = ckpt.generator_from_state(ckpt.load(last))
            expected = QuickScorer(params, tmp_path, params.tune.eval_samples).over_seeds(
                g, trial_params(params, {"train.objective": row["train.objective"], "train.batch_size": 128}), 3)
            assert float(row["reverse_kl"]) == pytest.approx(expected["reverse_kl"], rel=1e-9)
            assert float(row["reverse_kl_seed_std"]) == pytest.approx(expected["reverse_kl_seed_std"], rel=1e-9)
            assert float(row["value"]) == history[-1].value  # (at 60 steps every seed still scores log 8:
            # test_tune_space checks that the seeds differ and the mean and std are theirs)
            assert 0 < float(mine[0]["seconds"]) < float(mine[-1]["seconds"])
            trial = next(r for r in _rows(params) if r["trial_id"] == mine[0]["trial_id"])
            assert {r["train.objective"] for r in mine} == {trial["train.objective"]}
            assert any(a.path == "samples" for a in client.list_artifacts(child.info.run_id))
        else:
            assert "larger than the data" in child.data.tags["genpipe.error"]
    # the best generator is a registered version; no alias moved (promotion is the promote stage's)
    mv = client.get_model_version(report["registered"]["name"], report["registered"]["version"])
    assert mv.tags["genpipe.source"] == "tune" and not mv.aliases
    spec = json.loads(_logged_file(params, report["registered"]["model_uri"], ckpt.GENERATOR_SPEC).read_text())
    assert mv.tags[WEIGHTS_TAG] == spec[ckpt.WEIGHTS_KEY]["sha256"]  # promote's check passed on these weights
    best = json.loads((tmp_path / "tune" / tune.BEST_FILE).read_text())
    assert best["overrides"] == report["best_config"] and best["value"] == report["best_value"]
    rows = _rows(params)
    assert sorted(r["status"] for r in rows) == ["completed", "completed", "failed", "failed"]
    assert {"modes", "high_quality", "reverse_kl", "train.objective", "train.batch_size"} <= rows[0].keys()


def _logged_file(params, model_uri: str, name: str) -> Path:
    """A file of a logged generator inside the SQLite store's artifact folder."""
    lm = MlflowClient(params.tracking.uri).get_logged_model(model_uri.removeprefix("models:/"))
    (found,) = Path(lm.artifact_location.removeprefix("file://")).glob(f"artifacts/*/{name}")
    return found


def test_a_best_trial_whose_logged_weights_are_corrupt_is_never_registered(tmp_path, monkeypatch):
    params = _setup(tmp_path, search="grid", scheduler="fifo", trial_steps=20, space={"train.lr_g": {"grid": [2e-3]}})
    logged = []

    def log_then_damage(folder, max_samples):  # the store loses a byte right after the upload
        info = real_log(folder, max_samples)
        weights = _logged_file(params, info.model_uri, ckpt.GENERATOR_WEIGHTS)
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 1
        weights.write_bytes(bytes(data))
        logged.append(info.model_uri)
        return info

    real_log = tune.log_generator
    monkeypatch.setattr(tune, "log_generator", log_then_damage)
    with pytest.raises(tune.TuneError, match="incomplete or corrupt") as e:
        tune.run(params, tmp_path)
    assert logged and logged[0] in str(e.value) and "Nothing was registered" in str(e.value)
    client = MlflowClient(params.tracking.uri)
    assert client.search_model_versions(f"name = '{tune.sweep_model_name(params)}'") == []
    parent = client.search_runs(client.get_experiment_by_name(params.experiment_name).experiment_id,
                                filter_string="tags.`genpipe.stage` = 'tune'")[0]
    assert parent.info.status == "FAILED"


def test_an_in_process_trial_trains_the_weights_of_a_one_worker_train_run(tmp_path):
    """A one-worker trial trains in its Tune actor, with no Train run; its final checkpoint holds the same
    weights as `genpipe train` of the trial's params (test_ray_train: a one-worker Ray run equals the
    plain loop, which --no-ray runs here), and it reports its start-up time."""
    params = _setup(tmp_path, search="grid", scheduler="fifo", register_best=False,
                    space={"train.lr_g": {"grid": [2e-3]}})
    report = tune.run(params, tmp_path)
    assert report["in_process_trials"] and report["trials_completed"] == 1
    startup = report["trial_startup"]
    assert startup["trials"] == 1 and 0 < startup["median_s"] < 60
    progress = next((tmp_path / "tune_runs").glob("tune-*/run_trial_*/progress.csv")).read_text()
    assert "placement_group" not in progress.splitlines()[0]  # no Train run (its workers' group) was started
    final = max((tmp_path / "tune_runs").glob("tune-*/run_trial_*/checkpoint_*"), key=lambda p: p.name)
    g_trial = ckpt.generator_from_state(ckpt.load(final))
    trained = train.run(trial_params(params, {"train.lr_g": 2e-3}), tmp_path, use_ray=False)
    g_train, _ = ckpt.load_generator(params.train.output_dir)
    assert trained["steps"] == params.tune.trial_steps == ckpt.load(final)["step"]
    for (k, a), b in zip(g_trial.state_dict().items(), g_train.state_dict().values()):
        assert torch.equal(a, b), k


def test_asha_stops_a_clearly_bad_trial_and_its_workers_exit(tmp_path):
    """Two-worker trials: each starts a Ray Train run (DDP) inside its Tune trial; a stopped one ends it."""
    # one trial at a time, the good learning rate first: the bad one meets a full rung and stops at it
    raw = _digits(tmp_path, search="grid", scheduler="asha", max_concurrent_trials=1, register_best=False, num_workers=2,
                  asha={"grace_period": 20, "reduction_factor": 2},
                  space={"train": {"grid": [{"lr_g": 2e-3, "lr_d": 2e-3}, {"lr_g": 1e-8, "lr_d": 1e-8}]}})
    params = _setup(tmp_path, raw=raw)
    report = tune.run(params, tmp_path)
    rows = {float(r["train.lr_g"]): r for r in _rows(params)}
    assert report["metric"] == "fid" and report["trials_stopped_early"] == 1
    assert rows[1e-8]["status"] == "stopped" and int(rows[1e-8]["step"]) == 20
    assert rows[2e-3]["status"] == "completed" and int(rows[2e-3]["step"]) == params.tune.trial_steps > 20
    assert report["best_config"]["train.lr_g"] == 2e-3 and not report["in_process_trials"]
    for progress in (tmp_path / "tune_runs").glob("tune-*/run_trial_*/progress.csv"):  # each trial had a Train run
        assert "placement_group" in progress.read_text().splitlines()[0].split(",")
    deadline = time.time() + 30  # a stopped trial's placement group is removed asynchronously
    while ray.available_resources().get("CPU") != ray.cluster_resources()["CPU"] and time.time() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU") == ray.cluster_resources()["CPU"]  # no worker left holding a CPU


def test_a_diffusion_sweep_tunes_learning_rate_ema_steps_and_guidance(tmp_path):
    raw = _digits(tmp_path, search="grid", scheduler="fifo", max_concurrent_trials=2, trial_steps=20, eval_samples=200,
                  space={"train.lr_g": {"grid": [2e-3]}, "train.ema_decay": {"grid": [0.9]},
                         "diffusion.sample_steps": {"grid": [4]}, "diffusion.guidance": {"grid": [0.0, 3.0]}})
    raw["model"]["family"] = "ddpm"
    raw["diffusion"] = {"channels": [8, 16], "timesteps": 100}
    raw["train"].update(beta1=0.9)
    params = _setup(tmp_path, raw=raw)
    report = tune.run(params, tmp_path)
    assert report["trials_completed"] == 2
    rows = {float(r["diffusion.guidance"]): r for r in _rows(params)}
    assert set(rows) == {0.0, 3.0} and {"fid", "cond_accuracy", "train.ema_decay"} <= rows[0.0].keys()
    # same weights (same seed and schedule), sampled unconditionally vs guided: different scores
    assert rows[0.0]["fid"] != rows[3.0]["fid"]
    assert report["registered"]["name"] == "digits-ddpm-sweeps"  # never a promotion candidate
    assert report["best_config"]["diffusion.sample_steps"] == 4


def test_a_ddgan_sweep_searches_the_gan_knobs_and_its_steps(tmp_path):
    """The product's GAN sweep space (objective, label smoothing, D:G ratio) applies to ddgan, beside T."""
    raw = _digits(tmp_path, search="grid", scheduler="fifo", max_concurrent_trials=2, trial_steps=10, eval_every=10,
                  eval_samples=200, space={"train.objective": {"grid": ["nonsaturating", "lsgan"]}, "train.label_smoothing": {"grid": [0.1]},
                         "train.d_steps_per_g_step": {"grid": [2]}, "ddgan.timesteps": {"grid": [2]}})
    raw["model"]["family"] = "ddgan"
    raw["ddgan"] = {"channels": [8, 16], "r1_every": 2}
    params = _setup(tmp_path, raw=raw)
    report = tune.run(params, tmp_path)
    assert report["trials_completed"] == 2
    rows = {r["train.objective"]: r for r in _rows(params)}
    assert set(rows) == {"nonsaturating", "lsgan"} and all(r["ddgan.timesteps"] == "2" for r in rows.values())
    assert rows["nonsaturating"]["fid"] != rows["lsgan"]["fid"]  # the objective reached the trained weights
    assert report["registered"]["name"] == "digits-ddgan-sweeps"
    assert report["best_config"]["train.d_steps_per_g_step"] == 2 and report["best_config"]["ddgan.timesteps"] == 2


def test_pbt_exploit_copies_the_donor_checkpoint_and_continues_its_step(tmp_path):
    raw = _digits(tmp_path, search="grid", scheduler="pbt", max_concurrent_trials=2, register_best=False,
                  # long enough that the two trials overlap: in-process trials start seconds apart and a
                  # PBT with synch=False exploits only a donor that is still running
                  trial_steps=400, pbt={"perturbation_interval": 20, "quantile_fraction": 0.5,
                                        "resample_probability": 0.0, "mutations": ["train.lr_g"]},
                  space={"train.lr_g": {"grid": [2e-3, 1e-8]}})  # G at 1e-8 does not learn: it gets exploited
    params = _setup(tmp_path, raw=raw)
    report = tune.run(params, tmp_path)
    assert report["exploits"], "PBT never exploited"
    for event in report["exploits"]:
        assert event["donor"] != event["trial"]
        # the receiving trial's next report is one interval after the donor's checkpoint: it resumed there
        assert event["first_step_after"] == event["donor_step"] + params.tune.eval_every


def _saved_statuses(exp_root: Path) -> list[str]:
    """The trials' statuses in the sweep state Tune last saved (what a resume starts from)."""
    saved = sorted(exp_root.glob("tune-*/experiment_state-*.json"))
    try:
        return sorted(json.loads(t[0])["status"] for t in json.loads(saved[-1].read_text())["trial_data"]) if saved else []
    except (ValueError, KeyError, IndexError):  # caught mid-write
        return []


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(tmp_path):
    params = _setup(tmp_path, search="grid", scheduler="fifo", max_concurrent_trials=1, register_best=False,
                    trial_steps=160, space={"train.lr_g": {"grid": [1e-3, 2e-3]}})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "pipelines.cli", "tune", "--params", str(tmp_path / "params.yaml")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, text=True)
    exp_root = tmp_path / "tune_runs"
    deadline = time.time() + 240
    statuses, finished, running_saved = [], [], False
    # killed once the saved state holds the first trial finished and the second one running, the first
    # trial's last progress row is on disk and the second has saved a checkpoint (Tune writes the state,
    # the progress file and the checkpoints at different moments: waiting on the state alone once killed
    # the sweep before the finished trial's last row was flushed)
    while time.time() < deadline and proc.poll() is None and not (
            statuses == ["RUNNING", "TERMINATED"] and len(finished) == 1 and running_saved):
        time.sleep(0.1)
        statuses = _saved_statuses(exp_root)
        progress = list(exp_root.glob("tune-*/run_trial_*/progress.csv"))
        finished = [p for p in progress if len(p.read_text().splitlines()) == 9]
        running_saved = any(any(p.parent.glob("checkpoint_*")) for p in progress if p not in finished)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert statuses == ["RUNNING", "TERMINATED"] and len(finished) == 1, (statuses, finished)
    before = {p: p.read_text() for p in finished}
    # what a failure right after an upload leaves: a checkpoint folder Tune never recorded
    running = next(p.parent for p in exp_root.glob("tune-*/run_trial_*/progress.csv") if p not in finished)
    orphan = running / "checkpoint_000090"
    shutil.copytree(max(running.glob("checkpoint_*")), orphan)

    out = subprocess.run(cmd + ["--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads(Path(params.tune.report).read_text())
    assert report["trials_total"] == 2 and report["trials_completed"] == 2
    for path, text in before.items():  # finished trials were not run again
        assert path.read_text() == text
    assert not orphan.exists() and any(running.glob("checkpoint_*"))  # the resumed sweep removed it, kept the rest
