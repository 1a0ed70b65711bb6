"""evaluate → promote against a real SQLite MLflow registry; the champion loads by alias in a fresh
process and is served over HTTP by `mlflow models serve`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from components.tracking import local_server, promotion
from components.tracking.names import EVALUATOR_HASH_TAG, MODEL_URI_TAG, SUMMARY_FILE
from conftest import free_port, tiny_params
from pipelines import evaluate, evaluator, promote, train


@pytest.fixture(scope="module")
def root(tmp_path_factory, digits_root):
    root = tmp_path_factory.mktemp("registry")
    (root / "prepared").symlink_to(digits_root / "prepared")
    evaluator.run(_params(root), root)
    return root


def _params(root, tag: str = "", **train_overrides):
    """Params whose candidate outputs (generator, metrics report) live under `tag`."""
    return tiny_params(root, train={"output_dir": str(root / f"train{tag}"), **train_overrides},
                       evaluator={"epochs": 6, "output_dir": str(root / "evaluator")},
                       evaluate={"num_samples": 300, "report": str(root / f"reports/metrics{tag}.json"),
                                 "grid": str(root / f"reports/samples{tag}.png")},
                       promote={"report": str(root / "reports/promotion.json"), "margin": 0.0})


@pytest.fixture(scope="module")
def history(root):
    """Three real candidates, trained and evaluated first, then promoted worst → best → middle, so that
    one later candidate should beat the champion and one should not (which training length wins is not
    this test's business). Each entry: (evaluate's report, promote's result, the alias after promote)."""
    evaluated = []
    for seed, steps in ((0, 1), (1, 60), (2, 300)):
        params = _params(root, f"-{seed}", max_steps=steps).model_copy(update={"seed": seed})
        train.run(params, root, use_ray=False)
        evaluated.append((params, evaluate.run(params, root)))
    evaluated.sort(key=lambda pe: -pe[1]["fid"])
    worst, middle, best = evaluated
    client = MlflowClient(_params(root).tracking.uri)
    history = []
    for params, ev in (worst, best, middle):
        pr = promote.run(params, root)
        alias = int(client.get_model_version_by_alias(pr["model_name"], "champion").version)
        history.append((ev, pr, alias))
    return history


def test_first_candidate_becomes_champion(history):
    ev, pr, alias = history[0]
    assert pr["promoted"] and pr["version"] == 1 and pr["champion_version"] == 1 and alias == 1
    assert pr["reason"] == "no current champion" and pr["candidate_value"] == ev["fid"]


def test_better_candidate_takes_the_alias_and_worse_one_is_refused(history, root):
    # The FID of each registered version as recorded by the evaluations themselves (the metric evaluate
    # logged to the candidate's MLflow run), not as the fixture ordered them; lower FID is better.
    client = MlflowClient(_params(root).tracking.uri)
    name = history[0][1]["model_name"]
    recorded = {}
    for ev, pr, _ in history:
        mv = client.get_model_version(name, str(pr["version"]))
        run_fid = client.get_run(ev["mlflow_run_id"]).data.metrics["eval/fid"]
        assert mv.tags[MODEL_URI_TAG] == ev["model_uri"]  # the version is that evaluation's candidate
        assert float(mv.tags["metric.fid"]) == pytest.approx(run_fid, rel=1e-9)
        assert mv.tags[EVALUATOR_HASH_TAG] == ev["evaluator_hash"]
        recorded[pr["version"]] = run_fid
    assert sorted(recorded) == [1, 2, 3]  # one new version per promote, in order

    def best_up_to(v: int) -> int:  # the version that should hold the alias once versions 1..v are promoted
        return min(range(1, v + 1), key=recorded.__getitem__)

    # scenario coverage (the fixture's order, not the property under test): version 2 should take the alias
    # from version 1, version 3 should not take it from version 2
    assert [best_up_to(v) for v in (1, 2, 3)] == [1, 2, 2], recorded
    for ev, pr, alias in history:
        v = pr["version"]
        champion = best_up_to(v)
        assert pr["promoted"] == (champion == v), (v, recorded, pr)
        assert pr["champion_version"] == champion and alias == champion, (v, recorded, pr, alias)
        assert pr["candidate_value"] == pytest.approx(recorded[v], rel=1e-9)
        if v > 1:
            assert pr["champion_value"] == pytest.approx(recorded[best_up_to(v - 1)], rel=1e-9), (v, recorded, pr)
            assert ("does not beat" if champion != v else "beats") in pr["reason"]

    on_disk = json.loads((root / "reports/promotion.json").read_text())
    assert on_disk == history[-1][1] and set(on_disk) >= {"model_name", "version", "promoted", "champion_version",
                                                          "metric", "candidate_value", "champion_value", "reason"}
    assert int(client.get_model_version_by_alias(name, "champion").version) == min(recorded, key=recorded.__getitem__)


def test_unevaluated_or_foreign_evaluated_candidate_is_never_promoted(history, root):
    params = _params(root, "-0", max_steps=2)  # its report path still holds another candidate's evaluation
    client = MlflowClient(params.tracking.uri)
    name = params.registered_model_name
    before = len(client.search_model_versions(f"name = '{name}'"))
    train.run(params, root, use_ray=False)
    with pytest.raises(promotion.PromoteError, match="run `genpipe evaluate` again"):
        promote.run(params, root)
    assert len(client.search_model_versions(f"name = '{name}'")) == before  # nothing registered

    report = evaluate.run(params, root)
    path = root / "reports/metrics-0.json"
    # measured under an evaluator this workspace does not hold: the champion cannot be re-scored under it
    path.write_text(json.dumps({**report, "evaluator_hash": "another-evaluator", "fid": 0.0}))
    with pytest.raises(promotion.PromoteError, match="evaluated under evaluator another-eval.* run `genpipe evaluate` again"):
        promote.run(params, root)
    assert len(client.search_model_versions(f"name = '{name}'")) == before
    assert int(client.get_model_version_by_alias(name, "champion").version) == 2


def test_evaluation_is_logged_to_the_candidate_run(history, root):
    ev, _, _ = history[1]
    run = MlflowClient(_params(root).tracking.uri).get_run(ev["mlflow_run_id"])
    assert run.data.metrics["eval/fid"] == pytest.approx(ev["fid"])
    assert run.data.tags[EVALUATOR_HASH_TAG] == ev["evaluator_hash"]


def _env(root) -> dict:
    # The server execs `uvicorn` from PATH: the venv's bin must be on it, as in an activated venv.
    path = f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"
    return {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": _params(root).tracking.uri}


def test_champion_loads_by_alias_in_a_fresh_process(history, root):
    name = history[0][1]["model_name"]
    code = ("import mlflow, json; m = mlflow.pyfunc.load_model('models:/%s@champion'); "
            "x = m.predict({'num_samples': 3, 'seed': 7}); print(json.dumps([list(x.shape), float(x.min()), float(x.max()), str(x.dtype)]))" % name)
    out = subprocess.run([sys.executable, "-c", code], env=_env(root), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    shape, lo, hi, dtype = json.loads(out.stdout.strip().splitlines()[-1])
    assert shape == [3, 1, 8, 8] and -1.0 <= lo <= hi <= 1.0 and dtype == "float32"


def test_served_champion_answers_http(history, root):
    name = history[0][1]["model_name"]
    server, url = local_server.start(f"models:/{name}@champion", _params(root).tracking.uri, free_port())
    try:
        body = json.dumps({"dataframe_records": [{"num_samples": 2, "seed": 0}]}).encode()
        req = urllib.request.Request(f"{url}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            images = np.asarray(json.load(resp)["predictions"], dtype=np.float32)
        assert images.shape == (2, 1, 8, 8) and images.min() >= -1 and images.max() <= 1
    finally:
        local_server.stop(server)


def test_too_few_samples_is_a_clear_error_not_a_nan(history, root):
    params = _params(root, "-2", max_steps=300).model_copy(update={"seed": 2})
    params = params.model_copy(update={"evaluate": params.evaluate.model_copy(update={"num_samples": 100})})
    before = (root / "reports/metrics-2.json").read_bytes()
    with pytest.raises(ValueError, match=r"100 samples for 128-dimensional .* evaluate.num_samples"):
        evaluate.run(params, root)
    assert (root / "reports/metrics-2.json").read_bytes() == before  # the previous report is untouched


def test_generator_that_does_not_match_the_model_config_names_both(history, root):
    params = _params(root, "-2", max_steps=300).model_copy(update={"seed": 2})
    params = params.model_copy(update={"model": params.model.model_copy(update={"g_channels": 24})})
    with pytest.raises(evaluate.EvaluateError) as e:
        evaluate.run(params, root)
    assert "g_channels trained with 16 but configured 24" in str(e.value) and str(root / "train-2") in str(e.value)


def test_genpipe_sample_writes_a_grid_from_the_champion(history, root, monkeypatch):
    from PIL import Image

    from pipelines import cli

    name = history[0][1]["model_name"]
    monkeypatch.chdir(root)
    params_file = root / "sample-params.yaml"
    params_file.write_text(json.dumps(_params(root).model_dump(mode="json")))  # JSON is YAML
    out = root / "grid.png"
    rc = cli.main(["sample", "--params", str(params_file), "--model", f"models:/{name}@champion", "--n", "9",
                   "--out", str(out)])
    assert rc == 0
    grid = np.asarray(Image.open(out))
    assert grid.shape == (3 * (8 + 2) + 2, 3 * (8 + 2) + 2) and grid.std() > 0  # 3×3 tiles of 8×8, 2 px padding


# ------------------------------------------------------------------ noise, re-scoring, one version per weights

def test_decide_moves_the_alias_only_beyond_the_noise():
    # lower FID is better; std of the difference = hypot(1, 1) = 1.41
    assert promotion.decide("fid", (50.0, 1.0), (51.0, 1.0), margin=1.0)[0] is False
    assert promotion.decide("fid", (48.0, 1.0), (51.0, 1.0), margin=1.0)[0] is True
    assert promotion.decide("fid", (50.0, 1.0), (51.0, 1.0), margin=0.0)[0] is True
    assert promotion.decide("fid", (52.0, None), (51.0, None), margin=0.0)[0] is False
    assert promotion.decide("precision", (0.8, 0.01), (0.7, 0.01), margin=1.0)[0] is True  # higher is better
    ok, why = promotion.decide("fid", (50.0, 1.0), (51.0, 1.0), margin=1.0)
    assert "within the noise" in why and "margin 1" in why


def _candidates(root):
    """(params, report) of the 60- and 300-step candidates, better one last."""
    out = []
    for seed in (1, 2):
        params = _params(root, f"-{seed}").model_copy(update={"seed": seed})
        out.append((params, json.loads((root / f"reports/metrics-{seed}.json").read_text())))
    return sorted(out, key=lambda pe: -pe[1]["fid"])


def _named(params, name, **promote_cfg):
    return params.model_copy(update={"promote": params.promote.model_copy(update={"model_name": name, **promote_cfg})})


def test_a_candidate_better_by_less_than_the_margin_is_registered_not_promoted(history, root):
    (worse, _), (better, better_ev) = _candidates(root)
    client = MlflowClient(_params(root).tracking.uri)
    assert promote.run(_named(worse, "margin-test"), root)["promoted"]
    result = promote.run(_named(better, "margin-test", margin=1e9), root)
    assert not result["promoted"] and result["version"] == 2 and result["champion_version"] == 1
    assert "within the noise" in result["reason"] and result["candidate_std"] == better_ev["fid_seed_std"] > 0
    assert result["champion_std"] > 0
    mv = client.get_model_version("margin-test", "2")
    assert json.loads(mv.tags["genpipe.not_promoted"])["reason"] == result["reason"]
    # without the margin the same version (not a new one) takes the alias
    again = promote.run(_named(better, "margin-test", margin=0.0), root)
    assert again["promoted"] and again["version"] == 2
    assert len(client.search_model_versions("name = 'margin-test'")) == 2


def test_a_champion_measured_under_another_evaluator_is_rescored_not_orphaned(history, root):
    """The evaluator's definition changes (more epochs): the candidate is evaluated under the new
    evaluator, and promote re-scores the champion under it instead of refusing every candidate."""
    (worse, _), (better, _) = _candidates(root)
    client = MlflowClient(_params(root).tracking.uri)
    name = "rescore-test"
    first = promote.run(_named(better, name), root)  # the champion, under the original evaluator
    old_tags = dict(client.get_model_version(name, str(first["version"])).tags)

    def under_new(params, tag):
        return params.model_copy(update={
            "evaluator": params.evaluator.model_copy(update={"epochs": 7, "output_dir": str(root / "evaluator-7")}),
            "evaluate": params.evaluate.model_copy(update={"report": str(root / f"reports/metrics{tag}-e7.json"),
                                                           "grid": str(root / f"reports/samples{tag}-e7.png")})})

    new_worse = under_new(_named(worse, name), "-w")
    new_info = evaluator.run(new_worse, root)
    assert new_info["hash"] != first["evaluator_hash"]
    cand = evaluate.run(new_worse, root)
    champion_now = evaluate.run(under_new(_named(better, name), "-b"), root)  # what the re-score must find

    result = promote.run(new_worse, root)
    rescore = result["champion_rescore"]
    assert rescore["evaluator_hash"] == new_info["hash"] == result["evaluator_hash"]
    assert result["champion_evaluator_hash"] == first["evaluator_hash"]
    assert result["champion_value"] == rescore["fid"] == champion_now["fid"]  # measured exactly as evaluate does
    assert result["champion_std"] == champion_now["fid_seed_std"]
    # decided on the new numbers (the worse candidate stays worse under either evaluator here)
    assert result["promoted"] == (cand["fid"] < champion_now["fid"])
    assert "re-scored" in result["reason"]
    tags = client.get_model_version(name, str(first["version"])).tags
    assert {k: tags[k] for k in old_tags} == old_tags  # the champion's earlier tags are kept
    assert json.loads(tags[promotion.RESCORE_TAG + new_info["hash"]])["fid"] == rescore["fid"]


def test_the_same_weights_logged_again_are_one_version(history, root):
    """A rerun that logs the same weights as a new logged model: no new version, the champion stays."""
    import shutil

    import mlflow

    from components.tracking.logged_model import log_generator

    _, (better, ev) = _candidates(root)
    name = "dedupe-test"
    first = promote.run(_named(better, name), root)
    dup_dir, dup_report = root / "train-dup", root / "reports/metrics-dup.json"
    shutil.copytree(better.train.output_dir, dup_dir)
    summary = json.loads((dup_dir / SUMMARY_FILE).read_text())
    mlflow.set_tracking_uri(summary["tracking_uri"])
    with mlflow.start_run(run_id=summary["mlflow_run_id"]):
        info = log_generator(dup_dir, 1024)
    assert info.model_uri != summary["model_uri"]
    (dup_dir / SUMMARY_FILE).write_text(json.dumps({**summary, "model_uri": info.model_uri}))
    dup_report.write_text(json.dumps({**ev, "model_uri": info.model_uri}))
    params = better.model_copy(update={
        "train": better.train.model_copy(update={"output_dir": str(dup_dir)}),
        "evaluate": better.evaluate.model_copy(update={"report": str(dup_report)}),
        "promote": better.promote.model_copy(update={"model_name": name})})
    again = promote.run(params, root)
    assert again["version"] == first["version"] and again["promoted"]
    assert len(MlflowClient(_params(root).tracking.uri).search_model_versions(f"name = '{name}'")) == 1


def test_the_registered_model_declares_its_inputs_and_refuses_a_wrong_one(history, root):
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(_params(root).tracking.uri)
    model = mlflow.pyfunc.load_model(f"models:/{history[0][1]['model_name']}@champion")
    # an unconditional dcgan: its inputs in the MLmodel's metadata, no MLflow signature (tests/test_serving.py)
    assert model.metadata.signature is None and model.metadata.metadata["inputs"] == ["num_samples", "seed"]
    with pytest.raises(MlflowException, match="steps: sampling options of diffusion models") as e:  # the family refuses
        model.predict({"num_samples": 2, "steps": 4})
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"  # what the scoring server answers with a 400
    assert model.predict({"num_samples": 2}).shape == (2, 1, 8, 8)
    with pytest.raises(MlflowException, match="^num_samples: expected an integer, got 'many'$"):
        model.predict({"num_samples": "many"})
