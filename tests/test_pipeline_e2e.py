"""`dvc repro` in a temporary git repo on tiny params: a repro SIGKILLed during `train` is resumed by
the next one from the persisted checkpoint and completes every stage; then a repro runs none, and
changing a train param reruns train and what follows it, not prepare or the evaluator."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from components.training import checkpoint as ckpt
from conftest import REPO, copy_project

pytestmark = pytest.mark.e2e

TINY = {
    "data": {"source": "digits", "row_group_rows": 64},
    "model": {"latent_dim": 16, "g_channels": 16, "d_channels": 16},
    # long enough to be killed between checkpoints (2 workers × 22 steps an epoch on the digits)
    "train": {"epochs": 100, "max_steps": 150, "batch_size": 32, "log_every": 5, "checkpoint_every": 10,
              "keep_checkpoints": 100},
    "scaling": {"num_workers": 2},
    "evaluator": {"epochs": 1},
    "evaluate": {"num_samples": 200},
}


def _env() -> dict:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    return env


def _sh(cmd: list[str], cwd: Path) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    copy_project(root, TINY)
    _sh(["git", "init", "-q"], root)
    _sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init"], root)
    _sh(["dvc", "init", "-q"], root)
    _sh(["dvc", "config", "core.analytics", "false"], root)
    _sh(["dvc", "config", "core.check_update", "false"], root)
    return root


def _kill_during_train(repo: Path) -> set[int]:
    """Start `dvc repro`, SIGKILL its whole process group once train has two checkpoints Ray recorded;
    the steps of the checkpoints left whole on disk."""
    proc = subprocess.Popen(["dvc", "repro"], cwd=repo, env=_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = repo / "data" / "checkpoints"
    try:
        deadline = time.time() + 400
        while not (len(list(runs.glob("*/checkpoint_*/state.pt"))) >= 2
                   and list(runs.glob("*/checkpoint_manager_snapshot.json"))):
            assert proc.poll() is None, "dvc repro ended before train could be killed"
            assert time.time() < deadline, "train wrote no checkpoints within 400 s"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    time.sleep(5)  # Ray's own processes are not in that group: they notice the driver is gone and exit
    assert not (repo / "data/train/generator.safetensors").exists()  # nothing that looks finished
    steps = set()
    for path in runs.glob("*/checkpoint_*"):
        try:
            steps.add(int(ckpt.load(path)["step"]))
        except (ckpt.CheckpointIntegrityError, FileNotFoundError):
            pass  # the kill cut it short; its hash record says so
    return steps


def test_repro_killed_during_train_resumes_then_nothing_then_only_what_changed(repo):
    on_disk = _kill_during_train(repo)
    assert on_disk and max(on_disk) < TINY["train"]["max_steps"]
    first = _sh(["dvc", "repro"], repo)
    assert "Running stage 'train'" in first and "Running stage 'promote'" in first
    assert "Running stage 'prepare'" not in first  # finished before the kill: recorded in dvc.lock
    resumed_at = int(first.split("resuming from checkpoint at step ")[1].split()[0])
    assert resumed_at == max(on_disk), (resumed_at, sorted(on_disk))  # the newest whole checkpoint, not step 0
    assert "Data and pipelines are up to date" in _sh(["dvc", "status"], repo)
    # what the kill left unrecorded (a folder uploaded but never recorded, one cut short) is gone: every
    # checkpoint folder left is one Ray's record names
    (record_file,) = (repo / "data/checkpoints").glob("*/checkpoint_manager_snapshot.json")
    run_dir, record = record_file.parent, json.loads(record_file.read_text())
    left = {p.name for p in run_dir.glob("checkpoint_*") if p.is_dir()}
    assert left == {r["checkpoint_dir_name"] for r in record["checkpoint_results"]}
    summary = json.loads((repo / "data/train/train_summary.json").read_text())
    assert summary["steps"] == TINY["train"]["max_steps"]
    client = MlflowClient(summary["tracking_uri"])  # one MLflow run, continued past the resume point
    run = client.get_run(summary["mlflow_run_id"])
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "g_loss")]
    assert run.info.status == "FINISHED" and max(steps) == TINY["train"]["max_steps"]
    assert set(range(5, TINY["train"]["max_steps"] + 1, 5)) <= set(steps)
    assert json.loads((repo / "reports/tune.json").read_text())["enabled"] is False  # the sweep is off by default
    assert (repo / "data/prepared/digits/manifest.json").is_file()
    assert (repo / "data/train/generator.safetensors").is_file()
    assert (repo / "mlflow/mlflow.db").is_file()  # the embedded tracking store, inside the repo
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"prepare", "evaluator", "tune", "train", "evaluate", "promote"}
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert metrics["fid"] > 0 and 0 <= metrics["precision"] <= 1
    promotion = json.loads((repo / "reports/promotion.json").read_text())
    assert promotion["promoted"] and promotion["version"] == 1
    # The training curves (DVC plots), from the run's MLflow history: every logged step once, across the kill.
    curve = (repo / "reports/train_curves/g_loss.csv").read_text().splitlines()
    assert curve[0] == "step,g_loss" and [int(row.split(",")[0]) for row in curve[1:]] == \
        list(range(5, TINY["train"]["max_steps"] + 1, 5))
    plots = _sh(["dvc", "plots", "show", "--json"], repo)
    assert all(f"reports/train_curves/{name}.csv" in plots for name in ("d_loss", "g_loss", "images_per_s"))
    assert "tune_trials.csv" not in plots  # no sweep: no empty plot
    # `dvc metrics show`: the family's headline numbers with their error bars, not the whole report
    shown = json.loads(subprocess.run(["dvc", "metrics", "show", "--json"], cwd=repo, env=_env(), capture_output=True,
                                      text=True, timeout=600, check=True).stdout)
    headline = next(iter(shown.values()))["data"]["reports/headline.json"]["data"]
    assert headline["fid"] == metrics["fid"] and headline["fid_seed_std"] == metrics["fid_seed_std"] > 0
    assert "model_uri" not in headline and "promoted" not in json.dumps(shown)

    again = _sh(["dvc", "repro"], repo)
    assert "Running stage" not in again and "up to date" in again

    # dvc exp run -S changes one train param: train reruns, prepare does not.
    _sh(["git", "add", "-A"], repo)
    _sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first run"], repo)
    out = _sh(["dvc", "exp", "run", "-S", "train.max_steps=6", "-S", "train.checkpoint_every=2"], repo)
    assert "Running stage 'train'" in out and "Running stage 'evaluate'" in out
    assert "Running stage 'prepare'" not in out and "Running stage 'evaluator'" not in out
    spec = yaml.safe_load((repo / "data/train/generator.json").read_text())
    assert spec["step"] == 6
