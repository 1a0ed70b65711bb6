"""The test cluster: a Ray cluster on this machine whose nodes share only a network (docs/cluster.md).

Network namespaces of the lab's own: the head (which holds the bridge), the worker nodes and an S3 service,
each joined to the bridge by a veth pair, on a private /24 that exists only inside them. Worker nodes also
get their own mount, PID and UTS namespaces: the checkout, the lab's root, the machine's /tmp and HOME are
hidden there, and genpipe comes from an "image" (the Python environment plus a wheel the lab builds), never
from the checkout. The driver runs on the head's machine, as a job submitted to a real cluster does: Ray
drivers join the raylet of their own machine (found by process list, through Unix sockets) and take its
address as theirs, so a driver on a machine without a raylet cannot take part (see docs/_drafts/cluster_lab.md).

    python tests/cluster_lab.py up [ROOT]     # start one by hand; prints addresses and the driver's env
    python tests/cluster_lab.py down [ROOT]   # stop it

Tests: `from cluster_lab import lab` (a module-scoped fixture), or `with Lab(root) as lab: ...`.
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script too
from services import S3Server, TeamTracking  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)  # the environment the nodes' image is made of
PYTHON = VENV / "bin" / "python"
HOME = Path(os.path.expanduser("~"))
NET = "10.213.0"  # private, and only inside the lab's namespaces: two labs never see each other's
HEAD_IP, S3_IP = f"{NET}.1", f"{NET}.3"
RAY_PORT, S3_PORT = 6379, 9000
BUCKET = "genpipe-lab"
IMAGE_MOUNT = "/opt/genpipe"  # where a worker node sees the image's site dir (its PYTHONPATH)
_PACKAGE = ("pyproject.toml", "README.md", "components", "pipelines")  # what the wheel is built from
_IMAGES: dict[str, Path] = {}  # sources hash → an image built by this process, reused by later labs
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, CLONE_NEWNET = 1, 32, 4096, 16384, 0x40000000


def unavailable() -> str | None:
    """Why a lab cannot start on this machine, or None."""
    if os.geteuid() != 0:
        return "the test cluster needs root (network, mount and PID namespaces)"
    for tool in ("ip", "unshare", "nsenter"):
        if not shutil.which(tool):
            return f"the test cluster needs `{tool}` (iproute2 / util-linux), not found on PATH"
    probe = f"glprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode:
        return f"`ip netns add` failed here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    made = subprocess.run(["unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc", "true"],
                          capture_output=True, text=True)
    if made.returncode:
        return f"`unshare --mount --uts --pid` failed here: {made.stderr.strip()}"
    if not Path("/opt").is_dir():
        return "the test cluster mounts the nodes' image under /opt, which this machine lacks"
    return None


class Lab:
    """One test cluster; `root` holds its files (node disks, image, logs, token)."""

    def __init__(self, root: Path, workers: int = 2, worker_cpus: int = 2, object_store_mb: int = 300,
                 tracking: bool = True, hide: tuple = (), node_env: dict | None = None):
        self.root = Path(root).resolve()
        self.id = "gl" + secrets.token_hex(3)  # short: namespace names, the head's Ray temp dir
        self.worker_names = [f"w{i}" for i in range(workers)]
        self.ns = {"head": f"{self.id}-h", "s3": f"{self.id}-s3", **{w: f"{self.id}-{w}" for w in self.worker_names}}
        self.head_ip, self.s3_ip = HEAD_IP, S3_IP
        self.worker_ips = [f"{NET}.{11 + i}" for i in range(workers)]
        self.ray_address = f"{HEAD_IP}:{RAY_PORT}"
        self.s3_endpoint = f"http://{S3_IP}:{S3_PORT}"
        self.bucket = BUCKET
        self.worker_cpus, self.object_store_mb = worker_cpus, object_store_mb
        self.want_tracking, self.hide, self.node_env = tracking, tuple(Path(p) for p in hide), dict(node_env or {})
        self.token_path = self.root / "driver" / "auth_token"
        self.head_tmp = Path(f"/tmp/{self.id}")  # short: Ray's Unix socket paths must stay under 107 bytes
        self.tracking_root = Path(f"/tmp/{self.id}-tracking")  # PostgreSQL's user must reach it: not pytest's 0700 tmp
        self.s3: S3Server | None = None
        self.tracking: TeamTracking | None = None
        self.timings: dict[str, float] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._errors: list[BaseException] = []

    # ---- what tests use ------------------------------------------------------------------------------------

    def s3_env(self) -> dict[str, str]:
        """The standard AWS variables for the lab's S3 (moto takes any key until S3Server.enforce_iam())."""
        return {"AWS_ENDPOINT_URL": self.s3_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true"}  # no instance-metadata probe (a timeout per client)

    def env(self, **extra) -> dict[str, str]:
        """A driver's environment: the user's own, minus any Ray/AWS/MLflow settings, plus the lab's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_", "MLFLOW_"))}
        env.update(PATH=f"{VENV / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}", RAY_ADDRESS=self.ray_address,
                   RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_path), **self.s3_env())
        if self.tracking is not None:
            env.update(self.tracking.env("pipeline"))  # MLFLOW_TRACKING_URI and the pipeline user's login
        return {**env, **{k: str(v) for k, v in extra.items()}}

    def run_driver(self, cmd: list, env: dict | None = None, cwd=None, timeout: float = 300,
                   **kw) -> subprocess.CompletedProcess:
        """`cmd` on the driver's machine (the head's: it sees the checkout), with `env` (default: self.env())."""
        kw.setdefault("capture_output", True)
        return subprocess.run(self._in_head(cmd), env=env or self.env(), cwd=cwd or REPO, timeout=timeout, text=True,
                              **kw)

    def popen_driver(self, cmd: list, env: dict | None = None, cwd=None, **kw) -> subprocess.Popen:
        """`cmd` in the background on the driver's machine, in a session of its own (signal it with os.killpg)."""
        return subprocess.Popen(self._in_head(cmd), env=env or self.env(), cwd=cwd or REPO, text=True,
                                start_new_session=True, **kw)

    @contextmanager
    def driver_net(self):
        """This thread's network calls from the driver's machine (setns of this thread only, undone on exit):
        `with lab.driver_net(): ...` boto3, MlflowClient, lab.tracking.restart()."""
        libc = ctypes.CDLL(None, use_errno=True)
        here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        there = os.open(f"/run/netns/{self.ns['head']}", os.O_RDONLY)
        try:
            if libc.setns(there, CLONE_NEWNET):
                raise OSError(ctypes.get_errno(), "setns into the head's network namespace")
            yield
        finally:
            libc.setns(here, CLONE_NEWNET)
            os.close(here)
            os.close(there)

    def run_on_worker(self, i: int, cmd: list, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        """`cmd` on worker node i (its network, files, hostname and processes), with the node's environment."""
        kw.setdefault("capture_output", True)
        return subprocess.run(["nsenter", "-t", str(self._init_pid(i)), "-n", "-m", "-u", "-p", f"--wd={HOME}",
                               *map(str, cmd)], env=self._node_env(i), timeout=timeout, text=True, **kw)

    def worker_home(self, i: int) -> Path:
        """Worker i's HOME as this machine sees it: the way to hand a node a file (a clone, a config)."""
        return self.root / "nodes" / f"w{i}" / "home"

    def kill_worker(self, i: int, timeout: float = 30) -> None:
        """SIGKILL every process of worker node i (its raylet, Ray workers, anything run there)."""
        self._kill_ns(self.ns[f"w{i}"], timeout)
        if proc := self._procs.pop(f"w{i}", None):
            proc.wait(timeout)

    def restart_worker(self, i: int, timeout: float = 90) -> None:
        """Start worker node i again (a fresh raylet at the same address) and wait until it has joined."""
        deadline = time.monotonic() + timeout
        if f"w{i}" in self._procs:
            self.kill_worker(i)
        before = {n["id"] for n in self.nodes()}
        self._start_worker(i)
        self._wait_nodes(lambda ns: any(n["alive"] and n["ip"] == self.worker_ips[i] and n["id"] not in before
                                        for n in ns), f"worker {i} rejoining", deadline)

    def s3_down(self, how: str = "net") -> None:
        """Make S3 unreachable, keeping its data: "net" unplugs its link (packets dropped, connections time
        out), "stop" freezes the server (SIGSTOP: the kernel accepts connections that are never answered)."""
        if how == "net":
            _ip("-n", self.ns["head"], "link", "set", "v-s3", "down")
        else:
            self._signal_ns(self.ns["s3"], signal.SIGSTOP)

    def s3_up(self) -> None:
        _ip("-n", self.ns["head"], "link", "set", "v-s3", "up")
        self._signal_ns(self.ns["s3"], signal.SIGCONT)

    def nodes(self, timeout: float = 60) -> list[dict]:
        """The cluster's nodes as the GCS knows them: id, ip, name, alive, resources."""
        out = self.run_driver([PYTHON, "-c", _NODES], timeout=timeout)
        if out.returncode:
            raise RuntimeError(f"test cluster: listing nodes failed: {out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    # ---- start and stop ------------------------------------------------------------------------------------

    def start(self, timeout: float = 300) -> "Lab":
        deadline = t0 = time.monotonic()
        deadline += timeout
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "lab.json").write_text(json.dumps({"id": self.id, "ns": self.ns}))  # for `down`
            self._network()
            self._files()
            self._start_head()
            for i in range(len(self.worker_ips)):
                self._start_worker(i)  # a worker keeps trying to join until the head's GCS answers
            threads = [threading.Thread(target=self._build_image, daemon=True)] if not self._image_built else []
            for t in threads:
                t.start()  # the wheel builds while the servers and nodes come up
            self._start_s3()
            if self.want_tracking:
                threads.append(threading.Thread(target=self._start_tracking, daemon=True))
                threads[-1].start()
            for t in threads:
                t.join(_left("the image and the tracking server", deadline))
            if self._errors:
                raise self._errors[0]
            self._wait_nodes(lambda ns: sum(n["alive"] for n in ns) == 1 + len(self.worker_ips),
                             "the head and every worker node", deadline)
        except BaseException:
            self.stop()
            raise
        self.timings["start_s"] = round(time.monotonic() - t0, 1)
        return self

    def stop(self) -> None:
        """Stop everything the lab started; safe to call twice, or after a failed start."""
        t0 = time.monotonic()
        for service in (self.tracking, self.s3):
            try:
                if service is not None:
                    with self.driver_net():
                        service.stop()
            except Exception as e:  # the namespaces' processes are killed below in any case
                print(f"test cluster: stopping {type(service).__name__}: {e}", file=sys.stderr)
        for ns in self.ns.values():  # the lab's processes are exactly those in its namespaces
            try:
                self._kill_ns(ns, 30)
            except RuntimeError as e:
                print(e, file=sys.stderr)
        for proc in self._procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self._procs.clear()
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for path in (self.head_tmp, self.tracking_root, *(Path("/etc/netns") / ns for ns in self.ns.values())):
            shutil.rmtree(path, ignore_errors=True)
        self.tracking = self.s3 = None
        (self.root / "lab.json").unlink(missing_ok=True)
        self.timings["stop_s"] = round(time.monotonic() - t0, 1)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @classmethod
    def teardown_root(cls, root: Path) -> None:
        """Stop the lab recorded under `root` (what `down` does for a lab started by `up`)."""
        if not (Path(root) / "lab.json").exists():
            sys.exit(f"no running test cluster is recorded under {root}")
        state = json.loads((Path(root) / "lab.json").read_text())
        lab = cls(root)
        lab.id, lab.ns = state["id"], state["ns"]
        lab.head_tmp, lab.tracking_root = Path(f"/tmp/{lab.id}"), Path(f"/tmp/{lab.id}-tracking")
        lab.stop()

    # ---- the pieces ----------------------------------------------------------------------------------------

    def _network(self) -> None:
        head = self.ns["head"]
        for ns in self.ns.values():
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", head, "link", "add", "br0", "type", "bridge", "forward_delay", "0")
        _ip("-n", head, "addr", "add", f"{HEAD_IP}/24", "dev", "br0")
        _ip("-n", head, "link", "set", "br0", "up")
        for key, addr in {"s3": S3_IP, **dict(zip(self.worker_names, self.worker_ips))}.items():
            ns, port = self.ns[key], f"v-{key}"  # names live inside the namespaces: no clash between labs
            _ip("-n", head, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", head, "link", "set", port, "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "route", "add", "default", "via", HEAD_IP)  # code that probes "the" route finds eth0
        # Each namespace's /etc/hosts and resolv.conf (`ip netns exec` mounts /etc/netns/<ns>/* over /etc). A
        # worker's hostname must resolve to its own address: Gloo (DDP) advertises it to its peers (this
        # machine's name is 127.0.0.1). No DNS server is reachable from the lab: lookups fail at once (refused
        # on 127.0.0.1) instead of after the resolver's 10 s timeout, which c10d's reverse lookups each waited.
        names = {HEAD_IP: "head", S3_IP: "s3", **dict(zip(self.worker_ips, self.worker_names))}
        hosts = Path("/etc/hosts").read_text() + "".join(f"{ip} {name}\n" for ip, name in names.items())
        for ns in self.ns.values():
            etc = Path("/etc/netns") / ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts)
            (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")

    def _files(self) -> None:
        token = secrets.token_hex(32)
        homes = [self.worker_home(i) / ".ray" for i in range(len(self.worker_ips))]
        for path in (self.token_path, *(home / "auth_token" for home in homes)):  # workers: Ray's default path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(token)
            path.chmod(0o600)
        for i in range(len(self.worker_ips)):
            (self.root / "nodes" / f"w{i}" / "tmp").mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        self.head_tmp.mkdir(exist_ok=True)
        # One image per version of the sources in this process: later labs (test modules) reuse it.
        self._image_key = _sources_hash()
        built = _IMAGES.get(self._image_key)
        self._image_built = built is not None and built.is_dir()
        self.image_site = built if self._image_built else self.root / "image" / "site"
        self.image_site.mkdir(parents=True, exist_ok=True)

    def _build_image(self) -> None:
        """genpipe as a cluster node gets it: a wheel of the working tree, installed into the image's site dir."""
        try:
            t0 = time.monotonic()
            src, wheels = self.root / "image" / "src", self.root / "image" / "wheel"
            shutil.rmtree(src, ignore_errors=True)
            src.mkdir(parents=True)
            for top in _PACKAGE:
                if (REPO / top).is_file():
                    shutil.copy2(REPO / top, src / top)
                else:
                    shutil.copytree(REPO / top, src / top, ignore=shutil.ignore_patterns("__pycache__"))
            pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", "-q"]
            subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
                           check=True, capture_output=True, text=True, timeout=300)
            subprocess.run([*pip, "install", "--no-deps", "--no-index", "--upgrade", "--target", str(self.image_site),
                            str(next(wheels.glob("genpipe-*.whl")))], check=True, capture_output=True, text=True,
                           timeout=300)
            _IMAGES[self._image_key] = self.image_site
            self.timings["image_s"] = round(time.monotonic() - t0, 1)
        except BaseException as e:  # raised again by start()
            if isinstance(e, subprocess.CalledProcessError):
                e = RuntimeError(f"test cluster: building the image failed: {e.stderr[-2000:]}")
            self._errors.append(e)

    def _start_s3(self) -> None:
        """moto's S3 server (tests/services.py) in a namespace of its own: S3 is a service apart, which s3_down()
        cuts off from every client (the MLflow server included)."""
        self.s3 = S3Server(S3_IP, S3_PORT, prefix=["ip", "netns", "exec", self.ns["s3"]],
                           log=self.root / "logs" / "s3.log")
        with self.driver_net():
            self.s3.start()
            self.s3.create_bucket(self.bucket)

    def _start_tracking(self) -> None:
        """PostgreSQL and the MLflow server on the head (tests/services.py), artifacts proxied to the lab's S3."""
        try:
            self.tracking_root.mkdir(mode=0o711)
            self.tracking = TeamTracking(self.tracking_root, HEAD_IP, ["ip", "netns", "exec", self.ns["head"]],
                                         s3_env=self.s3_env(), artifacts=f"s3://{self.bucket}/mlflow-artifacts")
            with self.driver_net():  # its readiness checks connect to the head's address
                self.tracking.start()
        except BaseException as e:  # raised again by start()
            self._errors.append(e)

    def _node_env(self, i: int | None) -> dict[str, str]:
        """A node's own environment (i None: the head), as its machine image would set it; nothing of the driver's."""
        image = str(self.image_site) if i is None else IMAGE_MOUNT
        env = {"PATH": f"{VENV / 'bin'}:{image}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": str(HOME), "LANG": "C.UTF-8", "PYTHONPATH": image, "RAY_AUTH_MODE": "token",
               "RAY_USAGE_STATS_ENABLED": "0", **self.s3_env(), **self.node_env}
        if i is None:  # the driver's machine: its own ~/.ray/auth_token (its local Ray's) is not the cluster's
            env["RAY_AUTH_TOKEN_PATH"] = str(self.token_path)
        else:  # started with the head, a worker keeps trying its GCS for 2 min (Ray's default: 20 s)
            env["RAY_NUM_REDIS_GET_RETRIES"] = "120"
        return env

    def _ray_start(self) -> list[str]:
        return [str(VENV / "bin" / "ray"), "start", "--block", "--disable-usage-stats",
                "--object-store-memory", str(self.object_store_mb * 2**20)]

    def _start_head(self) -> None:
        """The head runs on the driver's machine (its files, its processes): only its network is the lab's."""
        argv = [*self._ray_start(), "--head", "--port", str(RAY_PORT), "--node-ip-address", HEAD_IP, "--num-cpus", "0",
                "--include-dashboard=false", "--temp-dir", str(self.head_tmp), "--node-name", "head"]
        self._spawn("head", argv, self._node_env(None), self.head_tmp)

    def _start_worker(self, i: int) -> None:
        """A machine of its own: network, files, hostname and processes (killing its PID 1 kills the node)."""
        node, name = self.root / "nodes" / f"w{i}", self.worker_names[i]
        argv = [*self._ray_start(), "--address", self.ray_address, "--node-ip-address", self.worker_ips[i],
                "--num-cpus", str(self.worker_cpus), "--resources", json.dumps({"trainer": 1}), "--node-name", name]
        # What it cannot see: /tmp and HOME are its own disk; the checkout, the lab's root, /opt are empty.
        mounts = [["bind", "/tmp", str(node / "tmp"), False], ["bind", str(HOME), str(self.worker_home(i)), False]]
        hidden = [Path("/tmp"), HOME]
        for path in (REPO, self.root, *self.hide, Path("/opt"), Path("/dev/shm")):
            if not _under(path, hidden):
                mounts.append(["tmpfs", str(path)])
                hidden.append(path)
        # What it gets back, read-only: its image (the Python environment at its paths, genpipe at /opt/genpipe).
        for path in (Path(sys.base_prefix).resolve(), VENV):
            if _under(path, hidden):
                mounts.append(["bind", str(path), str(path), True])
        mounts.append(["bind", IMAGE_MOUNT, str(self.image_site), True])
        spec = self.root / "logs" / f"{name}.json"
        spec.write_text(json.dumps({"mounts": mounts, "argv": argv, "cwd": str(HOME), "hostname": name}))
        self._spawn(name, ["unshare", "--mount", "--propagation", "private", "--uts", "--pid", "--fork", "--mount-proc",
                           "--kill-child", str(PYTHON), __file__, "_node", str(spec)], self._node_env(i), "/")

    def _spawn(self, name: str, argv: list, env: dict, cwd) -> None:
        with open(self.root / "logs" / f"{name}.log", "a") as log:
            self._procs[name] = subprocess.Popen(["ip", "netns", "exec", self.ns[name], *argv], env=env, cwd=cwd,
                                                 stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                 start_new_session=True)

    def _init_pid(self, i: int) -> int:
        """Host PID of worker i's PID 1 (the child of its `unshare`)."""
        proc = self._procs.get(f"w{i}")
        if proc is None or proc.poll() is not None:
            raise RuntimeError(f"test cluster: worker {i} is not running")
        for _ in range(100):
            if children := Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
                return int(children[0])
            time.sleep(0.05)
        raise RuntimeError(f"test cluster: worker {i} has no init process")

    def _wait_nodes(self, ok, what: str, deadline: float) -> None:
        while True:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    log = (self.root / "logs" / f"{name}.log").read_text()[-3000:]
                    raise RuntimeError(f"test cluster: node {name} exited ({proc.returncode}):\n{log}")
            try:
                if ok(self.nodes(timeout=_left(what, deadline) + 5)):
                    return
            except RuntimeError:
                pass  # the GCS is not up yet
            time.sleep(0.5)

    def _ns_pids(self, ns: str) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def _signal_ns(self, ns: str, sig: int) -> None:
        for pid in self._ns_pids(ns):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _kill_ns(self, ns: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while pids := self._ns_pids(ns):
            self._signal_ns(ns, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise RuntimeError(f"test cluster: processes {pids} of {ns} survive SIGKILL")
            time.sleep(0.05)

    def _in_head(self, cmd: list) -> list[str]:
        return ["ip", "netns", "exec", self.ns["head"], *map(str, cmd)]


# The nodes as the GCS knows them (a GCS client: no driver, no job).
_NODES = """
import json, os
from ray._raylet import GcsClient
infos = GcsClient(address=os.environ["RAY_ADDRESS"]).get_all_node_info(timeout=10).values()
print(json.dumps([{"id": n.node_id.hex(), "ip": n.node_manager_address, "name": n.node_name, "alive": n.state == 0,
                   "resources": dict(n.resources_total)} for n in infos]))
"""


def _sources_hash() -> str:
    h = hashlib.sha256()
    for top in _PACKAGE:
        for f in sorted([REPO / top] if (REPO / top).is_file() else (REPO / top).rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _under(path: Path, tops) -> bool:
    return any(path == t or t in path.parents for t in tops)


def _left(what: str, deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"test cluster: {what} not ready in time")
    return left


def _mount(src, target, fstype=None, flags=0, data=None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    enc = lambda s: s.encode() if s else None  # noqa: E731
    if libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)):
        err = ctypes.get_errno()
        raise OSError(err, f"mount {src} on {target}: {os.strerror(err)}")


def _node_main(spec_path: str) -> None:
    """PID 1 of a worker node, in its new namespaces: build the node's view of the files, name it, then become
    its `ray start --block` (the node lives exactly as long as its Ray processes)."""
    spec = json.loads(Path(spec_path).read_text())
    # Bind sources are opened before anything is hidden: some lie under what the tmpfs mounts cover.
    fds = {i: os.open(m[2], os.O_PATH) for i, m in enumerate(spec["mounts"]) if m[0] == "bind"}
    for i, (kind, target, *rest) in enumerate(spec["mounts"]):
        if not os.path.exists(target):  # only ever inside a layer mounted just before (a tmpfs, the node's disk)
            os.makedirs(target)
        if kind == "tmpfs":
            _mount("tmpfs", target, "tmpfs", 0, "mode=1777" if target == "/dev/shm" else "mode=0755")
        else:
            _mount(f"/proc/self/fd/{fds[i]}", target, None, MS_BIND | MS_REC)
            if rest[1]:  # read-only
                _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    for fd in fds.values():
        os.close(fd)
    socket.sethostname(spec["hostname"])
    os.chdir(spec["cwd"])
    os.execve(spec["argv"][0], spec["argv"], os.environ)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One test cluster for the module that asks for it; skipped, with the reason, where it cannot run."""
    if reason := unavailable():
        pytest.skip(reason)
    with Lab(tmp_path_factory.mktemp("lab")) as running:
        yield running
    print(f"\ntest cluster: {running.timings}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down", "_node"])
    parser.add_argument("root", nargs="?", default="/tmp/genpipe-lab")
    args = parser.parse_args(argv)
    if args.action == "_node":
        return _node_main(args.root)
    if args.action == "down":
        Lab.teardown_root(Path(args.root))
        return print(f"test cluster under {args.root} stopped")
    if reason := unavailable():
        sys.exit(reason)
    lab = Lab(Path(args.root)).start()
    print(f"test cluster {lab.id} up in {lab.timings['start_s']} s under {lab.root}\n"
          f"  head (the driver's machine) {lab.head_ip}, Ray {lab.ray_address}; workers {', '.join(lab.worker_ips)}; "
          f"S3 {lab.s3_endpoint}, bucket {lab.bucket}\n"
          f"  a shell on the driver's machine:  ip netns exec {lab.ns['head']} bash\n"
          f"  a shell on worker 0:  nsenter -t {lab._init_pid(0)} -n -m -u -p bash\n"
          "  the driver's environment (beside yours):")
    for k, v in lab.env().items():
        if os.environ.get(k) != v:
            print(f"export {k}={v}")
    print(f"  stop:  {PYTHON} {__file__} down {lab.root}")


if __name__ == "__main__":
    main()
