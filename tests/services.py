"""Real servers for tests, each a subprocess its owner starts and stops: moto's S3 server, PostgreSQL,
and the team MLflow server (basic-auth app on PostgreSQL, artifacts proxied to S3).

Every server binds to `host` only: loopback, or an address inside a network namespace the test made;
`prefix` runs it there (e.g. ["ip", "netns", "exec", NS]). Each `start` returns the seconds it took.
The test process must reach `host` (the namespaced cluster routes it through its veth pair)."""
from __future__ import annotations

import atexit
import glob
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

AWS_REGION = "us-east-1"
BIN_DIR = os.path.dirname(sys.executable)


class ServiceError(RuntimeError):
    """A server that did not start or stop; the message carries its log's tail."""


def free_port(host: str = "127.0.0.1", prefix=()) -> int:
    """A port free at `host`, asked of the kernel of the namespace the server will run in."""
    if not prefix:
        with socket.socket() as s:
            s.bind((host, 0))
            return s.getsockname()[1]
    code = f"import socket; s = socket.socket(); s.bind(({host!r}, 0)); print(s.getsockname()[1])"
    return int(subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60, check=True).stdout)


def refused(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, port)) != 0


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"{what}: the process exited ({proc.returncode}):\n{_tail(log) if log else ''}")
        try:
            if (value := predicate()):
                return value
        except OSError:
            pass
        time.sleep(0.1)
    raise ServiceError(f"timed out after {timeout:g} s waiting for {what}:\n{_tail(log) if log else ''}")


def _http_ok(url: str, auth: tuple[str, str] | None = None, timeout: float = 5) -> bool:
    req = urllib.request.Request(url)
    if auth:
        import base64

        req.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status == 200
    except urllib.error.HTTPError:
        return False


def _spawn(cmd: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    """In its own process group (`ip netns exec` execs, so the group is the server's): kill with `_kill`."""
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)


def _kill(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # the group we created: the server and its workers
        proc.wait(30)


# ---------------------------------------------------------------- S3 (moto's server mode)
class S3Server:
    """moto's S3 server: any credentials pass until `enforce_iam()`; from then on every request must be
    signed by an IAM user created on this server, and is checked against that user's policies."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, prefix=(), log: Path | None = None):
        self.host, self.prefix = host, list(prefix)
        self.port = port or free_port(host, self.prefix)
        self.endpoint = f"http://{host}:{self.port}"
        self.log = Path(log) if log else Path(tempfile.mkstemp(prefix="genpipe-moto-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> float:
        started = time.monotonic()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.proc = _spawn([*self.prefix, sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
                           self.log, env)
        atexit.register(self.stop)  # a server in its own session outlives an owner that forgot to stop it
        try:
            _wait(lambda: _http_ok(f"{self.endpoint}/moto-api/data.json"), timeout, f"moto on {self.endpoint}",
                  self.proc, self.log)
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - started

    def env(self) -> dict[str, str]:
        """What a process needs to reach this S3 (boto3, pyarrow, MLflow's server via MLFLOW_S3_ENDPOINT_URL)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": AWS_REGION}

    def client(self, service: str = "s3", key_id: str = "testing", secret: str = "testing"):
        import boto3
        from botocore.config import Config

        return boto3.client(service, endpoint_url=self.endpoint, region_name=AWS_REGION, aws_access_key_id=key_id,
                            aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}))

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def enforce_iam(self) -> None:
        """moto's /moto-api/reset-auth with 0: IAM authentication and policies apply to every later request."""
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})  # a form body would be parsed away
        urllib.request.urlopen(req, timeout=10).close()

    def stop(self) -> None:
        _kill(self.proc)
        self.proc = None


# ---------------------------------------------------------------- PostgreSQL
def pg_bin(name: str) -> str:
    """The newest Debian PostgreSQL's program, else one on PATH."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: [int(x) for x in re.findall(r"\d+", d)])
    for d in reversed(dirs):
        if os.access(f"{d}/{name}", os.X_OK):
            return f"{d}/{name}"
    if found := shutil.which(name):
        return found
    raise ServiceError(f"PostgreSQL's `{name}` was not found in /usr/lib/postgresql/*/bin or on PATH: install "
                       "Debian's postgresql package (apt-get install postgresql)")


class PostgresServer:
    """A throw-away cluster in root/data (durability off: fsync, synchronous_commit). TCP clients log in
    with the `postgres` user's password (scram); the unix socket in `root` trusts local users. As root,
    initdb and the server run as the `postgres` user (initdb refuses root), so `root` must be reachable
    by that user: make it with tempfile.mkdtemp(), not under pytest's tmp_path (mode 0700)."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int | None = None, prefix=()):
        self.root, self.host, self.prefix = Path(root), host, list(prefix)
        self.port = port or free_port(host, self.prefix)
        self.data, self.log = self.root / "data", self.root / "postgres.log"
        self.password = secrets.token_urlsafe(18)
        self.as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.running = False

    def _run(self, *cmd: str, timeout: float = 120) -> None:
        done = subprocess.run([*self.prefix, *self.as_pg, *cmd], capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            raise ServiceError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n"
                               f"{_tail(self.log)}")

    def start(self, timeout: float = 60) -> float:
        started = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        if self.as_pg:
            shutil.chown(self.root, "postgres", "postgres")
            if subprocess.run([*self.as_pg, "test", "-w", str(self.root)]).returncode:
                raise ServiceError(f"the postgres user cannot reach {self.root}: every folder above it must be "
                                   "searchable by it (tempfile.mkdtemp() under /tmp, then chmod 0o711)")
        if not (self.data / "PG_VERSION").exists():
            pwfile = self.root / "pw"
            pwfile.write_text(self.password)
            if self.as_pg:
                shutil.chown(pwfile, "postgres", "postgres")
            try:
                self._run(pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--no-sync",
                          "--no-instructions", "--auth-local=trust", "--auth-host=scram-sha-256",
                          f"--pwfile={pwfile}")
            finally:
                pwfile.unlink()
            if not self.host.startswith("127."):  # initdb lists loopback only; allow the namespace's own subnet
                with open(self.data / "pg_hba.conf", "a") as hba:
                    hba.write("host all all samenet scram-sha-256\n")
        self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(int(timeout)), "start",
                  "-o", f"-p {self.port} -k {self.root} -c listen_addresses={self.host} -c fsync=off "
                  "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
                  timeout=timeout + 30)
        self.running = True
        atexit.register(self.stop)
        return time.monotonic() - started

    def create_database(self, name: str) -> str:
        """Through the unix socket (works whatever the network); returns the database's URI."""
        self._run(pg_bin("createdb"), "-h", str(self.root), "-p", str(self.port), "-U", "postgres", name)
        return self.uri(name)

    def uri(self, database: str = "postgres") -> str:
        # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; the test extra installs psycopg2
        return f"postgresql+psycopg2://postgres:{self.password}@{self.host}:{self.port}/{database}"

    def stop(self) -> None:
        if self.running:
            subprocess.run([*self.prefix, *self.as_pg, pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate",
                            "-w", "stop"], capture_output=True, timeout=60)
            self.running = False


# ---------------------------------------------------------------- the team MLflow server
class TeamTracking:
    """`mlflow server --app-name basic-auth` on its own PostgreSQL (databases `mlflow` and `mlflow_auth`:
    runs, registry and users survive `restart()`), artifacts proxied to `artifacts` on S3 (clients need no
    S3 credentials; the server gets `s3_env`).

    Users: `admin` (from the auth config), `pipeline` (creates experiments, runs and registered models and
    so owns them: MANAGE) and `reader` (READ on every experiment and registered model). The default
    permission is NO_PERMISSIONS: a user holds only what is granted, so a user added later sees nothing
    until granted; "browse everything" is the reader's explicit wildcard grant, not everyone's default."""

    USERS = ("admin", "pipeline", "reader")
    READER_GRANTS = (("experiment", "*", "READ"), ("registered_model", "*", "READ"))

    def __init__(self, root: Path, host: str = "127.0.0.1", prefix=(), *, s3_env: dict,
                 artifacts: str = "s3://genpipe/mlflow", port: int | None = None):
        self.root, self.host, self.prefix = Path(root), host, list(prefix)
        self.s3_env, self.artifacts = dict(s3_env), artifacts
        self.port = port or free_port(host, self.prefix)
        self.uri = f"http://{host}:{self.port}"
        self.postgres = PostgresServer(self.root / "postgres", host, prefix=self.prefix)
        self.passwords = {user: secrets.token_urlsafe(18) for user in self.USERS}
        self._secret_key = secrets.token_urlsafe(32)
        self.log = self.root / "mlflow-server.log"
        self.startup_s: dict[str, float] = {}  # {"postgres": s, "mlflow": s} of the last start
        self.proc: subprocess.Popen | None = None
        self._users = False

    def env(self, user: str | None = "pipeline") -> dict[str, str]:
        """MLFLOW_TRACKING_URI, and the user's basic-auth credentials (None: anonymous)."""
        env = {"MLFLOW_TRACKING_URI": self.uri}
        if user is not None:
            env.update(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=self.passwords[user])
        return env

    def start(self, timeout: float = 300) -> float:
        started = time.monotonic()
        atexit.register(self.stop)
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)  # PostgreSQL's own user (as root) must traverse to root/postgres
        if not self.postgres.running:
            self.startup_s["postgres"] = self.postgres.start()
            self.postgres.create_database("mlflow")
            self.postgres.create_database("mlflow_auth")
        self._write_auth_config()
        self.startup_s["mlflow"] = self._start_server(timeout)
        if not self._users:
            self._create_users()
        return time.monotonic() - started

    def restart(self, timeout: float = 300) -> float:
        """The MLflow server only, on the same port; PostgreSQL and its data stay."""
        self._kill()
        return self._start_server(timeout)

    def stop(self) -> None:
        self._kill()
        self.postgres.stop()

    def _write_auth_config(self) -> None:
        ini = self.root / "basic_auth.ini"
        ini.write_text("[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
                       f"database_uri = {self.postgres.uri('mlflow_auth')}\n"
                       f"admin_username = admin\nadmin_password = {self.passwords['admin']}\n"
                       "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                       # Without it every request pays a scrypt password check (~1.7 s a request on 2 busy cores,
                       # 0.09 s with it). One worker: the password and user APIs invalidate its cache at once.
                       "auth_cache_ttl_seconds = 60\n")
        ini.chmod(0o600)  # it holds passwords

    def _start_server(self, timeout: float) -> float:
        started = time.monotonic()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
        env.update(self.s3_env, MLFLOW_S3_ENDPOINT_URL=self.s3_env["AWS_ENDPOINT_URL"],
                   MLFLOW_AUTH_CONFIG_PATH=str(self.root / "basic_auth.ini"),
                   MLFLOW_FLASK_SERVER_SECRET_KEY=self._secret_key,  # the auth app's CSRF key
                   MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",  # no server-side jobs (GenAI scorers): a process less
                   PATH=f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}")
        self.proc = _spawn([*self.prefix, sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth",
                            "--backend-store-uri", self.postgres.uri("mlflow"), "--serve-artifacts",
                            "--artifacts-destination", self.artifacts, "--host", self.host, "--port", str(self.port),
                            "--allowed-hosts", f"{self.host},{self.host}:{self.port}",
                            "--workers", "1"],  # one uvicorn worker (2 cores); it serves requests concurrently
                           self.log, env)
        admin = ("admin", self.passwords["admin"])
        # healthy, then one authenticated call that loads the auth app, the stores and the handlers
        try:
            _wait(lambda: _http_ok(f"{self.uri}/health") and _http_ok(
                f"{self.uri}/api/2.0/mlflow/experiments/search?max_results=1", admin, timeout=timeout),
                timeout, f"mlflow server on {self.uri}", self.proc, self.log)
        except BaseException:
            self._kill()
            raise
        return time.monotonic() - started

    def _kill(self) -> None:
        _kill(self.proc)
        self.proc = None
        _wait(lambda: refused(self.host, self.port), 30, f"port {self.port} to close")

    def _create_users(self) -> None:
        import requests

        admin = ("admin", self.passwords["admin"])

        def post(path: str, body: dict) -> None:
            r = requests.post(f"{self.uri}{path}", json=body, auth=admin, timeout=60)
            if r.status_code != 200:
                raise ServiceError(f"POST {path} {body.get('username')}: {r.status_code} {r.text[:500]}")

        for user in ("pipeline", "reader"):
            post("/api/2.0/mlflow/users/create", {"username": user, "password": self.passwords[user]})
        for resource_type, pattern, permission in self.READER_GRANTS:
            post("/api/3.0/mlflow/users/permissions/grant", {"username": "reader", "resource_type": resource_type,
                                                              "resource_id": pattern, "permission": permission})
        self._users = True

    def __enter__(self) -> "TeamTracking":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
