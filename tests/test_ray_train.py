"""Real local Ray: 2-worker DDP on CPU, 1 worker == plain loop, resource checks, kill and resume."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
import yaml
from mlflow.tracking import MlflowClient

from components.training import checkpoint as ckpt
from conftest import tiny_params
from pipelines import train

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_config=ray.LoggingConfig(log_level="ERROR"))
    yield
    ray.shutdown()


def _ray_checkpoints(storage: Path, run_name: str) -> list[Path]:
    return sorted(p for p in (storage / run_name).glob("checkpoint_*") if p.is_dir())


def test_two_workers_train_with_finite_losses_and_every_regulariser_under_ddp(run_root):
    # Double backprop (gradient penalty, R1), spectral norm's power-iteration buffers, packing and EMA under DDP.
    knobs = {"objective": "wasserstein", "gradient_penalty": 10.0, "spectral_norm": True, "r1": 1.0, "pack": 2,
             "ema_decay": 0.9, "instance_noise": 0.1, "d_steps_per_g_step": 2}
    params = tiny_params(run_root, scaling={"num_workers": 2}, train={"max_steps": 4, "log_every": 1, **knobs})
    summary = train.run(params, run_root, use_ray=True)
    client = MlflowClient(params.tracking.uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED" and summary["steps"] == 4
    for name in ("d_loss", "g_loss", "d_penalty"):
        hist = client.get_metric_history(run.info.run_id, name)
        assert [m.step for m in hist] == [1, 2, 3, 4] and all(np.isfinite(m.value) for m in hist)
    assert all(m.value > 0 for m in client.get_metric_history(run.info.run_id, "d_penalty"))
    found = _ray_checkpoints(run_root / "checkpoints", summary["run_name"])
    assert found, "Ray Train kept no checkpoint"
    state = torch.load(found[-1] / ckpt.STATE_FILE, weights_only=True)
    assert state["step"] == 4 and "generator_ema" in state


def test_one_ray_worker_matches_the_plain_loop(run_root):
    params = tiny_params(run_root)
    with_ray = train.run(params, run_root, use_ray=True)
    g_ray, _ = ckpt.load_generator(params.train.output_dir)
    plain = train.run(params, run_root, use_ray=False)
    g_plain, _ = ckpt.load_generator(params.train.output_dir)
    assert with_ray["steps"] == plain["steps"] == 6
    for (k, a), b in zip(g_ray.state_dict().items(), g_plain.state_dict().values()):
        assert torch.equal(a, b), k


def test_more_workers_than_cpus_is_refused_before_training(run_root):
    params = tiny_params(run_root, scaling={"num_workers": 3})
    with pytest.raises(train.TrainError, match=r"scaling.num_workers = 3 .* needs 3 CPUs; the Ray cluster has 2"):
        train.run(params, run_root, use_ray=True)


def test_killed_run_resumes_from_its_latest_checkpoint(run_root):
    """SIGKILL the whole `genpipe train` process group after checkpoints exist, start it again."""
    base = tiny_params(run_root, scaling={"num_workers": 2},
                       train={"run_name": "killme", "epochs": 1000, "max_steps": 100000, "checkpoint_every": 5,
                              "log_every": 5, "keep_checkpoints": 100})
    params_file = run_root / "params.yaml"
    params_file.write_text(yaml.safe_dump(base.model_dump(mode="json")))
    storage = run_root / "checkpoints"
    cmd = [sys.executable, "-m", "pipelines.cli", "train", "--params", str(params_file)]
    proc = subprocess.Popen(cmd, cwd=run_root, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        # Ray counts a checkpoint once its controller has recorded it in the run's snapshot; a kill
        # between the upload and that record loses it (by design), so wait for the snapshot too.
        snapshot = storage / "killme" / "checkpoint_manager_snapshot.json"
        while len(_ray_checkpoints(storage, "killme")) < 2 or not snapshot.exists():
            assert proc.poll() is None, "training exited before it could be killed"
            assert time.time() < deadline, "no checkpoints within 240 s"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # Ray's workers and controller are not in the killed process group: they notice the driver is gone
    # within a few seconds, and may record one more checkpoint before they exit. Read after they have.
    time.sleep(8)
    on_disk = set()
    for p in _ray_checkpoints(storage, "killme"):
        try:  # the kill may have cut the newest copy short; Ray's snapshot never points at it
            on_disk.add(torch.load(p / ckpt.STATE_FILE, weights_only=True)["step"])
        except (FileNotFoundError, RuntimeError, EOFError):
            pass
    target = max(on_disk) + 5
    again = subprocess.run(cmd + ["--set", f"train.max_steps={target}"], cwd=run_root, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming from checkpoint at step " in again.stdout, again.stdout[-3000:]
    resumed_at = int(again.stdout.split("resuming from checkpoint at step ")[1].split()[0])
    assert resumed_at in on_disk and resumed_at > 0, (resumed_at, sorted(on_disk))
    final = ckpt.load_generator(run_root / "train")[1]
    assert final["step"] == target
    # The MLflow run is the same one, continued: metric steps run on past the resume point.
    client = MlflowClient(base.tracking.uri)
    exp = client.get_experiment_by_name(base.experiment_name)
    (run,) = client.search_runs([exp.experiment_id])
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "g_loss")]
    assert run.info.status == "FINISHED" and steps[-1] == target and resumed_at + 5 in steps
