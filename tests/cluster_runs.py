"""Driving genpipe on the test cluster (tests/cluster_lab.py): params files for stage runs on the driver's
machine, the stage runs themselves, what the team MLflow server recorded, and a fault injected at a
training step. Shared by tests/test_cluster_nodisk.py and benchmarks/cluster.py."""
from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

import yaml

from cluster_lab import PYTHON
from conftest import tiny_params


def write_params(root: Path, lab, name: str, experiment: str | None = None, base=tiny_params, **sections) -> Path:
    """A params file for stage runs on the driver's machine (`base`: tiny digits settings by default):
    storage on the lab's S3 under the root's name, the team MLflow server from MLFLOW_TRACKING_URI."""
    s3 = f"s3://{lab.bucket}/{root.name}"
    params = base(root, **{"scaling": {"num_workers": 2, "storage_path": f"{s3}/checkpoints",
                                       "placement_strategy": "SPREAD", "cpus_per_worker": 1,
                                       **sections.pop("scaling", {})},
                           "data": {"remote": f"{s3}/prepared", **sections.pop("data", {})},
                           "tracking": {"uri": None, "experiment": experiment or f"lab-{root.name}"},
                           "evaluator": {"epochs": 1, **sections.pop("evaluator", {})},  # enough to score a few steps
                           **sections}).model_dump(mode="json")
    path = root / name
    path.write_text(yaml.safe_dump(params))
    return path


def stage(lab, root: Path, name: str, params: Path, *extra: str, timeout: float = 600, env=None):
    """`genpipe <name> --params <params>` on the driver's machine, in `root`."""
    return lab.run_driver([str(PYTHON), "-m", "pipelines.cli", name, "--params", str(params), *extra],
                          cwd=root, timeout=timeout, env=env)


def ok(out) -> str:
    assert out.returncode == 0, f"stage failed ({out.returncode}):\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out.stdout + out.stderr


@contextlib.contextmanager
def as_pipeline(lab):
    """An MlflowClient of the pipeline's user, from the driver's network (this thread only)."""
    from mlflow.tracking import MlflowClient

    creds = lab.tracking.env("pipeline")
    saved = {k: os.environ.get(k) for k in creds}
    with lab.driver_net():
        os.environ.update({k: v for k, v in creds.items() if k != "MLFLOW_TRACKING_URI"})
        try:
            yield MlflowClient(lab.tracking.uri)
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def runs_of(lab, experiment: str) -> list:
    with as_pipeline(lab) as client:
        exp = client.get_experiment_by_name(experiment)
        return client.search_runs([exp.experiment_id]) if exp else []


def steps_of(lab, run_id: str, key: str) -> list[int]:
    with as_pipeline(lab) as client:
        return sorted(m.step for m in client.get_metric_history(run_id, key))


class AtStep(threading.Thread):
    """Polls the experiment's running run until its `metric` has a point at `step` or later, then calls
    `act()` once; `at_step` is the newest step logged then."""

    def __init__(self, lab, experiment: str, step: int, act, metric: str = "loss_d", timeout: float = 400):
        super().__init__(daemon=True)
        self.lab, self.experiment, self.step, self.act, self.metric = lab, experiment, step, act, metric
        self.timeout, self.at_step, self.error = timeout, None, None

    def run(self):
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            try:
                live = [r for r in runs_of(self.lab, self.experiment) if r.info.status == "RUNNING"]
                steps = steps_of(self.lab, live[0].info.run_id, self.metric) if live else []
                if steps and steps[-1] >= self.step:
                    self.at_step = steps[-1]
                    self.act()
                    return
            except Exception as e:  # noqa: BLE001 - a server mid-restart: try again
                self.error = e
            time.sleep(0.3)
