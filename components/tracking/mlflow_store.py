"""Where runs go and how they are found again.

Default store: SQLite at <repo>/mlflow/mlflow.db with artifacts under <repo>/mlflow/artifacts
(MLflow 3.17 refuses the file store), <repo> being the user's repository even when a stage runs in a copy
made by `dvc exp run --temp/--queue`. A team server: set MLFLOW_TRACKING_URI.

A SQLite store is portable: copied or moved with its folder, it is relocated when it is next opened
(`relocate`; `python -m components.tracking.mlflow_store` does it by hand, e.g. before `mlflow ui`)."""
from __future__ import annotations

import collections
import contextlib
import os
import random
import sqlite3
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

RUN_NAME_TAG = "genpipe.run_name"


# `dvc exp run --temp` and `--queue` run the stages in a copy under <repo>/.dvc/tmp/exps/ (DVC's
# EXEC_TMP_DIR: exps/tmpXXXX, exps/standalone/tmpXXXX, exps/celery/tmpXXXX), deleted once the experiment ends.
DVC_EXPERIMENT_COPIES = (".dvc", "tmp", "exps")


def workspace_root(repo_root: Path) -> Path:
    """The user's repository: <repo> for a DVC experiment's temporary copy inside <repo>/.dvc/tmp/exps/
    (a store there would be deleted with the copy), else repo_root itself."""
    path = Path(repo_root).resolve()
    parts, n = path.parts, len(DVC_EXPERIMENT_COPIES)
    for i in range(1, len(parts) - n + 1):  # the outermost match: a copy made from a copy still maps home
        if parts[i:i + n] == DVC_EXPERIMENT_COPIES and (Path(*parts[:i]) / ".dvc").is_dir():
            return Path(*parts[:i])
    return path


def default_uri(repo_root: Path) -> str:
    return f"sqlite:///{workspace_root(repo_root) / 'mlflow' / 'mlflow.db'}"


class StoreUnreachable(RuntimeError):
    """A tracking server that does not answer: said at once, instead of after MLflow's minutes of retries."""


def resolve_uri(configured: str | None, repo_root: Path) -> str:
    """tracking.uri in params, else $MLFLOW_TRACKING_URI, else the embedded SQLite store. A SQLite store is
    opened where it is now: relocated if its folder was moved or copied (`relocate`)."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(repo_root)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        relocate(uri)
    require_reachable(uri)
    return uri


def require_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """One GET of an http(s) server's /health. Any HTTP answer (even 401 from a proxy) counts as reachable;
    only no answer at all is refused. MLflow's client would retry for minutes (7 retries, backoff 2)."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise StoreUnreachable(f"MLflow tracking store {uri} does not answer ({reason}, {timeout_s:g} s): start "
                               "it, or point tracking.uri / MLFLOW_TRACKING_URI at one that runs") from None


def artifact_root_for(uri: str) -> str | None:
    """A SQLite store keeps artifacts beside its db (MLflow would otherwise use ./mlruns of whatever
    directory the process runs in); a server chooses its own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None


def experiment_id(client: MlflowClient, name: str, artifact_root: str | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = f"{artifact_root}/{name}" if artifact_root else None
    return client.create_experiment(name, artifact_location=location)


# ---- a portable SQLite store ----------------------------------------------------------------------------
# MLflow records every artifact location as an absolute URI (file:///<clone>/mlflow/artifacts/...) in the
# experiments, runs, logged models and model versions of the DB. Relative ones are no way out (measured with
# MLflow 3.17): a relative experiment location is made absolute against the cwd when it is created, and a
# relative location written into the DB is resolved against the cwd of each process that uses it; Ray
# workers run in temporary directories. So the store records the root it was last opened at
# (STORE_TABLE), and an open from another place rewrites the recorded root in every location column, in
# one SQLite transaction (all or nothing, no backup needed), and prints so. A copied mlflow/ (another
# clone, `git clone` + `dvc pull`) then reads and writes its own files, never the original's.

STORE_TABLE = "genpipe_store"  # key/value rows MLflow never reads; "artifact_root": where it was last opened
# (table, column, row filter): every place MLflow 3 records an artifact location
_LOCATIONS = (("experiments", "artifact_location", ""), ("runs", "artifact_uri", ""),
              ("logged_models", "artifact_location", ""), ("model_versions", "source", ""),
              ("model_versions", "storage_location", ""),
              ("trace_tags", "value", " AND \"key\" = 'mlflow.artifactLocation'"),
              ("workspaces", "default_artifact_root", ""), ("workspaces", "trace_archival_location", ""))


class StoreMoveFailed(RuntimeError):
    """A moved store whose recorded locations could not be rewritten (a read-only file, a locked DB)."""


@dataclass(frozen=True)
class Relocated:
    db: Path
    old_roots: tuple[str, ...]  # artifact roots the store was recorded at (file URIs)
    root: str  # where its artifacts are now (file URI)
    rows: int  # locations rewritten


def _is_mlflow_db(db: Path) -> bool:
    if not db.is_file():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as con:
            return _has_table(con, "experiments")
    except sqlite3.DatabaseError:  # not a SQLite file: MLflow says so when it opens it
        return False


def _has_table(con: sqlite3.Connection, table: str) -> bool:
    return con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is not None


def _path_of(file_uri: str) -> str:
    return urllib.parse.unquote(urllib.parse.urlparse(file_uri).path)


def _recorded_root(con: sqlite3.Connection) -> str | None:
    if not _has_table(con, STORE_TABLE):
        return None
    row = con.execute(f"SELECT value FROM {STORE_TABLE} WHERE key = 'artifact_root'").fetchone()
    return row[0] if row else None


def _inferred_roots(con: sqlite3.Connection) -> set[str]:
    """A store without the record (made before genpipe kept one): the roots its experiments were created
    under as genpipe creates them, <root>/<name> (the Default experiment: <root>/<id>), <root> ending in
    /artifacts."""
    roots = set()
    for exp_id, name, location in con.execute("SELECT experiment_id, name, artifact_location FROM experiments"):
        head, _, tail = (location or "").rpartition("/")
        if head.startswith("file:///") and head.endswith("/artifacts") and tail in (name, str(exp_id)):
            roots.add(head)
    return roots


def _same_store(root: str, db: Path) -> bool:
    """The recorded root leads to this very DB file: the store reached through another path (a symlink, a
    bind mount), not a move; its recorded locations work from here as they are."""
    try:
        return os.path.samefile(Path(_path_of(root)).parent / db.name, db)
    except OSError:
        return False


def _plan(con: sqlite3.Connection, db: Path, root: str) -> tuple[str | None, set[str]]:
    """(the recorded root, the roots to rewrite)."""
    recorded = _recorded_root(con)
    old = {recorded} if recorded else _inferred_roots(con)
    return recorded, {r for r in old if r != root and not _same_store(r, db)}


def _rewrite(con: sqlite3.Connection, old: str, new: str) -> int:
    """Every recorded location equal to, or under, `old` (as a file URI or a plain path) moved under `new`."""
    rows = 0
    for a, b in ((old, new), (_path_of(old), _path_of(new))):
        for table, column, where in _LOCATIONS:
            if not _has_table(con, table) or column not in {c[1] for c in con.execute(f"PRAGMA table_info({table})")}:
                continue  # an older schema
            rows += con.execute(
                f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE substr({column}, 1, ?) = ? "
                f"AND substr({column}, ?, 1) IN ('', '/'){where}", (b, len(a) + 1, len(a), a, len(a) + 1)).rowcount
    return rows


def _adopt_default_experiment(con: sqlite3.Connection, root: str) -> int:
    """MLflow creates the Default experiment (id 0) at ./mlruns/0 of whichever directory first opened the store,
    outside it; while it holds no runs and no models, it moves to <root>/0 and so travels with the store."""
    empty = " AND ".join(f"NOT EXISTS (SELECT 1 FROM {t} WHERE experiment_id = 0)"
                         for t in ("runs", "logged_models") if _has_table(con, t))
    return con.execute(f"UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0 "
                       f"AND artifact_location != ? AND {empty or '1'}", (f"{root}/0", f"{root}/0")).rowcount


def relocate(uri: str) -> Relocated | None:
    """Open a SQLite store where it is now: when its recorded artifact root is another folder (the store's
    folder was moved or copied), rewrite every recorded location under that root to this folder's
    artifacts/, in one transaction, and print what moved. None when there was nothing to move (in place,
    the same file through another path, not a SQLite store, not created yet).

    Safe to run at once from several processes (stages, Ray drivers): the rewrite holds SQLite's write
    lock (BEGIN IMMEDIATE) and plans again under it, so the second one finds the store in place.
    An open that finds nothing to do takes no lock."""
    if not uri.startswith("sqlite:///"):
        return None  # a tracking server keeps its own locations
    db = Path(uri.removeprefix("sqlite:///").partition("?")[0]).resolve()  # relative: from the cwd, as MLflow reads it
    if not _is_mlflow_db(db):
        return None
    root = (db.parent / "artifacts").as_uri()
    with contextlib.closing(sqlite3.connect(db, timeout=60, isolation_level=None)) as con:
        recorded, old = _plan(con, db, root)
        if recorded is not None and not old:
            return None  # in place (or reached through another path)
        rows = 0
        try:
            con.execute("BEGIN IMMEDIATE")
            recorded, old = _plan(con, db, root)  # again under the lock: a concurrent open may have done it
            for r in sorted(old):
                rows += _rewrite(con, r, root)
            if recorded is None:  # first seen by genpipe: an empty Default experiment joins the store's artifacts
                rows += _adopt_default_experiment(con, root)
            if recorded is None or old:
                con.execute(f"CREATE TABLE IF NOT EXISTS {STORE_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                con.execute(f"INSERT OR REPLACE INTO {STORE_TABLE} VALUES ('artifact_root', ?)", (root,))
            con.execute("COMMIT")
        except sqlite3.Error as e:
            if con.in_transaction:
                con.execute("ROLLBACK")
            if not old:
                return None  # only the record could not be written (a read-only store): nothing is wrong
            raise StoreMoveFailed(
                f"MLflow store {db} was moved from {', '.join(sorted(_path_of(r) for r in old))}, and its artifact "
                f"locations could not be rewritten ({e}); nothing was changed. Make it writable, then run "
                f"`python -m components.tracking.mlflow_store {db}`") from None
    if not old:
        return None
    from mlflow.tracking._tracking_service import utils as tracking_utils

    # MLflow keeps each run's artifact repository per process, by run id whatever the store: a copy's runs
    # have the original's ids, and a repository made before this rewrite points at the old folder
    getattr(tracking_utils, "_artifact_repos_cache", {}).clear()
    moved = Relocated(db, tuple(sorted(old)), root, rows)
    print(f"MLflow store {db} was moved here from {', '.join(_path_of(r) for r in moved.old_roots)}: "
          f"{rows} recorded artifact locations now point under {_path_of(root)} "
          f"(rewritten in one transaction)", flush=True)
    return moved


def recorded_uri(recorded: str, configured: str | None, repo_root: Path) -> str:
    """The store a stage output names (train's summary records its tracking URI), as this checkout reaches
    it. A summary written in another checkout (it came with `dvc pull` or a copy of data/ and mlflow/)
    names that checkout's embedded store; while this checkout uses its own embedded store too, that is the
    store meant. A SQLite store is opened where it is now (`relocate`); any other URI stays as recorded.
    (`mlflow.set_tracking_uri` also sets $MLFLOW_TRACKING_URI: what counts is the store it names.)"""
    here = default_uri(repo_root)
    embedded = recorded.startswith("sqlite:///") and Path(recorded.removeprefix("sqlite:///")).parts[-2:] == (
        "mlflow", "mlflow.db")
    if embedded and (configured or os.environ.get("MLFLOW_TRACKING_URI") or here) == here:
        recorded = here
    relocate(recorded)
    return recorded


def find_run(client: MlflowClient, exp_id: str, run_name: str):
    """Latest MLflow run that trained this genpipe run name (so a resume continues it)."""
    runs = client.search_runs([exp_id], filter_string=f"tags.`{RUN_NAME_TAG}` = '{run_name}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


class TrackingUnavailableError(RuntimeError):
    """Points a RunLogger could not deliver by its flush deadline (or that the store refused)."""

    def __init__(self, message: str, *, unsent_points: int, unsent_images: int, run_id: str, uri: str,
                 last_error: BaseException | None):
        super().__init__(message)
        self.unsent_points, self.unsent_images = unsent_points, unsent_images
        self.run_id, self.uri, self.last_error = run_id, uri, last_error


# MLflow error codes that no retry will change (a deleted run, a refused value, no permission):
# the logger stops at once and flush() reports them instead of waiting for its deadline
_PERMANENT = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "INVALID_STATE", "BAD_REQUEST",
              "PERMISSION_DENIED", "UNAUTHENTICATED", "RESOURCE_ALREADY_EXISTS"}
_MAX_BATCH = 1000  # MLflow's MAX_METRICS_PER_BATCH


def _is_duplicate(exc: BaseException) -> bool:
    """The store's primary key refused a point it already holds (SQLite's or PostgreSQL's wording)."""
    text = str(exc).lower()
    return "unique constraint" in text or "duplicate key" in text


def _is_permanent(exc: BaseException) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code in _PERMANENT


class RunLogger:
    """Metrics and images into one existing run; used by rank 0 only (one writer per run).

    Training only enqueues: a daemon thread sends the items in order, coalescing metric batches, and
    retries with capped exponential backoff while the store is unavailable (a SQLite file locked by
    another writer, a tracking server that is down or restarting). Nothing is dropped: `flush` waits
    until everything is sent and raises `TrackingUnavailableError` (naming what is unsent) at its
    deadline; `pending_state()` is what a checkpoint carries so a crash loses nothing either.
    Each point keeps the timestamp it was logged with, so a re-send after a lost reply (or after a
    resume) is deduplicated by the store's primary key rather than stored twice."""

    def __init__(self, uri: str, run_id: str, *, retry_initial_s: float = 0.5, retry_max_s: float = 10.0):
        self.client = MlflowClient(uri)
        self.uri, self.run_id = uri, run_id
        self.retry_initial_s, self.retry_max_s = retry_initial_s, retry_max_s
        self._queue: collections.deque = collections.deque()  # ("metrics", [Metric]) | ("png", file, array) | ("txt", file, str) | ("tags", [RunTag])
        self._points = 0  # metric points in the queue (including the ones being sent)
        self._cond = threading.Condition()
        self._wake = threading.Event()  # cuts a backoff short (flush)
        self._last_error: BaseException | None = None
        self._fatal: BaseException | None = None
        self._failures = 0  # failed attempts of the current outage
        self.failed_attempts = 0  # all failed attempts so far (each one retried)
        self._attempt_since: float | None = None  # monotonic start of the send in progress
        self._closed = False
        self._thread = threading.Thread(target=self._send_loop, name=f"mlflow-logger-{run_id[:8]}", daemon=True)
        self._thread.start()

    # ---- what training calls (never blocks on the store) ----
    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        ts = int(time.time() * 1000)
        self._put(("metrics", [Metric(k, float(v), ts, int(step)) for k, v in metrics.items()]))

    def log_image(self, image: np.ndarray, artifact_file: str) -> None:
        self._put(("png", artifact_file, np.array(image, copy=True)))

    def log_preview(self, preview, artifact_file: str) -> None:
        """A training preview, as its file's suffix says: sentences (.txt) or a picture."""
        (self.log_text if artifact_file.endswith(".txt") else self.log_image)(preview, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        """A text artifact (a text model's sample sentences), queued and sent like the images."""
        self._put(("txt", artifact_file, str(text)))

    def set_tag(self, key: str, value: str) -> None:
        self._put(("tags", [RunTag(key, str(value))]))

    def _put(self, item: tuple) -> None:
        with self._cond:
            self._queue.append(item)
            if item[0] == "metrics":
                self._points += len(item[1])
            self._cond.notify_all()

    def pending(self) -> int:
        """Metric points not yet confirmed by the store."""
        with self._cond:
            return self._points

    def pending_images(self) -> int:
        with self._cond:
            return sum(1 for item in self._queue if item[0] in ("png", "txt"))

    def pending_state(self) -> dict:
        """Everything unsent as plain data and tensors (a checkpoint is loaded with weights_only=True):
        {"pending_metrics": [[key, value, timestamp_ms, step], ...], "pending_images": [[artifact_file, uint8 tensor], ...]}."""
        import torch

        with self._cond:
            items = list(self._queue)
        return {"pending_metrics": [[m.key, float(m.value), int(m.timestamp), int(m.step)]
                                    for item in items if item[0] == "metrics" for m in item[1]],
                "pending_images": [[item[1], torch.from_numpy(np.ascontiguousarray(item[2]))]
                                   for item in items if item[0] == "png"],
                "pending_texts": [[item[1], item[2]] for item in items if item[0] == "txt"]}

    def requeue(self, state: dict) -> int:
        """Enqueue what a checkpoint carried (`pending_state()`); returns the number of metric points.
        Points the store already holds are deduplicated there (same key, step, value, timestamp)."""
        rows = state.get("pending_metrics") or []
        if rows:
            self._put(("metrics", [Metric(str(k), float(v), int(ts), int(s)) for k, v, ts, s in rows]))
        for artifact_file, image in state.get("pending_images") or []:
            self._put(("png", str(artifact_file), np.asarray(image)))
        for artifact_file, text in state.get("pending_texts") or []:
            self._put(("txt", str(artifact_file), str(text)))
        return len(rows)

    def flush(self, timeout_s: float) -> None:
        """Wait until everything is sent; raise TrackingUnavailableError if it is not within timeout_s
        (or the store refused an item for good). Nothing is dropped: the queue stays as it is."""
        deadline = time.monotonic() + timeout_s
        self._wake.set()  # retry now rather than at the end of a backoff
        with self._cond:
            while self._queue and self._fatal is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 1.0))
            if not self._queue:
                return
            points, images, err = self._points, sum(1 for i in self._queue if i[0] in ("png", "txt")), self._fatal or self._last_error
            since = self._attempt_since
        if self._fatal is not None:
            why = f"the store refused them: {err}"
        else:
            why = f"the store was still unavailable after flush_timeout_s = {timeout_s:g} s; last error: " + (
                f"{type(err).__name__}: {err}" if err is not None else
                f"none yet, the current attempt has been waiting {time.monotonic() - (since or time.monotonic()):.1f} s")
        raise TrackingUnavailableError(
            f"{points} metric points and {images} images not sent to MLflow run {self.run_id} "
            f"at {self.uri}: {why}", unsent_points=points, unsent_images=images, run_id=self.run_id, uri=self.uri,
            last_error=err)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop sending; what is unsent stays unsent (the last checkpoint carries it). A failed run's sender
        must not go on re-sending the points that the rerun re-logs from that checkpoint."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._wake.set()
        self._thread.join(timeout_s)

    # ---- the sender thread ----
    def _next_send(self) -> tuple[int, tuple]:
        """(items taken from the head, what to send): consecutive metric items coalesce up to MLflow's
        batch limit; an image goes alone."""
        head = self._queue[0]
        if head[0] != "metrics":
            return 1, head
        metrics, n = [], 0
        for item in self._queue:
            if item[0] != "metrics" or (metrics and len(metrics) + len(item[1]) > _MAX_BATCH):
                break
            metrics.extend(item[1])
            n += 1
        return n, ("metrics", metrics)

    def _send(self, what: tuple) -> None:
        if what[0] == "png":
            self.client.log_image(self.run_id, what[2], artifact_file=what[1])
            return
        if what[0] == "txt":
            self.client.log_text(self.run_id, what[2], artifact_file=what[1])
            return
        if what[0] == "tags":
            self.client.log_batch(self.run_id, tags=what[1])
            return
        for i in range(0, len(what[1]), _MAX_BATCH):  # one item alone may exceed the limit
            chunk = what[1][i:i + _MAX_BATCH]
            try:
                self.client.log_batch(self.run_id, metrics=chunk)
            except Exception as exc:
                if not _is_duplicate(exc):
                    raise
                # Another writer stored some of these points at the same moment (MLflow deduplicates a re-send,
                # but not one racing it): send only what the store does not hold yet.
                stored = {(m.key, m.timestamp, m.step, m.value) for key in {m.key for m in chunk}
                          for m in self.client.get_metric_history(self.run_id, key)}
                rest = [m for m in chunk if (m.key, m.timestamp, m.step, m.value) not in stored]
                if rest:
                    self.client.log_batch(self.run_id, metrics=rest)

    def _send_loop(self) -> None:
        delay = self.retry_initial_s
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                n, what = self._next_send()
                self._attempt_since = time.monotonic()
            try:
                self._send(what)
            except Exception as exc:  # noqa: BLE001 - any store failure: keep the items, retry
                with self._cond:
                    self._attempt_since = None
                    self._last_error = exc
                    self._failures += 1
                    self.failed_attempts += 1
                    if _is_permanent(exc):
                        self._fatal = exc
                        self._cond.notify_all()
                    points = self._points
                if self._fatal is not None:
                    print(f"MLflow refused an item for run {self.run_id} at {self.uri}: {exc}; "
                          f"{points} metric points kept unsent (flush reports them)", file=sys.stderr, flush=True)
                    return
                if self._failures == 1:
                    print(f"MLflow store at {self.uri} unavailable ({type(exc).__name__}: {str(exc)[:300]}); "
                          f"training goes on, {points} metric points buffered and retried", file=sys.stderr, flush=True)
                self._wake.wait(delay * random.uniform(0.8, 1.2))
                self._wake.clear()
                delay = min(delay * 2, self.retry_max_s)
                continue
            with self._cond:
                self._attempt_since = None
                for _ in range(n):
                    item = self._queue.popleft()
                    if item[0] == "metrics":
                        self._points -= len(item[1])
                if self._failures:
                    print(f"MLflow store at {self.uri} reachable again after {self._failures} failed attempts; "
                          f"sending the buffered points", file=sys.stderr, flush=True)
                self._failures, self._last_error, delay = 0, None, self.retry_initial_s
                self._cond.notify_all()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m components.tracking.mlflow_store",
        description="Open a SQLite MLflow store where it is now: after its folder was moved or copied, rewrite "
                    "its recorded artifact locations to this folder (what every genpipe stage does when it opens "
                    "the store). Run it before `mlflow ui` or `mlflow models serve` on a moved store.")
    parser.add_argument("store", nargs="?", help="the DB file or its sqlite:/// URI (default: mlflow/mlflow.db "
                                                 "of the repository in the current directory)")
    args = parser.parse_args(argv)
    store = args.store or str(workspace_root(Path.cwd()) / "mlflow" / "mlflow.db")
    db = Path(store.removeprefix("sqlite:///")).resolve()
    if not _is_mlflow_db(db):
        print(f"{db}: no MLflow store there", file=sys.stderr)
        return 2
    if relocate(f"sqlite:///{db}") is None:
        print(f"MLflow store {db} is in place: artifacts under {db.parent / 'artifacts'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
