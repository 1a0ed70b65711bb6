"""The evaluator is a pinned artifact: the same definition gives the same evaluator on every clone and
machine, edits outside its definition never change it, and retraining is deliberate."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

from components.config import DataConfig, Params
from components.data.shards import read_manifest
from components.metrics import feature_nets, pins
from conftest import tiny_params
from pipelines import evaluator, prepare

REPO = Path(__file__).resolve().parents[1]


def _definition(params, root) -> dict:
    from components.metrics.evaluators import EVALUATORS

    return EVALUATORS.get(params.evaluator.kind).definition(params, read_manifest(params.prepared_path(root)))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_default_pipeline_measures_with_the_pinned_evaluator_of_the_committed_reports(tmp_path):
    """A fresh clone on any machine: mnist5k prepared here has a pinned evaluator, and it is the one the
    committed reports were measured under."""
    params = Params(data=DataConfig(prepared_dir=str(tmp_path)))
    prepare.run(params)
    folder = pins.find(_definition(params, tmp_path))
    assert folder is not None, "the default dataset's evaluator definition has no pin"
    pinned_hash = json.loads((folder / feature_nets.INFO).read_text())["hash"]
    assert json.loads((REPO / "reports/metrics.json").read_text())["evaluator_hash"] == pinned_hash
    # the pin loads and its weights match the recorded hash
    _, info = feature_nets.load_evaluator(folder)
    assert info["hash"] == pinned_hash and info["test_accuracy"] > 0.97


@pytest.fixture
def pinned_root(run_root, monkeypatch):
    monkeypatch.setattr(pins, "PINNED_DIR", run_root / "pinned")
    return run_root


def _params(root, **evaluator_cfg):
    return tiny_params(root, evaluator={"epochs": 2, "output_dir": str(root / "evaluator"), **evaluator_cfg})


def test_a_pinned_definition_is_copied_not_trained_and_retrain_is_deliberate(pinned_root, monkeypatch, capsys):
    params = _params(pinned_root)
    trained = evaluator.run(params, pinned_root, pin=True)
    kept = pins.find(_definition(params, pinned_root))
    assert kept is not None and json.loads((kept / feature_nets.INFO).read_text())["hash"] == trained["hash"]

    def no_training(*a, **k):
        raise AssertionError("the evaluator was trained although a pin of its definition exists")

    monkeypatch.setattr(feature_nets, "train_classifier", no_training)
    (pinned_root / "evaluator").rename(pinned_root / "evaluator-before")
    info = evaluator.run(params, pinned_root)
    assert info["hash"] == trained["hash"]
    out = _files(pinned_root / "evaluator")
    assert out == {k: v for k, v in _files(kept).items() if k != pins.DEFINITION}  # byte for byte
    assert "pinned" in capsys.readouterr().out

    # --retrain trains even though pinned, and says what the new weights orphan
    monkeypatch.undo()
    monkeypatch.setattr(pins, "PINNED_DIR", pinned_root / "pinned")
    info_file = pinned_root / "evaluator" / feature_nets.INFO  # stands for an evaluator of other weights
    info_file.write_text(json.dumps({**json.loads(info_file.read_text()), "hash": "0" * 64}))
    evaluator.run(params, pinned_root, retrain=True)
    printed = capsys.readouterr().out
    assert "trained on this machine" in printed and "replaced evaluator 000000000000" in printed


def test_a_changed_definition_trains_a_new_evaluator(pinned_root):
    params = _params(pinned_root)
    evaluator.run(params, pinned_root, pin=True)
    other = _params(pinned_root, epochs=3)
    assert pins.find(_definition(other, pinned_root)) is None
    assert pins.definition_hash(_definition(other, pinned_root)) != pins.definition_hash(_definition(params, pinned_root))
    # the training seed is not part of the evaluator's definition
    assert _definition(params.model_copy(update={"seed": 7}), pinned_root) == _definition(params, pinned_root)


def test_a_pin_recording_another_definition_is_refused(pinned_root):
    params = _params(pinned_root)
    evaluator.run(params, pinned_root, pin=True)
    defn = _definition(params, pinned_root)
    (pins.pin_dir(defn) / pins.DEFINITION).write_text(json.dumps({**defn, "recipe_version": -1}))
    with pytest.raises(ValueError, match="records a different definition"):
        evaluator.run(params, pinned_root)


def _imported_metrics_modules(path: Path, seen: set[str]) -> set[str]:
    """components.metrics modules a module imports, transitively through components.* (not through the
    config package: it names metrics to validate keys, which changes no evaluator)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("components"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("components")]
        for name in names:
            file = REPO / (name.replace(".", "/") + ".py")
            if file.is_file() and name not in seen and not name.startswith("components.config"):
                seen.add(name)
                _imported_metrics_modules(file, seen)
    return {n for n in seen if n.startswith("components.metrics.")}


def test_the_evaluator_stage_depends_on_its_definition_not_on_the_whole_metrics_package():
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["evaluator"]
    deps = set(stage["deps"])
    assert "components/metrics" not in deps
    used = _imported_metrics_modules(REPO / "pipelines/evaluator.py", set())
    # the catalogue only names metrics (data kinds list theirs): it trains and measures nothing
    used_files = {n.replace(".", "/") + ".py" for n in used} - {"components/metrics/catalogue.py"}
    assert used_files <= deps, f"the evaluator stage imports {sorted(used_files - deps)} but does not depend on them"
    # what scores samples is not what defines the evaluator: editing it must not rerun the stage
    assert not {"components/metrics/scores.py", "components/metrics/catalogue.py",
                "components/metrics/translation.py"} & deps
    assert "components/metrics/pinned" in deps and "seed" not in stage["params"]


def test_the_label_free_preset_is_scored_by_the_default_datasets_pinned_evaluator(tmp_path):
    """The label-free figures (reports/modes/labelfree.json) come from the pinned mnist5k classifier: the
    preset prepares the default dataset, whose definition has that pin, and the committed class KL is the
    KL to uniform of the class histogram that evaluator read."""
    import math

    from components.config import load_params
    from components.metrics.uniform_kl import kl_to_uniform

    params = load_params(REPO / "params.yaml", ["preset=labelfree", f"data.prepared_dir={tmp_path}"])
    assert params.model.clusters > 1 and not params.model.conditional  # no label reaches G or D
    prepare.run(params)
    folder = pins.find(_definition(params, tmp_path))
    assert folder is not None and folder.name.startswith("mnist5k-")
    pinned_hash = json.loads((folder / feature_nets.INFO).read_text())["hash"]
    report = json.loads((REPO / "reports/modes/labelfree.json").read_text())
    assert report["preset"] == "labelfree" and report["evaluator_hash"] == pinned_hash
    preset_run = report["candidates"]["labelfree"]
    assert preset_run["evaluator_hash"] == pinned_hash and len(preset_run["class_histogram"]) == 10
    assert math.isclose(sum(preset_run["class_histogram"]), preset_run["num_samples"], rel_tol=1e-9)
    # class_kl is the mean over sampling seeds of KL(histogram ‖ uniform); the mean histogram's KL is at most it
    assert kl_to_uniform(preset_run["class_histogram"]) <= report["class_kl"] + 1e-12
    assert report["class_kl"] == preset_run["class_kl"] and report["fid"] == preset_run["fid"]
