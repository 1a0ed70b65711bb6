"""The pipeline on a cluster whose nodes share only a network (tests/cluster_lab.py): the driver's machine
(the head) keeps the checkout and its data/; two worker nodes see neither. Checkpoints and prepared data go
through the lab's S3, metrics through the team MLflow server. First the cluster itself (token
authentication on, genpipe from the image, driver files out of a worker's reach, S3 outages, node kills),
then the pipeline on it. One cluster for the module."""
from __future__ import annotations

import json
import threading
import time

import pytest

from cluster_lab import IMAGE_MOUNT, PYTHON, REPO, lab  # noqa: F401 - the module-scoped fixture
from cluster_runs import AtStep, ok, runs_of, stage, steps_of, write_params

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]
CHECKPOINT_EVERY = 5

# On the driver's machine: join the cluster, then ask each worker node (pinned) what it sees, handing it a
# 40 MB array through the object store (pulled from the driver's node, as a Train function or a dataset is).
_DRIVER = r"""
import json, os, sys, numpy, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On
ray.init(logging_config=ray.LoggingConfig(log_level="ERROR"), log_to_driver=False)

@ray.remote(num_cpus=1)
def look(checkout, array):
    import components
    try:
        open(os.path.join(checkout, "params.yaml")).read()
        opened = "read"
    except OSError as e:
        opened = type(e).__name__
    return {"ip": ray.util.get_node_ip_address(), "components": components.__file__, "opened": opened,
            "sum": float(array.sum())}

alive = [n for n in ray.nodes() if n["Alive"]]
workers = [n for n in alive if n["Resources"].get("trainer")]
array = ray.put(numpy.ones(5_000_000))
seen = ray.get([look.options(scheduling_strategy=On(n["NodeID"], soft=False)).remote(sys.argv[1], array)
                for n in workers], timeout=120)
print(json.dumps({"nodes": [[n["NodeManagerAddress"], n["Resources"].get("CPU", 0), n["Resources"].get("trainer", 0)]
                            for n in alive], "seen": seen}))
"""


def test_driver_with_the_token_sees_head_and_two_isolated_workers(lab):
    out = lab.run_driver([PYTHON, "-c", _DRIVER, REPO], timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert sorted(map(tuple, got["nodes"])) == sorted([(lab.head_ip, 0, 0)] +
                                                      [(ip, lab.worker_cpus, 1) for ip in lab.worker_ips])
    assert sorted(s["ip"] for s in got["seen"]) == sorted(lab.worker_ips)
    for s in got["seen"]:
        assert s["sum"] == 5_000_000
        assert s["opened"] == "FileNotFoundError"  # the driver's checkout does not exist there
        assert s["components"] == f"{IMAGE_MOUNT}/components/__init__.py"  # genpipe from the image's wheel


_JOIN = "import ray; ray.init(); print(len(ray.nodes()))"


def test_driver_without_the_token_is_refused(lab, tmp_path):
    fast = {"RAY_NUM_REDIS_GET_RETRIES": "2", "HOME": str(tmp_path)}  # 2 tries, not 20; no ~/.ray/auth_token
    no_token = {k: v for k, v in lab.env(**fast).items() if k != "RAY_AUTH_TOKEN_PATH"}
    out = lab.run_driver([PYTHON, "-c", _JOIN], env=no_token, timeout=60)
    assert out.returncode != 0
    assert "AuthenticationError: Token authentication is enabled but no authentication token was found" in out.stderr

    other = tmp_path / "other_token"  # e.g. the token of the user's own local Ray, in ~/.ray/auth_token
    other.write_text("0" * 64)
    out = lab.run_driver([PYTHON, "-c", _JOIN], env=lab.env(**fast, RAY_AUTH_TOKEN_PATH=other), timeout=60)
    assert out.returncode != 0
    assert "InvalidAuthToken" in out.stderr and f"Failed to connect to Ray cluster at {lab.ray_address}" in out.stderr


# On a worker node, outside Ray: what its disk and process table hold.
_NODE = r"""
import errno, json, os, sys
import components
def exists(p): return os.path.exists(p)
try:
    open(os.path.join(sys.argv[4], "x"), "w")
    image_write = "written"
except OSError as e:
    image_write = errno.errorcode[e.errno]
def prog(pid):
    try:
        return os.path.basename(open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0])
    except OSError:  # gone meanwhile
        return b""
progs = [prog(p) for p in os.listdir("/proc") if p.isdigit()]
print(json.dumps({"checkout": exists(sys.argv[1]), "venv_python": exists(sys.executable),
                  "lab_root": exists(sys.argv[2]), "driver_token": exists(sys.argv[3]),
                  "own_token": exists(os.path.expanduser("~/.ray/auth_token")),
                  "tmp": sorted(os.listdir("/tmp")), "components": components.__file__, "image_write": image_write,
                  "raylets": progs.count(b"raylet"), "gcs": progs.count(b"gcs_server"),
                  "token_env": "RAY_AUTH_TOKEN_PATH" in os.environ}))
"""


def test_worker_node_sees_its_own_disk_and_processes_only(lab):
    for i in range(len(lab.worker_ips)):
        out = lab.run_on_worker(i, [PYTHON, "-c", _NODE, REPO / "params.yaml", lab.root, lab.token_path, IMAGE_MOUNT])
        assert out.returncode == 0, out.stderr[-3000:]
        got = json.loads(out.stdout)
        # (Ray's temp dir is cluster-wide: the node keeps its files under the head's --temp-dir, on its own /tmp;
        # a checkout under /tmp, as a CI clone may be, leaves its empty, hidden mount point there)
        under_tmp = [REPO.relative_to("/tmp").parts[0]] if REPO.is_relative_to("/tmp") else []
        assert got == {"checkout": False, "venv_python": True, "lab_root": False, "driver_token": False,
                       "own_token": True, "tmp": sorted([lab.head_tmp.name, *under_tmp]),
                       "components": f"{IMAGE_MOUNT}/components/__init__.py", "image_write": "EROFS",
                       "raylets": 1, "gcs": 0, "token_env": False}


# On both worker nodes at once: a Gloo process group (what DDP runs on) across the two machines.
_GLOO = r"""
import datetime, socket, sys, time, torch, torch.distributed as dist
rank, master = int(sys.argv[1]), sys.argv[2]
t = time.monotonic()
dist.init_process_group("gloo", init_method=f"tcp://{master}:29500", rank=rank, world_size=2,
                        timeout=datetime.timedelta(seconds=60))
x = torch.tensor([rank + 1.0])
dist.all_reduce(x)
print(socket.gethostname(), socket.gethostbyname(socket.gethostname()), x.item(), round(time.monotonic() - t, 1))
"""


def test_gloo_process_group_spans_the_two_worker_nodes(lab):
    outs = [None, None]

    def rank(i):
        outs[i] = lab.run_on_worker(i, [PYTHON, "-c", _GLOO, i, lab.worker_ips[0]], timeout=90)

    threads = [threading.Thread(target=rank, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, out in enumerate(outs):
        assert out.returncode == 0, out.stderr[-3000:]
        name, ip, total, seconds = out.stdout.split()
        assert (name, ip, float(total)) == (f"w{i}", lab.worker_ips[i], 3.0)  # its name resolves to its own address
        assert float(seconds) < 20  # no DNS timeout on the way (each reverse lookup once waited 10 s)


_PACKAGE_DATA = r"""
import json
from pathlib import Path
from components.config.loading import PRESETS_DIR
from components.metrics.pins import PINNED_DIR
print(json.dumps(sorted(str(f.relative_to(Path(PRESETS_DIR).parents[1])) for d in (PRESETS_DIR, PINNED_DIR)
                        for f in Path(d).rglob("*") if f.is_file() and "__pycache__" not in f.parts)))
"""


def test_image_carries_genpipe_package_data(lab):
    """A node has genpipe from its wheel only: the presets and pinned evaluators must be inside it
    (setuptools puts no data file in a wheel unless pyproject.toml lists it under package-data)."""
    out = lab.run_on_worker(0, [PYTHON, "-c", _PACKAGE_DATA])
    assert out.returncode == 0, out.stderr[-3000:]
    here = lab.run_driver([PYTHON, "-c", _PACKAGE_DATA])  # the checkout's files
    assert json.loads(out.stdout) == json.loads(here.stdout) and len(json.loads(here.stdout)) >= 18


def test_team_tracking_answers_the_pipeline_user_only(lab):
    import requests

    env = lab.env()
    url = f"{env['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/experiments/search?max_results=1"
    with lab.driver_net():
        assert requests.get(url, timeout=30).status_code == 401
        auth = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
        assert requests.get(url, auth=auth, timeout=30).status_code == 200


def _alive_at(nodes, ip) -> set[str]:
    return {n["id"] for n in nodes if n["alive"] and n["ip"] == ip}


@pytest.fixture(scope="module")
def prepared_root(lab, tmp_path_factory):
    """prepare + evaluator on the driver's machine (its own disk), once for the module."""
    root = tmp_path_factory.mktemp("driver")
    params = write_params(root, lab, "params.yaml")
    for name in ("prepare", "evaluator"):
        ok(stage(lab, root, name, params))
    return root


def test_workers_cannot_open_the_drivers_files(lab, prepared_root):
    out = lab.run_on_worker(0, [str(PYTHON), "-c", f"open({str(prepared_root / 'prepared' / 'digits' / 'manifest.json')!r})"])
    assert out.returncode != 0 and "No such file or directory" in out.stderr


def test_a_local_storage_path_is_refused_before_anything_is_written(lab, prepared_root):
    params = write_params(prepared_root, lab, "local.yaml", scaling={"storage_path": str(prepared_root / "ckpt")})
    out = stage(lab, prepared_root, "train", params, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "scaling.storage_path is " in text and "Ray workers run on other nodes" in text and lab.worker_ips[0] in text
    assert not (prepared_root / "ckpt").exists()
    assert runs_of(lab, f"lab-{prepared_root.name}") == []  # refused before MLflow was written to


def test_ddp_across_two_nodes_through_s3_then_evaluate_and_promote(lab, prepared_root):
    params = write_params(prepared_root, lab, "ddp.yaml", scaling={"placement_strategy": "STRICT_SPREAD"},
                           train={"max_steps": 12, "checkpoint_every": CHECKPOINT_EVERY, "keep_checkpoints": 2})
    text = ok(stage(lab, prepared_root, "train", params))
    (run,) = [r for r in runs_of(lab, f"lab-{prepared_root.name}") if r.info.status == "FINISHED"]
    nodes = run.data.tags["genpipe.worker_nodes"].split()
    assert len(nodes) == 2 and len(set(nodes)) == 2  # one rank on each worker node
    assert not (prepared_root / "data" / "checkpoints").exists()  # nothing on the driver's disk
    with lab.driver_net():
        s3 = lab.s3.client()
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=lab.bucket, Prefix=f"{prepared_root.name}/")["Contents"]]
    assert any("/checkpoints/" in k and k.endswith("state.sha256.json") for k in keys), keys[:20]
    assert any("/prepared/digits-" in k and k.endswith("manifest.json") for k in keys)
    assert "trained 12 steps" in text
    ok(stage(lab, prepared_root, "evaluate", params))
    ok(stage(lab, prepared_root, "promote", params))
    promotion = json.loads((prepared_root / "reports" / "promotion.json").read_text())
    assert promotion["promoted"] is True
    # the champion, loaded and sampled on a node that has none of the training files, as the read-only user
    # (artifacts come through the server's proxy: the node's S3 variables are removed)
    reader = {**lab.tracking.env("reader")}
    code = ("import json, mlflow; c = mlflow.MlflowClient(); "
            f"v = c.get_model_version_by_alias({promotion['model_name']!r}, 'champion'); "
            f"x = mlflow.pyfunc.load_model('models:/{promotion['model_name']}@champion')"
            ".predict({'num_samples': 3, 'seed': 1}); print(json.dumps([v.version, list(x.shape)]))")
    out = lab.run_on_worker(1, ["env", "-u", "AWS_ACCESS_KEY_ID", "-u", "AWS_SECRET_ACCESS_KEY",
                                *[f"{k}={v}" for k, v in reader.items()], str(PYTHON), "-c", code], timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    version, shape = json.loads(out.stdout.strip().splitlines()[-1])
    assert str(version) == str(promotion["version"]) and shape == [3, 1, 8, 8]


def test_a_node_killed_mid_training_resumes_from_s3_on_the_surviving_node(lab, prepared_root):
    experiment = f"lab-kill-{prepared_root.name}"
    params = write_params(prepared_root, lab, "kill.yaml", experiment=experiment,
                          scaling={"max_failures": 1, "storage_path": f"s3://{lab.bucket}/{prepared_root.name}/kill"},
                          train={"max_steps": 40, "epochs": 100, "log_every": 1, "checkpoint_every": CHECKPOINT_EVERY,
                                 "keep_checkpoints": 100, "sample_every": 1000})
    watch = AtStep(lab, experiment, 2 * CHECKPOINT_EVERY + 2, lambda: lab.kill_worker(1), metric="d_loss")
    watch.start()
    try:
        text = ok(stage(lab, prepared_root, "train", params, timeout=800))
    finally:
        watch.join(5)
        lab.restart_worker(1)
    assert watch.at_step is not None, watch.error
    (run,) = runs_of(lab, experiment)
    assert run.info.status == "FINISHED" and "trained 40 steps" in text
    resumed = steps_of(lab, run.info.run_id, "resumed_at_step")
    assert len(resumed) == 1, text[-3000:]  # one restart, on the surviving node
    lost = watch.at_step - resumed[0]
    assert 0 <= lost <= CHECKPOINT_EVERY + 2, (watch.at_step, resumed)  # one interval (+ the polling lag) at most
    assert steps_of(lab, run.info.run_id, "d_loss")[-1] == 40
    print(f"node_kill_steps_lost={lost} checkpoint_interval_steps={CHECKPOINT_EVERY}")


_CHECKPOINTS = r"""
import json, sys
from components.storage import location
from components.training import checkpoint as ckpt
folders = [c for run in location(sys.argv[1]).children() for c in run.children("checkpoint_") if c.is_dir()]
print(json.dumps([ckpt.is_whole_at(c) for c in folders]))
"""


def _whole_and_corrupt(lab, uri: str) -> tuple[int, int]:
    """Checkpoint folders under a run's URI that match their hash records, and those that do not, as the
    driver's machine sees them (a process of its own: pyarrow's S3 threads live in its network)."""
    out = lab.run_driver([str(PYTHON), "-c", _CHECKPOINTS, uri], timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    verdicts = json.loads(out.stdout.strip().splitlines()[-1])
    return sum(verdicts), len(verdicts) - sum(verdicts)


def test_s3_unreachable_for_30_s_while_checkpointing_loses_and_corrupts_nothing(lab, prepared_root):
    import time

    experiment = f"lab-s3-{prepared_root.name}"
    steps = 30
    params = write_params(prepared_root, lab, "s3down.yaml", experiment=experiment,
                          scaling={"storage_path": f"s3://{lab.bucket}/{prepared_root.name}/s3down"},
                          train={"max_steps": steps, "epochs": 100, "log_every": 1, "checkpoint_every": CHECKPOINT_EVERY,
                                 "keep_checkpoints": 100, "sample_every": 1000})
    outage = {}

    def down_30_s():
        outage["from"] = time.monotonic()
        lab.s3_down()
        time.sleep(30)
        lab.s3_up()
        outage["s"] = time.monotonic() - outage["from"]

    watch = AtStep(lab, experiment, CHECKPOINT_EVERY + 1, down_30_s, metric="d_loss")
    watch.start()
    try:
        ok(stage(lab, prepared_root, "train", params, timeout=800))
    finally:
        watch.join(60)
        lab.s3_up()
    assert watch.at_step is not None and outage.get("s", 0) >= 30, watch.error
    assert watch.at_step < steps  # the outage began mid-run, before the last checkpoints
    (run,) = runs_of(lab, experiment)
    assert steps_of(lab, run.info.run_id, "d_loss") == list(range(1, steps + 1))  # no point lost
    whole, corrupt = _whole_and_corrupt(lab, f"s3://{lab.bucket}/{prepared_root.name}/s3down")
    assert (whole, corrupt) == (steps // CHECKPOINT_EVERY, 0)
    print(f"s3_outage_s={outage['s']:.0f} points_lost=0 corrupt_checkpoints={corrupt}")


def test_mlflow_server_restart_mid_run_loses_no_metric_point(lab, prepared_root):
    experiment = f"lab-mlflow-{prepared_root.name}"
    steps = 25
    params = write_params(prepared_root, lab, "restart.yaml", experiment=experiment,
                          scaling={"storage_path": f"s3://{lab.bucket}/{prepared_root.name}/restart"},
                          train={"max_steps": steps, "epochs": 100, "log_every": 1, "checkpoint_every": 10,
                                 "sample_every": 1000})

    def restart():
        with lab.driver_net():
            lab.tracking.restart()

    watch = AtStep(lab, experiment, 5, restart, metric="d_loss")
    watch.start()
    try:
        ok(stage(lab, prepared_root, "train", params, timeout=800))
    finally:
        watch.join(300)
    assert watch.at_step is not None and watch.at_step < steps, watch.error
    (run,) = runs_of(lab, experiment)
    assert run.info.status == "FINISHED"
    for key in ("d_loss", "g_loss"):
        assert steps_of(lab, run.info.run_id, key) == list(range(1, steps + 1))


def _sweep_params(root, lab, name: str, workers: int, concurrent: int):
    s3 = f"s3://{lab.bucket}/{root.name}"
    spread = "STRICT_SPREAD" if workers > 1 else "SPREAD"
    return write_params(root, lab, name, experiment=f"lab-{name}-{root.name}", scaling={"placement_strategy": spread},
                        tune={"enabled": True, "num_workers": workers, "search": "grid", "num_samples": 1, "scheduler": "fifo",
                              "max_concurrent_trials": concurrent, "trial_steps": 20, "eval_every": 10,
                              "eval_samples": 500, "register_best": False, "storage_path": f"{s3}/{name}",
                              "output_dir": str(root / name), "report": str(root / name / "tune.json"),
                              "trials_csv": str(root / name / "trials.csv"),
                              "space": {"train.lr_g": {"grid": [1e-3, 2e-3]}}})


def test_in_process_sweep_runs_trials_on_both_worker_nodes(lab, prepared_root):
    params = _sweep_params(prepared_root, lab, "sweep", workers=1, concurrent=2)
    ok(stage(lab, prepared_root, "tune", params, timeout=800))
    report = json.loads((prepared_root / "sweep" / "tune.json").read_text())
    assert (report["trials_total"], report["trials_completed"], report["trials_failed"]) == (2, 2, 0)
    assert len({r["worker_nodes"].split()[0] for r in report["trials"]}) == 2, report["trials"]
    assert not (prepared_root / "data" / "tune_runs").exists()


def test_train_per_trial_sweep_runs_ddp_trials_across_nodes(lab, prepared_root):
    params = _sweep_params(prepared_root, lab, "sweep-ddp", workers=2, concurrent=1)
    ok(stage(lab, prepared_root, "tune", params, timeout=800))
    report = json.loads((prepared_root / "sweep-ddp" / "tune.json").read_text())
    assert (report["trials_total"], report["trials_completed"], report["trials_failed"]) == (2, 2, 0)
    for row in report["trials"]:
        assert len(set(row["worker_nodes"].split())) == 2, row  # each trial's 2 ranks on 2 nodes
