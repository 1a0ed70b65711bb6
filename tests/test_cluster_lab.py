"""Smoke tests of the test cluster itself (tests/cluster_lab.py): nodes that share only a network, token
authentication on, genpipe from the image, driver files out of a worker's reach, S3 outages, node kills."""
from __future__ import annotations

import json
import threading
import time

import pytest

from cluster_lab import IMAGE_MOUNT, PYTHON, REPO, lab  # noqa: F401  (lab: the module's cluster)

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

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
        # (Ray's temp dir is cluster-wide: the node keeps its files under the head's --temp-dir, on its own /tmp)
        assert got == {"checkout": False, "venv_python": True, "lab_root": False, "driver_token": False,
                       "own_token": True, "tmp": [lab.head_tmp.name],
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


def test_s3_goes_down_and_comes_back_with_its_data(lab):
    import boto3
    import botocore.exceptions as bx
    from botocore.config import Config

    with lab.driver_net():
        s3 = boto3.client("s3", endpoint_url=lab.s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing",
                          config=Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1}))
        s3.put_object(Bucket=lab.bucket, Key="probe", Body=b"kept")
        for how, error in (("net", (bx.ConnectTimeoutError, bx.EndpointConnectionError)),
                           ("stop", bx.ReadTimeoutError)):
            lab.s3_down(how)
            try:
                with pytest.raises(error):
                    s3.get_object(Bucket=lab.bucket, Key="probe")
            finally:
                lab.s3_up()
            assert s3.get_object(Bucket=lab.bucket, Key="probe")["Body"].read() == b"kept"


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


def test_killed_worker_dies_whole_and_restarts(lab):
    w0, w1 = lab.worker_ips
    before = lab.nodes()
    (old,) = _alive_at(before, w1)
    t0 = time.monotonic()
    lab.kill_worker(1)
    assert lab._ns_pids(lab.ns["w1"]) == []  # raylet, Ray workers, everything of that node
    lab.restart_worker(1)
    rejoin_s = time.monotonic() - t0
    nodes = lab.nodes()
    assert len(_alive_at(nodes, w1) - {old}) == 1  # a new node at the same address
    assert _alive_at(nodes, w0) == _alive_at(before, w0) and len(_alive_at(nodes, lab.head_ip)) == 1
    deadline = time.monotonic() + 60  # the GCS declares the old raylet dead once its health checks fail
    while old in _alive_at(nodes, w1):
        assert time.monotonic() < deadline, "the killed node is still alive for the GCS after 60 s"
        time.sleep(1)
        nodes = lab.nodes()
    print(f"worker rejoined in {rejoin_s:.1f} s; the GCS saw the old node dead "
          f"{time.monotonic() - t0:.1f} s after the kill")
