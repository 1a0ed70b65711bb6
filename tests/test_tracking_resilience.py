"""MLflow outages never lose metrics, and concurrent writers lose nothing.

Real parts only: a SQLite store locked by another connection (`BEGIN EXCLUSIVE`), Debian's PostgreSQL
behind a real `mlflow server` that is killed and started again, 8 writer processes per store.

Top-level imports stay light: the writer processes import this module to find `_writer`."""
from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from services import PostgresServer, ServiceError, free_port, refused

WRITERS, STEPS, NAMES = 8, 200, ("loss", "acc", "lr")  # 8 processes × 200 points of each metric
SMALL_MODEL = {"latent_dim": 8, "g_channels": 8, "d_channels": 8}


# ---------------------------------------------------------------- helpers
def _checkpoints(root: Path) -> list[Path]:
    return sorted(root.glob("checkpoints/*/checkpoint_*"))


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := predicate()):
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class SqliteLock:
    """Another writer holding the whole SQLite store: no MLflow read or write gets through meanwhile."""

    def __init__(self, db: Path):
        self.con = sqlite3.connect(db, isolation_level=None, timeout=60, check_same_thread=False)
        self.con.execute("BEGIN EXCLUSIVE")

    def counts(self, run_id: str) -> dict[str, int]:
        """Metric points stored for the run, read through the lock holder's own connection."""
        rows = self.con.execute("SELECT key, COUNT(*) FROM metrics WHERE run_uuid = ? GROUP BY key", (run_id,))
        return dict(rows.fetchall())

    def release(self) -> None:
        self.con.execute("ROLLBACK")
        self.con.close()


def _history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _writer(uri: str, run_id: str, index: int, results) -> None:
    """One "trial": 200 steps of 3 metrics into its own run through RunLogger, flushed every 20 steps so
    each process writes in ~10 separate transactions that overlap the other processes' ones."""
    try:
        from components.tracking.mlflow_store import RunLogger

        logger = RunLogger(uri, run_id, retry_initial_s=0.05, retry_max_s=1.0)
        for step in range(STEPS):
            logger.log_metrics(step, {name: index * 1000 + step + k / 4 for k, name in enumerate(NAMES)})
            if step % 20 == 19:
                logger.flush(120)
        results.put((index, logger.failed_attempts, None))
    except BaseException as exc:  # reported to the parent, then the exit code says it too
        results.put((index, -1, f"{type(exc).__name__}: {exc}"))
        raise


def _run_writers(uri: str, run_ids: list[str]) -> int:
    """8 processes from a forkserver that imported MLflow (and its SQL store) once: fresh processes with no
    state from pytest's, without paying those imports 8 times on a 2-core machine. Returns the number
    of attempts the loggers retried in total."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["components.tracking.mlflow_store", "mlflow.store.tracking.sqlalchemy_store"])
    results = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(uri, run_id, i, results)) for i, run_id in enumerate(run_ids)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    reports = [results.get(timeout=5) for _ in procs]
    errors = [r for r in reports if r[2] is not None]
    assert not errors, f"writers failed: {errors}"
    assert [p.exitcode for p in procs] == [0] * WRITERS
    return sum(r[1] for r in reports)


def _assert_every_point(client, run_ids: list[str]) -> dict[str, int]:
    totals = {}
    for name_k, name in enumerate(NAMES):
        total = 0
        for i, run_id in enumerate(run_ids):
            got = _history(client, run_id, name)
            assert got == [(step, i * 1000 + step + name_k / 4) for step in range(STEPS)], (run_id, name)
            total += len(got)
        totals[name] = total
    assert totals == {name: WRITERS * STEPS for name in NAMES}
    return totals


def _new_runs(client, experiment: str, n: int, artifact_location: str | None = None) -> list[str]:
    """Experiment and runs from the parent only (concurrent experiment creation on SQLite is a known failure)."""
    exp_id = client.create_experiment(experiment, artifact_location=artifact_location)
    return [client.create_run(exp_id, run_name=f"trial-{i}").info.run_id for i in range(n)]


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow SQLite db with its schema created once (the migrations take seconds); tests copy it."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


def _sqlite_store(empty_store: Path, where: Path) -> str:
    shutil.copyfile(empty_store, where / "mlflow.db")
    return f"sqlite:///{where / 'mlflow.db'}"


# ---------------------------------------------------------------- SQLite store unavailable during training
def test_training_goes_on_while_sqlite_store_is_locked(run_root, empty_store):
    """The store is locked by another writer for 6 s from the first checkpoint on (MLflow's sender
    waits on SQLite's busy timeout meanwhile): training keeps stepping and checkpointing, the points
    wait, and at the end every point is in MLflow and the run is FINISHED."""
    from mlflow.tracking import MlflowClient

    from components.training import checkpoint as ckpt
    from conftest import tiny_params
    from pipelines import train

    steps, log_every = 240, 2
    params = tiny_params(run_root, model=SMALL_MODEL, train={
        "epochs": 10, "max_steps": steps, "batch_size": 16, "log_every": log_every, "checkpoint_every": 10,
        "keep_checkpoints": 1000})
    assert _sqlite_store(empty_store, run_root) == params.tracking.uri
    seen: dict = {}

    def outage():
        _wait_for(lambda: _checkpoints(run_root), 120, "the first checkpoint")
        lock = SqliteLock(run_root / "mlflow.db")
        # read once the lock is held: every point logged from the next checkpoint on cannot have gone out
        # (points logged between this checkpoint and the lock may have, on a fast machine)
        seen["start_step"] = int(_checkpoints(run_root)[-1].name.split("_")[1]) + params.train.checkpoint_every
        time.sleep(6.0)
        last = ckpt.load(_checkpoints(run_root)[-1])
        seen["end_step"], seen["end_pending"] = last["step"], len(last["pending_metrics"])
        lock.release()

    locker = threading.Thread(target=outage, daemon=True)
    locker.start()
    summary = train.run(params, run_root, use_ray=False)
    locker.join(30)

    assert seen["end_step"] > seen["start_step"], seen  # training advanced during the outage,
    # and nothing logged meanwhile got through: all of it was buffered (and carried by the checkpoint)
    assert seen["end_pending"] >= 7 * ((seen["end_step"] - seen["start_step"]) // log_every), seen
    client = MlflowClient(params.tracking.uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    expected_steps = list(range(log_every, steps + 1, log_every))
    for key in ("d_loss", "g_loss", "d_real", "d_fake", "d_penalty", "images_per_s", "epoch"):
        assert [s for s, _ in _history(client, run.info.run_id, key)] == expected_steps, key
    assert run.data.metrics["epoch"] == pytest.approx(steps / (1618 // 16))


def test_store_down_at_the_end_fails_loudly_and_a_rerun_relogs_what_the_checkpoint_kept(run_root, empty_store):
    """Still locked when training ends: the stage fails naming the unsent points (never drops them
    silently); the final checkpoint holds exactly those points, and a rerun once the store is back
    resumes from it and logs them, each point once."""
    from mlflow.tracking import MlflowClient

    from components.training import checkpoint as ckpt
    from conftest import tiny_params
    from pipelines import train

    steps, log_every = 40, 2
    params = tiny_params(run_root, model=SMALL_MODEL, tracking={"flush_timeout_s": 1.0}, train={
        "epochs": 2, "max_steps": steps, "batch_size": 16, "log_every": log_every, "checkpoint_every": 4})
    assert _sqlite_store(empty_store, run_root) == params.tracking.uri
    held: dict = {}

    def outage():
        _wait_for(lambda: _checkpoints(run_root), 120, "the first checkpoint")
        held["lock"] = SqliteLock(run_root / "mlflow.db")

    locker = threading.Thread(target=outage, daemon=True)
    locker.start()
    started = time.monotonic()
    with pytest.raises(train.TrainError) as failure:
        train.run(params, run_root, use_ray=False)
    failed_after = time.monotonic() - started
    locker.join(5)
    lock = held["lock"]
    message = str(failure.value)
    m = re.search(r"(\d+) metric points and (\d+) images not sent to MLflow run (\w+) at (\S+): the store was "
                  r"still unavailable after flush_timeout_s = 1 s; last error: (.*database is locked|none yet, the "
                  r"current attempt has been waiting)", message)
    assert m, message
    unsent, images, run_id, uri = int(m[1]), int(m[2]), m[3], m[4]
    assert uri == params.tracking.uri
    stored = lock.counts(run_id)  # what reached the store before the lock, read under the lock
    lock.release()
    n_keys, per_key = 7, steps // log_every  # d_loss g_loss d_real d_fake d_penalty images_per_s epoch
    assert unsent > 0 and unsent + sum(stored.values()) == n_keys * per_key, (unsent, stored)
    assert images == 1  # the final sample grid
    final = ckpt.load(_checkpoints(run_root)[-1])
    assert final["step"] == steps
    assert len(final["pending_metrics"]) == unsent and len(final["pending_images"]) == images
    assert failed_after < 60

    # Store back: resume at the last step and re-log. A longer flush timeout than the outage's 1 s: on a loaded
    # machine the released SQLite lock can take a moment to be seen, and this half tests the re-log, not the timeout.
    resumed = params.with_overrides({"tracking.flush_timeout_s": 60.0})
    summary = train.run(resumed, run_root, use_ray=False)
    client = MlflowClient(params.tracking.uri)
    assert summary["mlflow_run_id"] == run_id
    assert client.get_run(run_id).info.status == "FINISHED"
    for key in ("d_loss", "g_loss", "d_real", "d_fake", "d_penalty", "images_per_s", "epoch"):
        assert [s for s, _ in _history(client, run_id, key)] == list(range(log_every, steps + 1, log_every)), key
    grids = [f.path for f in client.list_artifacts(run_id, "samples")]
    assert f"samples/epoch_0001_step_{steps:08d}.png" in grids


def test_checkpoint_carries_pending_points_and_resume_relogs_them(tmp_path, empty_store, monkeypatch):
    """Unit level: Callbacks.checkpoint puts the unsent points (plain data) and images (tensors) into the
    state, it survives torch.load(weights_only=True), and requeue() into a reachable store logs them."""
    import torch
    from mlflow.tracking import MlflowClient

    from components.tracking.mlflow_store import RunLogger, TrackingUnavailableError
    from components.training import checkpoint as ckpt
    from pipelines.ray_worker import Callbacks

    for var, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0"),
                       ("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")):
        monkeypatch.setenv(var, value)
    down_uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    down = RunLogger(down_uri, "f" * 32, retry_initial_s=0.05, retry_max_s=0.2)
    callbacks = Callbacks(down, lambda step, state, metrics: ckpt.save(state, tmp_path))
    for step in range(1, 11):
        callbacks.log(step, {"a": step / 10, "b": -float(step)})
    grid = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    callbacks.samples(10, 1, grid, ".png")
    callbacks.checkpoint(10, {"step": 10, "weights": torch.zeros(2)}, {})
    with pytest.raises(TrackingUnavailableError, match=rf"20 metric points and 1 images not sent to MLflow run f{{32}} "
                                                        rf"at {down_uri}: the store was still unavailable"):
        down.flush(0.5)
    assert down.pending() == 20 and down.failed_attempts > 0

    state = ckpt.load(tmp_path)  # weights_only=True
    assert sorted((k, s, v) for k, v, _, s in state["pending_metrics"]) == sorted(
        [("a", s, s / 10) for s in range(1, 11)] + [("b", s, -float(s)) for s in range(1, 11)])
    assert state["pending_images"][0][0] == "samples/epoch_0001_step_00000010.png"
    assert torch.equal(state["pending_images"][0][1], torch.from_numpy(grid))

    uri = _sqlite_store(empty_store, tmp_path)
    client = MlflowClient(uri)
    (run_id,) = _new_runs(client, "resume", 1, (tmp_path / "artifacts").as_uri())
    up = RunLogger(uri, run_id)
    assert up.requeue(state) == 20
    up.requeue(state)  # a second resume from the same checkpoint stores nothing twice
    up.flush(30)
    assert up.pending() == 0
    assert _history(client, run_id, "a") == [(s, s / 10) for s in range(1, 11)]
    assert _history(client, run_id, "b") == [(s, -float(s)) for s in range(1, 11)]
    assert [f.path for f in client.list_artifacts(run_id, "samples")] == ["samples/epoch_0001_step_00000010.png"]


def test_a_writer_racing_with_the_same_points_is_no_refusal_and_a_closed_logger_sends_nothing(tmp_path, empty_store):
    """Seen once in 9 runs of the test above: the failed run's sender, still retrying, stored points at the
    moment the rerun re-logged them from the checkpoint; one insert lost with "UNIQUE constraint failed" and
    the logger took it for a refusal. Now a lost race sends only what the store lacks, and train closes its
    logger when it ends, so a failed run's sender does not go on."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import BAD_REQUEST
    from mlflow.tracking import MlflowClient

    from components.tracking.mlflow_store import RunLogger

    uri = _sqlite_store(empty_store, tmp_path)
    client = MlflowClient(uri)
    (run_id,) = _new_runs(client, "race", 1, (tmp_path / "artifacts").as_uri())
    logger = RunLogger(uri, run_id)
    real, raced = logger.client.log_batch, []

    def racing(run_id, metrics=(), **kwargs):
        if metrics and not raced:  # the other writer commits 3 of these points first; MLflow's own recovery
            raced.append(len(metrics))  # then loses the insert race and maps the IntegrityError to BAD_REQUEST
            real(run_id, metrics=metrics[:3])
            raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: metrics.key, metrics.timestamp",
                                  error_code=BAD_REQUEST)
        return real(run_id, metrics=metrics, **kwargs)

    logger.client.log_batch = racing
    for step in range(1, 6):
        logger.log_metrics(step, {"a": float(step)})
    logger.flush(30)
    assert raced and logger.failed_attempts == 0
    assert _history(client, run_id, "a") == [(s, float(s)) for s in range(1, 6)]

    logger.close()
    assert not logger._thread.is_alive()
    logger.log_metrics(6, {"a": 6.0})
    time.sleep(0.5)
    assert logger.pending() == 1 and len(_history(client, run_id, "a")) == 5


# ---------------------------------------------------------------- concurrent writers
def test_concurrent_writers_sqlite_lose_nothing(tmp_path, empty_store):
    from mlflow.tracking import MlflowClient

    uri = _sqlite_store(empty_store, tmp_path)
    client = MlflowClient(uri)
    run_ids = _new_runs(client, "sweep", WRITERS, (tmp_path / "artifacts").as_uri())
    retried = _run_writers(uri, run_ids)
    totals = _assert_every_point(client, run_ids)
    print(f"SQLite: {totals} points counted; {retried} attempts retried")


# ---------------------------------------------------------------- PostgreSQL + mlflow server
class MlflowServer:
    """A real `mlflow server` on PostgreSQL; kill() takes its whole process group down (uvicorn and workers)."""

    def __init__(self, backend: str, root: Path):
        self.backend, self.root, self.port = backend, root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 300) -> float:  # under the suite's load the server has needed ~2 min
        started = time.monotonic()
        log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend,
             "--default-artifact-root", (self.root / "artifacts").as_uri(), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1"],  # one uvicorn worker (2 cores); it serves requests concurrently
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    healthy = r.status == 200
                if healthy:  # one API call loads the handlers and the store, so tests meet a warm server
                    with urllib.request.urlopen(f"{self.uri}/api/2.0/mlflow/experiments/search?max_results=1",
                                                timeout=timeout) as r:
                        r.read()
                    return time.monotonic() - started
            except OSError:
                time.sleep(0.2)
        tail = (self.root / "server.log").read_text(errors="replace")[-3000:]
        self.kill()
        pytest.fail(f"mlflow server did not become healthy on port {self.port}:\n{tail}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # our own group: the server we started and its workers
            self.proc.wait(30)
        self.proc = None
        _wait_for(lambda: refused("127.0.0.1", self.port), 30, f"port {self.port} to close")


@pytest.fixture(scope="module")
def tracking_server():
    """PostgreSQL (tests/services.py: as the postgres user when we are root) and an `mlflow server` on it;
    both torn down at the end of the module."""
    pg = PostgresServer(Path(tempfile.mkdtemp(prefix="genpipe-pg-")))
    server = None
    try:
        try:
            pg.start()
            backend = pg.create_database("mlflow")
        except ServiceError as e:
            pytest.fail(str(e))
        server = MlflowServer(backend, Path(tempfile.mkdtemp(prefix="genpipe-mlflow-server-")))
        server.start()
        yield server
    finally:
        if server is not None:
            server.kill()
            shutil.rmtree(server.root, ignore_errors=True)
        pg.stop()
        shutil.rmtree(pg.root, ignore_errors=True)


def test_concurrent_writers_postgres_server_lose_nothing(tracking_server):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_server.uri)
    run_ids = _new_runs(client, "sweep-pg", WRITERS)
    retried = _run_writers(tracking_server.uri, run_ids)
    totals = _assert_every_point(client, run_ids)
    print(f"PostgreSQL server: {totals} points counted; {retried} attempts retried")


def test_tracking_server_down_for_a_while_loses_nothing(tracking_server, monkeypatch):
    """The server is killed while a RunLogger logs steadily, stays down, is started again on the same
    port: logging never blocks, nothing is sent while it is down, and after flush every point (and the
    image logged during the outage) is there exactly once, including any whose reply the kill cut off."""
    from mlflow.tracking import MlflowClient

    from components.tracking.mlflow_store import RunLogger

    client = MlflowClient(tracking_server.uri)
    (run_id,) = _new_runs(client, "outage", 1)
    # MLflow's own HTTP retries would wait minutes; the logger's retries are what is under test
    for var, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0"),
                       ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")):
        monkeypatch.setenv(var, value)
    logger = RunLogger(tracking_server.uri, run_id, retry_initial_s=0.1, retry_max_s=1.0)
    stop, logged, slowest = threading.Event(), [0], [0.0]

    def training():
        step = 0
        while not stop.is_set():
            t = time.perf_counter()
            logger.log_metrics(step, {"loss": 1.0 / (step + 1), "step_x2": 2.0 * step})
            slowest[0] = max(slowest[0], time.perf_counter() - t)
            step += 1
            logged[0] = step
            time.sleep(0.02)

    producer = threading.Thread(target=training, daemon=True)
    producer.start()
    _wait_for(lambda: logged[0] >= 50, 30, "50 steps")
    _wait_for(lambda: len(client.get_metric_history(run_id, "loss")) >= 20, 30, "points to reach the server")
    tracking_server.kill()  # mid-logging
    down_at = logged[0]
    logger.log_image(np.full((8, 8, 3), 200, dtype=np.uint8), "samples/during_outage.png")
    time.sleep(3.0)
    logged_while_down = logged[0]
    pending_while_down = logger.pending()
    assert logged_while_down > down_at + 25  # training went on
    assert pending_while_down >= 2 * (logged_while_down - down_at) and logger.failed_attempts > 0
    restart_s = tracking_server.start()
    restarted_at = logged[0]
    _wait_for(lambda: logged[0] >= restarted_at + 20, 30, "20 more steps")  # logging goes on across the restart
    stop.set()
    producer.join(10)
    logger.flush(120)
    assert logger.pending() == 0 and logger.pending_images() == 0
    n = logged[0]
    assert n > logged_while_down
    assert _history(client, run_id, "loss") == [(s, 1.0 / (s + 1)) for s in range(n)]
    assert _history(client, run_id, "step_x2") == [(s, 2.0 * s) for s in range(n)]
    assert [f.path for f in client.list_artifacts(run_id, "samples")] == ["samples/during_outage.png"]
    assert slowest[0] < 0.5, slowest  # log_metrics only enqueues
    print(f"server outage: {n} steps × 2 metrics counted, {pending_while_down} points buffered while down, "
          f"{logger.failed_attempts} attempts retried, restart took {restart_s:.1f} s")
