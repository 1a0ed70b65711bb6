"""A copied or moved mlflow/ folder keeps working: its model files are read, and new artifacts written, under
the folder where it is now, never at the clone it came from (components/tracking/mlflow_store.relocate)."""
from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import threading
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from components.tracking import mlflow_store
from components.tracking.logged_model import log_generator
from components.training import checkpoint as ckpt
from components.tracking.names import SUMMARY_FILE
from conftest import exported, tiny_params
from pipelines import links

EXPERIMENT, MODEL = "portable", "portable-model"


@pytest.fixture(autouse=True)
def _embedded(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> tuple[Path, str]:
    """(a repository whose embedded store holds a finished run, its logged generator and registered version 1,
    that run's id). Tests copy its mlflow/ folder and leave it as it is."""
    repo = tmp_path_factory.mktemp("origin")
    with pytest.MonkeyPatch.context() as mp:  # mlflow.set_tracking_uri sets $MLFLOW_TRACKING_URI: restored after
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        uri = mlflow_store.resolve_uri(None, repo)
        family, g, spec = exported("dcgan", conditioning="none")  # untrained: only its files matter here
        (repo / "gen").mkdir()
        ckpt.write_generator({"generator": g.state_dict(), "step": 0, "epoch": 0, "meta": spec}, repo / "gen")
        exp_id = mlflow_store.experiment_id(MlflowClient(uri), EXPERIMENT, mlflow_store.artifact_root_for(uri))
        mlflow.set_tracking_uri(uri)
        with mlflow.start_run(experiment_id=exp_id) as run:
            info = log_generator(repo / "gen", 16)
        assert str(mlflow.register_model(info.model_uri, MODEL).version) == "1"
        assert mlflow_store.resolve_uri(None, repo) == uri  # the next stage's open records where the store is
    return repo, run.info.run_id


def _store_uri(repo: Path) -> str:
    return f"sqlite:///{(repo / 'mlflow' / 'mlflow.db').resolve()}"


def _cells_mentioning(db: Path, text: str) -> list[tuple[str, str, str]]:
    """(table, column, value) of every cell of the DB that contains `text`."""
    con = sqlite3.connect(db)
    found = []
    for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        for column in [c[1] for c in con.execute(f'PRAGMA table_info("{table}")')]:
            found += [(table, column, v) for (v,) in con.execute(
                f'SELECT "{column}" FROM "{table}" WHERE instr(CAST("{column}" AS TEXT), ?) > 0', (text,))]
    con.close()
    return found


def _tree_digest(folder: Path) -> str:
    return hashlib.sha256(b"".join(str(p.relative_to(folder)).encode() + p.read_bytes()
                                   for p in sorted(folder.rglob("*")) if p.is_file())).hexdigest()


def test_a_moved_store_loads_its_model_and_writes_under_its_new_folder(origin, tmp_path, capsys):
    repo, run_id = origin
    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(repo / "mlflow", old / "mlflow")
    mlflow_store.resolve_uri(None, old)  # the store as the old clone last opened it
    new.mkdir()
    shutil.move(old / "mlflow", new / "mlflow")
    shutil.rmtree(old)  # anything still aimed at the old clone would recreate it
    capsys.readouterr()

    uri = mlflow_store.resolve_uri(None, new)
    assert f"was moved here from {old / 'mlflow' / 'artifacts'}" in capsys.readouterr().out
    mlflow.set_tracking_uri(uri)
    images = mlflow.pyfunc.load_model(f"models:/{MODEL}/1").predict({"num_samples": 2, "seed": 0})
    assert images.shape == (2, 1, 8, 8)
    client = MlflowClient(uri)
    client.log_text(run_id, "after the move", "after.txt")
    later = client.create_run(client.get_experiment_by_name(EXPERIMENT).experiment_id).info.run_id
    client.log_text(later, "a new run", "new.txt")

    artifacts = new / "mlflow" / "artifacts" / EXPERIMENT
    assert (artifacts / run_id / "artifacts" / "after.txt").read_text() == "after the move"
    assert (artifacts / later / "artifacts" / "new.txt").read_text() == "a new run"
    assert not old.exists()
    assert _cells_mentioning(new / "mlflow" / "mlflow.db", str(old)) == []
    assert mlflow_store.relocate(uri) is None  # opened again: in place, nothing rewritten
    # train's summary, written in the old clone, names this clone's store to evaluate and promote
    params = tiny_params(new, tracking={"uri": None})
    (new / "train").mkdir()
    (new / "train" / SUMMARY_FILE).write_text(json.dumps({"tracking_uri": _store_uri(old), "mlflow_run_id": run_id}))
    assert links.read_train_summary(params, new)["tracking_uri"] == uri


def test_concurrent_opens_of_a_copy_relocate_it_once_and_leave_the_original_alone(origin, tmp_path):
    repo, run_id = origin
    before = _tree_digest(repo / "mlflow")
    link = tmp_path / "link"
    link.symlink_to(repo, target_is_directory=True)  # the same store through another path: not a move
    assert mlflow_store.relocate(_store_uri(link)) is None
    clone = tmp_path / "clone"
    shutil.copytree(repo / "mlflow", clone / "mlflow")  # the original clone stays, with its own store

    uri, barrier, results = _store_uri(clone), threading.Barrier(4), []

    def open_store():
        barrier.wait()
        results.append(mlflow_store.relocate(uri))

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    moved = [r for r in results if r is not None]
    assert len(results) == 4 and len(moved) == 1, results
    # the Default and genpipe's experiment, the run, the logged model and its version's storage location
    assert moved[0].old_roots == ((repo / "mlflow" / "artifacts").resolve().as_uri(),) and moved[0].rows == 5

    MlflowClient(uri).log_text(run_id, "in the clone", "clone.txt")
    mlflow.set_tracking_uri(uri)
    assert Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/clone.txt", dst_path=str(tmp_path))).read_text() \
        == "in the clone"
    assert (clone / "mlflow" / "artifacts" / EXPERIMENT / run_id / "artifacts" / "clone.txt").is_file()
    assert _tree_digest(repo / "mlflow") == before  # the original's DB and files untouched
    assert _cells_mentioning(clone / "mlflow" / "mlflow.db", str(repo)) == []


def test_a_store_made_before_the_record_is_relocated_by_its_experiments_locations(origin, tmp_path):
    """Stores made before genpipe recorded its root: the root is read off genpipe's experiment locations, and
    MLflow's Default experiment (./mlruns/0 of whichever cwd made it) joins the store while it is empty."""
    repo, run_id = origin
    copy = tmp_path / "copy"
    shutil.copytree(repo / "mlflow", copy / "mlflow")
    db = copy / "mlflow" / "mlflow.db"
    with sqlite3.connect(db) as con:
        con.execute(f"DROP TABLE {mlflow_store.STORE_TABLE}")
        con.execute("UPDATE experiments SET artifact_location = '/elsewhere/mlruns/0' WHERE experiment_id = 0")
    moved = mlflow_store.relocate(_store_uri(copy))
    assert moved is not None and moved.rows == 5
    client = MlflowClient(_store_uri(copy))
    root = (copy / "mlflow" / "artifacts").resolve().as_uri()
    assert client.get_experiment("0").artifact_location == f"{root}/0"
    assert client.get_run(run_id).info.artifact_uri == f"{root}/{EXPERIMENT}/{run_id}/artifacts"
    assert _cells_mentioning(db, str(repo)) == []


def test_a_summary_from_another_checkout_names_this_checkouts_embedded_store(tmp_path, monkeypatch):
    here = tmp_path / "here"
    elsewhere = "sqlite:////other/clone/mlflow/mlflow.db"
    assert mlflow_store.recorded_uri(elsewhere, None, here) == _store_uri(here)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _store_uri(here))  # what mlflow.set_tracking_uri(<this store>) sets
    assert mlflow_store.recorded_uri(elsewhere, None, here) == _store_uri(here)
    assert mlflow_store.recorded_uri(elsewhere, "sqlite:////team/mlflow.db", here) == elsewhere  # configured
    assert mlflow_store.recorded_uri("sqlite:////team/runs.db", None, here) == "sqlite:////team/runs.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert mlflow_store.recorded_uri(elsewhere, None, here) == elsewhere
    assert mlflow_store.recorded_uri("http://tracking:5000", None, here) == "http://tracking:5000"
