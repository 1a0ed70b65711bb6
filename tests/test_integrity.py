"""Integrity of checkpoints, exported generators and the registry: a truncated or modified file is
refused with an error that names it; resume skips a corrupt newest checkpoint loudly; a candidate
whose logged-model files are missing is never registered; promote run twice moves nothing twice."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from components.tracking.names import MODEL_URI_TAG, SUMMARY_FILE
from components.tracking.promotion import PromoteError, promotion_metric
from components.training import checkpoint as ckpt
from components.training.loop import Worker, train_model
from conftest import tiny_params
from pipelines import evaluate, evaluator, promote, train


class _Keep:
    def __init__(self):
        self.states = []

    def log(self, step, metrics): ...
    def samples(self, step, epoch, image, suffix): ...

    def checkpoint(self, step, state, metrics):
        self.states.append(state)


@pytest.fixture(scope="module")
def states(digits_root):
    """Real training states at steps 3 and 6 of the tiny DCGAN (no Ray, no MLflow)."""
    params = tiny_params(digits_root)
    rec = _Keep()
    train_model(params, params.prepared_path(digits_root), Worker(), rec)
    return rec.states


def _flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


# ---- checkpoints -------------------------------------------------------------------------------

def test_valid_checkpoint_records_its_hash_and_loads(states, tmp_path):
    ckpt.save(states[-1], tmp_path)
    record = json.loads((tmp_path / ckpt.INTEGRITY_FILE).read_text())
    assert record == {"file": ckpt.STATE_FILE, "sha256": ckpt.file_digest(tmp_path / ckpt.STATE_FILE)[0],
                      "size": (tmp_path / ckpt.STATE_FILE).stat().st_size}
    assert ckpt.verify(tmp_path) is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a verified load warns about nothing
        state = ckpt.load(tmp_path)
    assert state["step"] == 6
    assert torch.equal(next(iter(state["generator"].values())), next(iter(states[-1]["generator"].values())))


def test_truncated_checkpoint_is_refused(states, tmp_path):
    path = ckpt.save(states[-1], tmp_path)
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[: size // 2])
    with pytest.raises(ckpt.CheckpointIntegrityError) as e:
        ckpt.load(tmp_path)
    msg = str(e.value)
    assert isinstance(e.value, ValueError)
    assert str(path) in msg and "truncated" in msg and f"expected {size} bytes" in msg and f"found {size // 2} bytes" in msg
    assert f"delete the checkpoint folder {tmp_path}" in msg


def test_one_flipped_byte_is_refused_and_the_message_names_the_file(states, tmp_path):
    path = ckpt.save(states[-1], tmp_path)
    expected = ckpt.file_digest(path)[0]
    _flip_byte(path)
    actual = ckpt.file_digest(path)[0]
    with pytest.raises(ckpt.CheckpointIntegrityError) as e:
        ckpt.load(tmp_path)
    msg = str(e.value)
    assert str(path) in msg and "modified" in msg and expected in msg and actual in msg


def test_missing_state_beside_a_hash_record_is_refused(states, tmp_path):
    ckpt.save(states[-1], tmp_path)
    (tmp_path / ckpt.STATE_FILE).unlink()
    with pytest.raises(ckpt.CheckpointIntegrityError, match="is missing"):
        ckpt.load(tmp_path)


def test_checkpoint_without_a_hash_record_loads_with_a_warning_unless_unreadable(states, tmp_path):
    path = ckpt.save(states[-1], tmp_path)
    (tmp_path / ckpt.INTEGRITY_FILE).unlink()  # as written by an earlier genpipe
    assert ckpt.verify(tmp_path) is False
    with pytest.warns(ckpt.UnverifiedCheckpointWarning, match="no hash record"):
        assert ckpt.load(tmp_path)["step"] == 6
    original = path.read_bytes()
    for cut in (1000, len(original) // 2):  # a truncated one of those is still refused clearly (torch fails
        path.write_bytes(original[:cut])    # differently on each: RuntimeError, OSError)
        with pytest.warns(ckpt.UnverifiedCheckpointWarning), pytest.raises(ckpt.CheckpointIntegrityError) as e:
            ckpt.load(tmp_path)
        assert str(path) in str(e.value) and "cannot be read" in str(e.value)


def test_resume_skips_a_corrupt_newest_checkpoint_loudly(states, tmp_path, capsys):
    store = ckpt.LocalCheckpoints(tmp_path / "run", keep=2)
    older, newest = store.save(states[0]), store.save(states[1])
    assert store.latest() == newest
    _flip_byte(newest / ckpt.STATE_FILE)
    assert store.latest() == older
    out = capsys.readouterr().out
    assert f"skipping {newest.name}" in out and "modified" in out
    assert ckpt.load(store.latest())["step"] == 3
    with pytest.raises(ckpt.CheckpointIntegrityError, match=newest.name):  # named explicitly: still refused
        ckpt.load(newest)
    (older / ckpt.STATE_FILE).write_bytes(b"")  # nothing intact left: refuse rather than start over silently
    with pytest.raises(ckpt.CheckpointIntegrityError, match="every checkpoint") as e:
        store.latest()
    assert older.name in str(e.value) and newest.name in str(e.value)
    store.save(states[1])  # a new save at the corrupt step replaces it
    assert store.latest() == newest and ckpt.load(newest)["step"] == 6


def test_in_process_train_resumes_from_the_older_checkpoint(run_root, capsys):
    params = tiny_params(run_root, train={"max_steps": 6})
    summary = train.run(params, run_root, use_ray=False)
    store = ckpt.LocalCheckpoints(run_root / "checkpoints" / summary["run_name"], keep=2)
    newest = store.latest()
    assert newest.name.endswith("6")
    _flip_byte(newest / ckpt.STATE_FILE)
    # an interrupted run (a FINISHED one is not retrained: tests/test_tracking_records.py)
    MlflowClient(params.tracking.uri).set_terminated(summary["mlflow_run_id"], "KILLED")
    capsys.readouterr()
    summary = train.run(params, run_root, use_ray=False)
    out = capsys.readouterr().out
    assert f"skipping {newest.name}" in out and "resuming from checkpoint at step 3" in out
    assert summary["steps"] == 6 and ckpt.load(store.latest())["step"] == 6  # retrained 3 → 6, rewritten intact


# ---- exported generator ------------------------------------------------------------------------

def test_exported_generator_records_and_checks_its_weights_hash(states, tmp_path):
    ckpt.write_generator(states[-1], tmp_path)
    weights = tmp_path / ckpt.GENERATOR_WEIGHTS
    spec = json.loads((tmp_path / ckpt.GENERATOR_SPEC).read_text())
    assert spec[ckpt.WEIGHTS_KEY] == {"file": ckpt.GENERATOR_WEIGHTS, "sha256": ckpt.file_digest(weights)[0],
                                      "size": weights.stat().st_size}
    g, _ = ckpt.load_generator(tmp_path)
    assert sum(p.numel() for p in g.parameters()) > 0
    _flip_byte(weights, offset=weights.stat().st_size - 3)  # inside a tensor: safetensors alone would not notice
    with pytest.raises(ckpt.CheckpointIntegrityError) as e:
        ckpt.load_generator(tmp_path)
    assert str(weights) in str(e.value) and "modified" in str(e.value) and spec["weights"]["sha256"] in str(e.value)
    weights.unlink()
    with pytest.raises(ckpt.CheckpointIntegrityError, match="is missing"):
        ckpt.load_generator(tmp_path)


def test_exported_generator_without_a_hash_loads_with_a_warning(states, tmp_path):
    ckpt.write_generator(states[-1], tmp_path)
    spec_path = tmp_path / ckpt.GENERATOR_SPEC
    spec = json.loads(spec_path.read_text())
    del spec[ckpt.WEIGHTS_KEY]
    spec_path.write_text(json.dumps(spec))
    with pytest.warns(ckpt.UnverifiedCheckpointWarning, match="records no hash"):
        ckpt.load_generator(tmp_path)


# ---- registry ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def evaluator_root(tmp_path_factory, digits_root):
    root = tmp_path_factory.mktemp("integrity-evaluator")
    (root / "prepared").symlink_to(digits_root / "prepared")
    evaluator.run(_params(root, root), root)
    return root


def _params(root, evaluator_root, tag: str = "", seed: int = 0):
    return tiny_params(root, seed=seed, train={"output_dir": str(root / f"train{tag}"), "max_steps": 3},
                       evaluator={"epochs": 2, "output_dir": str(evaluator_root / "evaluator")},
                       evaluate={"num_samples": 300, "report": str(root / f"reports/metrics{tag}.json"),
                                 "grid": str(root / f"reports/samples{tag}.png")},
                       promote={"report": str(root / "reports/promotion.json")})


def _candidate(root, evaluator_root, tag: str, seed: int):
    params = _params(root, evaluator_root, tag, seed)
    train.run(params, root, use_ray=False)
    evaluate.run(params, root)
    return params


def _registry(params) -> tuple[list, dict]:
    client = MlflowClient(params.tracking.uri)
    name = params.registered_model_name
    versions = sorted((int(mv.version), mv.tags.get(MODEL_URI_TAG)) for mv in
                      client.search_model_versions(f"name = '{name}'"))
    aliases = {}
    if versions:
        aliases = {a: int(v) for a, v in client.get_registered_model(name).aliases.items()}
    return versions, aliases


def _weights_of(params, model_uri: str) -> Path:
    """The logged generator's weights file inside the SQLite store's artifact folder."""
    lm = MlflowClient(params.tracking.uri).get_logged_model(model_uri.removeprefix("models:/"))
    found = list(Path(lm.artifact_location.removeprefix("file://")).glob(f"artifacts/*/{ckpt.GENERATOR_WEIGHTS}"))
    assert len(found) == 1, found
    return found[0]


def _worse_then_better(run_root, evaluator_root):
    """Two evaluated (not promoted) candidates, ordered worse first by promote.metric."""
    pairs = [(p, json.loads(Path(p.evaluate.report).read_text())) for p in
             (_candidate(run_root, evaluator_root, "-a", 0), _candidate(run_root, evaluator_root, "-b", 1))]
    from components.metrics.catalogue import greater_is_better

    metric = promotion_metric(pairs[0][0], run_root)
    pairs.sort(key=lambda pe: pe[1][metric], reverse=not greater_is_better(metric))
    assert pairs[0][1][metric] != pairs[1][1][metric]
    return [p for p, _ in pairs]


def _model_uri(params) -> str:
    return json.loads((Path(params.train.output_dir) / SUMMARY_FILE).read_text())["model_uri"]


def test_promote_twice_moves_nothing_twice(run_root, evaluator_root):
    worse, better = _worse_then_better(run_root, evaluator_root)
    report_path = run_root / "reports/promotion.json"
    first = promote.run(worse, run_root)
    first_bytes = report_path.read_bytes()
    before = _registry(worse)
    assert first["promoted"] and first["reason"] == "no current champion" and before == ([(1, _model_uri(worse))], {"champion": 1})
    assert promote.run(worse, run_root) == first and report_path.read_bytes() == first_bytes
    assert _registry(worse) == before

    # the better candidate: its rerun reproduces the "beats" report, not "already the champion"
    won = promote.run(better, run_root)
    won_bytes = report_path.read_bytes()
    assert won["promoted"] and won["version"] == 2 and "beats" in won["reason"]
    assert won["champion_value"] == first["candidate_value"]
    after = _registry(better)
    assert after == ([(1, _model_uri(worse)), (2, _model_uri(better))], {"champion": 2})
    assert promote.run(better, run_root) == won and report_path.read_bytes() == won_bytes
    assert _registry(better) == after
    refused = promote.run(worse, run_root)  # the old champion again: registered already, refused, nothing moves
    assert not refused["promoted"] and refused["version"] == 1 and "does not beat" in refused["reason"]
    assert _registry(worse) == after


def test_candidate_with_missing_or_corrupt_artifacts_is_never_registered(run_root, evaluator_root):
    champion, params = _worse_then_better(run_root, evaluator_root)
    assert promote.run(champion, run_root)["version"] == 1
    model_uri = _model_uri(params)
    weights = _weights_of(params, model_uri)
    spec = weights.with_name(ckpt.GENERATOR_SPEC)
    report_before = (run_root / "reports/promotion.json").read_bytes()
    before = _registry(params)
    assert before == ([(1, _model_uri(champion))], {"champion": 1})

    original = weights.read_bytes(), spec.read_bytes()
    _flip_byte(weights)
    with pytest.raises(PromoteError) as e:
        promote.run(params, run_root)
    assert model_uri in str(e.value) and str(weights) in str(e.value) and "corrupt" in str(e.value)
    assert _registry(params) == before
    mlflow.set_tracking_uri(params.tracking.uri)
    with pytest.raises(Exception, match=f"{ckpt.GENERATOR_WEIGHTS} is corrupt"):  # nor would it load or serve
        mlflow.pyfunc.load_model(model_uri)

    weights.unlink()
    spec.unlink()
    with pytest.raises(PromoteError) as e:
        promote.run(params, run_root)
    msg = str(e.value)
    assert model_uri in msg and f"{ckpt.GENERATOR_WEIGHTS} (missing)" in msg and f"{ckpt.GENERATOR_SPEC} (missing)" in msg
    assert _registry(params) == before
    assert (run_root / "reports/promotion.json").read_bytes() == report_before

    weights.write_bytes(original[0])  # restored: the same candidate now goes through
    spec.write_bytes(original[1])
    result = promote.run(params, run_root)
    assert result["promoted"] and result["version"] == 2 and _registry(params)[1] == {"champion": 2}


def test_champion_with_missing_artifacts_gives_way_to_a_verified_candidate(run_root, evaluator_root):
    worse, better = _worse_then_better(run_root, evaluator_root)
    assert promote.run(better, run_root)["version"] == 1
    _weights_of(better, _model_uri(better)).unlink()
    result = promote.run(worse, run_root)  # would be refused on the metric: only the broken champion explains it
    assert result["promoted"] and result["version"] == 2 and result["champion_value"] is None
    assert "the champion (version 1) cannot be loaded" in result["reason"]
    assert f"{ckpt.GENERATOR_WEIGHTS} (missing)" in result["reason"]
    assert _registry(worse)[1] == {"champion": 2}


# ---- checkpoints Ray never recorded ----------------------------------------------------------------------


def test_unrecorded_train_checkpoints_are_removed_but_a_newer_whole_one_is_kept_for_resume(states, tmp_path):
    from pipelines.leftovers import TRAIN_RECORD, prune_train_run

    run = tmp_path / "run"
    names = ["checkpoint_2026-01-01_00-00-01.000000", "checkpoint_2026-01-01_00-00-02.000000",  # recorded
             "checkpoint_2026-01-01_00-00-01.500000",  # uploaded, then the failure: never recorded
             "checkpoint_2026-01-01_00-00-03.000000", "checkpoint_2026-01-01_00-00-04.000000"]  # newer: whole, cut short
    for name in names[:4]:
        (run / name).mkdir(parents=True)
        ckpt.save(states[0], run / name)
    (run / names[4]).mkdir()
    (run / names[4] / ckpt.STATE_FILE).write_bytes(b"cut short")
    assert prune_train_run(run) == []  # no record yet: nothing is known, nothing goes
    (run / TRAIN_RECORD).write_text(json.dumps({"checkpoint_results": [{"checkpoint_dir_name": n, "metrics": {}}
                                                                        for n in names[:2]],
                                                "latest_checkpoint_result": {"checkpoint_dir_name": names[1]}}))
    removed = prune_train_run(run)
    assert sorted(p.name for p in removed) == [names[2], names[4]]
    assert sorted(p.name for p in run.glob("checkpoint_*") if p.is_dir()) == sorted(names[:2] + [names[3]])
    later = "checkpoint_2026-01-01_00-00-05.000000"  # the resumed run went on and Ray recorded a newer one
    (run / later).mkdir()
    ckpt.save(states[0], run / later)
    (run / TRAIN_RECORD).write_text(json.dumps({"checkpoint_results": [{"checkpoint_dir_name": n, "metrics": {}}
                                                                        for n in (names[1], later)],
                                                "latest_checkpoint_result": {"checkpoint_dir_name": later}}))
    assert [p.name for p in prune_train_run(run)] == [names[0], names[3]]  # now older than what is recorded
    assert sorted(p.name for p in run.glob("checkpoint_*") if p.is_dir()) == [names[1], later]
