"""Real local Ray: 2-worker DDP on CPU, 1 worker == plain loop, resource checks. (A SIGKILLed run's resume:
tests/test_pipeline_e2e.py; worker and node loss on a multi-node cluster: tests/test_cluster.py.)"""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from components.training import checkpoint as ckpt
from conftest import tiny_params
from pipelines import train

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("local_ray")]  # conftest's local Ray, 2 logical CPUs


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
    assert ckpt.verify(found[-1]) is True  # the hash record is persisted with Ray's checkpoint


def _driver_output(capfd, until: str, timeout_s: float = 30.0) -> tuple[str, str]:
    """What reached the driver's stdout and stderr: worker lines come through Ray's log monitor, a little later."""
    out, err, deadline = "", "", time.monotonic() + timeout_s
    while until not in out and time.monotonic() < deadline:
        time.sleep(0.5)
        got = capfd.readouterr()
        out, err = out + got.out, err + got.err
    return out, err


def test_one_ray_worker_matches_the_plain_loop(run_root, capfd):
    params = tiny_params(run_root)
    with_ray = train.run(params, run_root, use_ray=True)
    # The console: rank 0's progress as plain lines (this Ray was started without the launcher's terminal
    # flag), one per log point here (every 2 of 6 steps = 33 %); none of Ray Train's per-report log lines.
    out, err = _driver_output(capfd, "train: 100%")
    assert re.findall(r"train: +(\d+)% (\d)/6 steps d_loss=\S+ g_loss=\S+ images_per_s=", out) == \
        [("33", "2"), ("66", "4"), ("100", "6")]
    assert "Started training worker group" in out + err  # Ray Train's own INFO lines do reach the console
    assert "Reporting training result" not in out + err and "Checkpoint successfully created" not in out + err
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


def test_placement_the_cluster_cannot_hold_is_refused_naming_the_key(run_root):
    custom = tiny_params(run_root, scaling={"num_workers": 2, "resources_per_worker": {"trainer": 1}})
    with pytest.raises(train.TrainError, match=r"resources_per_worker\['trainer'\] = 1 needs 2 trainer; the Ray cluster has 0"):
        train.run(custom, run_root, use_ray=True)
    spread = tiny_params(run_root, scaling={"num_workers": 2, "placement_strategy": "STRICT_SPREAD"})
    with pytest.raises(train.TrainError, match="STRICT_SPREAD puts each of the 2 workers on its own node; .* has 1 nodes"):
        train.run(spread, run_root, use_ray=True)
    with pytest.raises(ValueError, match="'CPU' is set by scaling.cpus_per_worker"):
        tiny_params(run_root, scaling={"resources_per_worker": {"CPU": 2}})
