"""A multi-node Ray cluster on one machine (`ray.cluster_utils.Cluster`: a head that only coordinates
and three 1-CPU nodes carrying a custom `trainer` resource), with faults injected for real: a Train
worker process SIGKILLed, a sweep trial's process SIGKILLed mid-run.

Each run checkpoints to one storage_path every node sees (one disk). A whole node killed, on a cluster whose
nodes share no disk, is tests/test_cluster_nodisk.py's."""
from __future__ import annotations

import csv
import io
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
import ray
import yaml
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster

from components.config import load_params
from conftest import tiny_params
from pipelines import evaluator, launch, prepare, train, tune
from pipelines.ray_worker import NODES_TAG, RESUMED_METRIC

pytestmark = pytest.mark.ray

NODES = 3
CHECKPOINT_EVERY = 5


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(NODES):
        c.add_node(num_cpus=1, resources={"trainer": 1})
    ray.init(address=c.address, logging_config=ray.LoggingConfig(log_level="ERROR"),
             runtime_env={"env_vars": launch.LOCAL_RAY_ENV})  # all nodes on this machine
    yield c
    ray.shutdown()
    c.shutdown()


def _spread(root: Path, **train_cfg):
    """2 workers, one per node, restarted from the latest checkpoint after a failure."""
    return tiny_params(root, scaling={"num_workers": 2, "placement_strategy": "SPREAD", "max_failures": 1,
                                      "resources_per_worker": {"trainer": 1}},
                       train={"epochs": 1000, "max_steps": 40, "log_every": 1, "checkpoint_every": CHECKPOINT_EVERY,
                              "keep_checkpoints": 100, "sample_every": 1000, **train_cfg})


def _train_workers(cluster: Cluster, node_id: str | None = None, actor: str = "RayTrainWorker") -> list[psutil.Process]:
    """Ray Train worker processes (or other `actor`s: ImplicitFunc, a Tune trial) of this cluster (of one
    node), found as children of its raylets: other Ray instances on the machine (another pytest process)
    have their own."""
    raylets = {node.all_processes["raylet"][0].process.pid for node in cluster.list_all_nodes()
               if node_id in (None, node.node_id)}
    return [p for p in psutil.process_iter(["cmdline", "ppid"])
            if p.info["ppid"] in raylets and any(actor in a for a in p.info["cmdline"] or ())]


class Fault(threading.Thread):
    """Waits until the run has a checkpoint Ray has recorded and every rank's node is known, then
    injects `fault(nodes)` once (nodes: rank → node id from the run's MLflow tag)."""

    def __init__(self, params, storage: Path, fault):
        super().__init__(daemon=True)
        self.params, self.storage, self.fault = params, storage, fault
        self.at: float | None = None
        self.nodes_before: list[str] = []

    def run(self):
        client = MlflowClient(self.params.tracking.uri)
        deadline = time.time() + 300
        while time.time() < deadline:
            exp = client.get_experiment_by_name(self.params.experiment_name)
            runs = client.search_runs([exp.experiment_id]) if exp else []
            tag = runs[0].data.tags.get(NODES_TAG) if runs else None
            recorded = list(self.storage.glob("*/checkpoint_manager_snapshot.json"))
            if tag and recorded and list(self.storage.glob("*/checkpoint_*/state.pt")):
                self.nodes_before = tag.split()
                self.at = time.time()
                self.fault(self.nodes_before)
                return
            time.sleep(0.2)


def _points(params, run_id: str, metric: str) -> list[int]:
    return [m.step for m in MlflowClient(params.tracking.uri).get_metric_history(run_id, metric)]


def _assert_recovered(params, summary: dict, fault: Fault) -> list[str]:
    """Same total steps, one restart from a checkpoint, at most one checkpoint interval trained twice."""
    assert fault.at is not None, "the fault was never injected"
    client = MlflowClient(params.tracking.uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED" and summary["steps"] == params.train.max_steps
    (resumed,) = _points(params, run.info.run_id, RESUMED_METRIC)
    assert resumed > 0 and resumed % CHECKPOINT_EVERY == 0
    steps = _points(params, run.info.run_id, "g_loss")
    repeated = len(steps) - len(set(steps))  # points logged before the fault and again after the restart
    assert sorted(set(steps)) == list(range(1, params.train.max_steps + 1))  # no step missing
    assert repeated <= CHECKPOINT_EVERY, f"{repeated} steps trained twice"
    hist = sorted(client.get_metric_history(run.info.run_id, "g_loss"), key=lambda m: m.timestamp)
    first_after = next(m for m in hist if m.timestamp / 1000 > fault.at and m.step == resumed + 1)
    print(f"fault at {fault.at:.1f}: resumed from step {resumed}, {repeated} steps repeated, "
          f"{first_after.timestamp / 1000 - fault.at:.1f} s from the fault to the first step after it")
    return run.data.tags[NODES_TAG].split()


def test_spread_workers_on_two_nodes_survive_a_killed_worker_process(cluster, run_root):
    params = _spread(run_root)

    def kill_rank1_worker(nodes):
        assert len(set(nodes)) == 2, f"SPREAD put both workers on one node: {nodes}"
        assert len(_train_workers(cluster)) == 2
        (rank1,) = _train_workers(cluster, nodes[1])
        os.kill(rank1.pid, signal.SIGKILL)

    fault = Fault(params, run_root / "checkpoints", kill_rank1_worker)
    fault.start()
    summary = train.run(params, run_root, use_ray=True)
    fault.join(1)
    nodes_after = _assert_recovered(params, summary, fault)
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("trainer")}
    assert len(set(fault.nodes_before)) == 2 and set(nodes_after) <= alive


def test_sweep_trials_land_on_different_nodes_and_a_killed_trial_is_retried(cluster, tmp_path):
    raw = {"seed": 0, "data": {"source": "ring8", "prepared_dir": str(tmp_path / "prepared")},
           "model": {"family": "mlp", "latent_dim": 2, "g_channels": 32, "d_channels": 32, "hidden_layers": 2},
           "train": {"batch_size": 128, "lr_g": 1e-3, "lr_d": 1e-3, "beta1": 0.0, "beta2": 0.99, "log_every": 20,
                     "output_dir": str(tmp_path / "train")},
           "scaling": {"num_workers": 1, "resources_per_worker": {"trainer": 1}},
           "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
           "evaluator": {"output_dir": str(tmp_path / "evaluator")}, "promote": {"metric": "reverse_kl"},
           "tune": {"enabled": True, "search": "grid", "num_samples": 1, "scheduler": "fifo", "max_concurrent_trials": 2,
                    "trial_steps": 250, "eval_every": 50, "eval_samples": 500, "max_failures": 1,
                    "register_best": False, "storage_path": str(tmp_path / "tune_runs"),
                    "output_dir": str(tmp_path / "tune"), "report": str(tmp_path / "reports" / "tune.json"),
                    "trials_csv": str(tmp_path / "reports" / "trials.csv"),
                    "space": {"train.lr_g": {"grid": [1e-3, 2e-3]}}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    params = load_params(tmp_path / "params.yaml")
    prepare.run(params, tmp_path)
    evaluator.run(params, tmp_path)
    killed: list[int] = []

    seen: list[str] = []

    def kill_a_trial_worker():  # a trial with a checkpoint and at least 3 of its 5 intervals still to go
        deadline = time.time() + 300
        while time.time() < deadline:
            for progress in (tmp_path / "tune_runs").glob("tune-*/run_trial_*/progress.csv"):
                try:
                    reports = list(csv.DictReader(io.StringIO(progress.read_text())))
                    if 1 <= len(reports) <= 2 and reports[-1].get("worker_nodes"):
                        # a one-worker trial trains in its Tune actor: the process to kill
                        workers = _train_workers(cluster, reports[-1]["worker_nodes"], "ImplicitFunc")
                        if len(workers) == 1:
                            os.kill(workers[0].pid, signal.SIGKILL)
                            killed.append(int(reports[-1]["step"]))
                            return
                        seen.append(f"{len(workers)} workers on {reports[-1]['worker_nodes'][:8]}")
                except (OSError, ValueError, psutil.Error) as e:  # a file mid-write, a process gone
                    seen.append(repr(e))
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_trial_worker, daemon=True)
    killer.start()
    report = tune.run(params, tmp_path)
    killer.join(1)
    assert killed, f"no trial worker was killed; seen: {seen[-5:]}"
    assert (report["trials_total"], report["trials_completed"], report["trials_failed"]) == (2, 2, 0)
    rows = report["trials"]
    assert len({r["worker_nodes"].split()[0] for r in rows}) == 2, rows  # side by side: one node each
    retried = [r for r in rows if r["resumed_from"]]  # went on from its own checkpoint, not from step 0
    assert len(retried) == 1 and int(retried[0]["resumed_from"]) % params.tune.eval_every == 0, rows
    assert int(retried[0]["resumed_from"]) >= killed[0]  # from its checkpoint, at most one interval lost
