"""Smoke tests of the test cluster itself (tests/cluster_lab.py): nodes that share only a network, token
authentication on, genpipe from the image, driver files out of a worker's reach, S3 outages, node kills."""
from __future__ import annotations

import json
import time

import pytest

from cluster_lab import IMAGE_MOUNT, PYTHON, REPO, lab  # noqa: F401  (lab: the module's cluster)

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

# On the driver's machine: join the cluster, then ask each worker node (pinned) what it sees.
_DRIVER = r"""
import json, os, sys, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On
ray.init(logging_config=ray.LoggingConfig(log_level="ERROR"), log_to_driver=False)

@ray.remote(num_cpus=1)
def look(checkout):
    import components
    try:
        open(os.path.join(checkout, "params.yaml")).read()
        opened = "read"
    except OSError as e:
        opened = type(e).__name__
    return {"ip": ray.util.get_node_ip_address(), "components": components.__file__, "opened": opened}

alive = [n for n in ray.nodes() if n["Alive"]]
workers = [n for n in alive if n["Resources"].get("trainer")]
seen = ray.get([look.options(scheduling_strategy=On(n["NodeID"], soft=False)).remote(sys.argv[1]) for n in workers])
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
print(json.dumps({"checkout": exists(sys.argv[1]), "venv_python": exists(sys.executable), "lab_root": exists(sys.argv[2]),
                  "driver_token": exists(sys.argv[3]), "own_token": exists(os.path.expanduser("~/.ray/auth_token")),
                  "tmp": sorted(os.listdir("/tmp")), "components": components.__file__, "image_write": image_write,
                  "raylets": progs.count(b"raylet"), "gcs": progs.count(b"gcs_server"),
                  "token_env": "RAY_AUTH_TOKEN_PATH" in os.environ}))
"""


def test_worker_node_sees_its_own_disk_and_processes_only(lab):
    for i in range(len(lab.worker_ips)):
        out = lab.run_on_worker(i, [str(PYTHON), "-c", _NODE, str(REPO / "params.yaml"), str(lab.root),
                                    str(lab.token_path), IMAGE_MOUNT])
        assert out.returncode == 0, out.stderr[-3000:]
        got = json.loads(out.stdout)
        # (Ray's temp dir is cluster-wide: the node keeps its files under the head's --temp-dir, on its own /tmp)
        assert got == {"checkout": False, "venv_python": True, "lab_root": False, "driver_token": False,
                       "own_token": True, "tmp": [lab.head_tmp.name], "components": f"{IMAGE_MOUNT}/components/__init__.py",
                       "image_write": "EROFS", "raylets": 1, "gcs": 0, "token_env": False}


def test_image_carries_genpipe_package_data(lab):
    """A node installs genpipe from its wheel: presets and pinned evaluators must be inside it."""
    out = lab.run_on_worker(0, [str(PYTHON), "-c", "from components.config.loading import PRESETS_DIR as p; "
                                                   "print(sorted(f.name for f in p.glob('*.yaml')))"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.replace("'", '"')) == sorted(f.name for f in (REPO / "components/presets").glob("*.yaml"))


def test_s3_goes_down_and_comes_back_with_its_data(lab):
    import boto3
    import botocore.exceptions as bx
    from botocore.config import Config

    with lab.driver_net():
        s3 = boto3.client("s3", **{"endpoint_url": lab.s3_endpoint, "region_name": "us-east-1"},
                          aws_access_key_id="testing", aws_secret_access_key="testing",
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
    print(f"worker rejoined in {rejoin_s:.1f} s; the GCS saw the old node dead {time.monotonic() - t0:.1f} s after the kill")
