"""An evaluator is bound to the data it was made for: every scorer (evaluate, tune and its trials, promote)
refuses another dataset's evaluator, naming both datasets and the command that makes the right one; the
classifier can read its accuracy on a holdout of the train split (evaluator.holdout) without changing any
pinned definition; prepare says at once when a split is too small for the evaluator. Nothing here trains."""
from __future__ import annotations

import ast
import json

import numpy as np
import pytest

from components.config import load_params
from components.data.shards import read_manifest
from components.metrics.evaluators import EVALUATORS, EvaluatorError, INFO, evaluator_for
from components.metrics.evaluators.classifier import holdout_counts, holdout_mask
from conftest import REPO, tiny_params

MNIST5K = {"dataset": "mnist5k", "content_hash": "40fa3710c28bec092502ae7aae76f32b236cd1694c007946ee25d7a9a894bea8"}


def _foreign(root, kind="classifier", **record):
    """data/evaluator as the user found it: mnist5k's classifier record, on other data."""
    folder = root / "evaluator"
    folder.mkdir(exist_ok=True)
    (folder / INFO).write_text(json.dumps({"kind": kind, "hash": "d1ee59b27d58" + "0" * 52, **MNIST5K, **record}))
    return tiny_params(root, evaluator={"output_dir": str(folder)},
                       tune={"enabled": True, "space": {"train.lr_g": {"loguniform": [1e-4, 1e-3]}}})


def _refusals(params, root):
    from components.evaluation import QuickScorer, check_evaluator, open_evaluator
    from pipelines import promote, tune
    from pipelines.links import SUMMARY_FILE

    summary = root / "train" / SUMMARY_FILE  # a candidate to promote; nothing may be registered for it
    summary.parent.mkdir(exist_ok=True)
    summary.write_text(json.dumps({"model_uri": "models:/m-0", "mlflow_run_id": "0", "tracking_uri": params.tracking.uri}))
    for consumer in (open_evaluator, check_evaluator, lambda p, r: QuickScorer(p, r, 200), promote.run, tune.run):
        with pytest.raises(EvaluatorError) as e:
            consumer(params, root)
        yield str(e.value)


def test_every_scorer_refuses_another_datasets_evaluator_naming_both_and_the_fix(run_root):
    from components.evaluation import evaluator_dir

    params = _foreign(run_root)
    here = read_manifest(params.prepared_path(run_root))["content_hash"]
    messages = list(_refusals(params, run_root))
    assert len(messages) == 5 and len(set(messages)) == 1, messages  # one check, one message, whoever asks
    assert messages[0] == (
        f"the evaluator in {evaluator_dir(params, run_root)} was made for dataset mnist5k (content hash 40fa3710c28b), "
        f"but the prepared data in {params.prepared_path(run_root)} is dataset digits (content hash {here[:12]}): "
        "scores under it would not measure this data. Make this data's evaluator with `dvc repro evaluator`, or "
        "`genpipe evaluator` with this command's --params/--set (it trains on this data, or copies its pin), then "
        "run this command again")
    assert not (run_root / "mlflow.db").exists()  # promote stopped before the registry


def test_an_evaluator_of_another_kind_or_without_a_record_of_its_data_is_refused(run_root):
    from components.evaluation import check_evaluator

    here = read_manifest(tiny_params(run_root).prepared_path(run_root))["content_hash"]
    params = _foreign(run_root, content_hash=here, dataset="digits")
    assert check_evaluator(params, run_root)["content_hash"] == here  # this data's classifier: accepted
    inception = params.with_overrides({"evaluator.kind": "inception", "evaluator.inception_weights": "w.pt"})
    with pytest.raises(EvaluatorError, match="is a classifier evaluator, but this image data is scored by the "
                                             "inception evaluator: .*`dvc repro evaluator`"):
        check_evaluator(inception, run_root)
    old = _foreign(run_root, content_hash=None)
    with pytest.raises(EvaluatorError, match=r"made for no recorded dataset \(made before .*\), but .* is dataset "
                                             f"digits \\(content hash {here[:12]}\\)"):
        check_evaluator(old, run_root)


@pytest.mark.parametrize("name", EVALUATORS.names())
def test_every_kind_records_and_checks_the_data_it_was_made_for(tmp_path, name):
    """Per kind (docs/metrics.md#which-data-an-evaluator-scores): trained or not, each is refused on other data."""
    evaluator = EVALUATORS.get(name)
    mine = {"dataset": "mine", "content_hash": "a" * 64, "kind": evaluator.data_kinds[0]}
    (tmp_path / INFO).write_text(json.dumps({"kind": evaluator.recorded_kind, "dataset": "theirs",
                                             "content_hash": "b" * 64}))
    with pytest.raises(EvaluatorError, match=r"made for dataset theirs \(content hash bbbbbbbbbbbb\), .* is dataset "
                                             r"mine \(content hash aaaaaaaaaaaa\)"):
        evaluator.recorded(tmp_path, tmp_path / "prepared", mine)
    (tmp_path / INFO).write_text(json.dumps({**mine, "kind": evaluator.recorded_kind}))
    assert evaluator.recorded(tmp_path, tmp_path / "prepared", mine)["dataset"] == "mine"


def _called(call: ast.Call) -> str:
    return getattr(call.func, "attr", getattr(call.func, "id", ""))


def test_no_scorer_opens_an_evaluator_folder_past_the_check():
    """Only the evaluators package and components/evaluation.py (which checks first) load an evaluator."""
    loads = []
    for path in sorted([*(REPO / "components").rglob("*.py"), *(REPO / "pipelines").rglob("*.py")]):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith("components/metrics/") or rel == "components/evaluation.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = _called(node)
            # feature_nets.load_evaluator(dir), or evaluator_of(…).open/.scorer/.recorded(dir, …) in a stage
            on_an_evaluator = isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Call) \
                and _called(node.func.value) in ("evaluator_of", "evaluator_for", "get")
            if name == "load_evaluator" or (name in ("open", "scorer", "recorded") and on_an_evaluator):
                loads.append(f"{rel}:{node.lineno} {name}")
    assert not loads, "\n".join(loads)


# ---------------------------------------------------------------------------------------- evaluator.holdout
def test_holdout_is_stratified_seeded_and_leaves_every_class_images_to_train_on():
    labels = np.repeat(np.arange(4), [1, 2, 10, 31])
    assert holdout_counts([1, 2, 10, 31], 0.2) == [0, 1, 2, 6]
    held = holdout_mask(labels, 0.2, seed=0)
    assert np.bincount(labels[held], minlength=4).tolist() == [0, 1, 2, 6]
    assert (held == holdout_mask(labels, 0.2, seed=0)).all() and (held != holdout_mask(labels, 0.2, seed=1)).any()


def test_holdout_changes_the_definition_only_when_set_so_the_pins_keep_their_hash():
    from components.metrics import pins

    manifest = {**MNIST5K, "image_shape": [1, 28, 28], "num_classes": 10}
    params = load_params(REPO / "params.yaml", ["preset=null"])
    default = evaluator_for("image", "classifier").definition(params, manifest)
    assert pins.find(default) is not None and pins.definition_hash(default).startswith("00f535826d6e")
    held = evaluator_for("image", "classifier").definition(params.with_overrides({"evaluator.holdout": 0.2}), manifest)
    assert held["recipe"]["holdout"] == 0.2 and pins.find(held) is None


def test_holdout_is_refused_by_evaluators_that_take_none():
    with pytest.raises(ValueError, match="evaluator.holdout = 0.2 .* evaluator.kind = inception takes none"):
        load_params(REPO / "params.yaml", ["evaluator.kind=inception", "evaluator.inception_weights=w.pt",
                                           "evaluator.holdout=0.2"])


def _manifest(test_counts, train_counts):
    return {"dataset": "many", "count": sum(test_counts) + sum(train_counts), "test_fraction": 0.1,
            "class_names": [f"c{i}" for i in range(len(test_counts))], "image_shape": [1, 28, 28],
            "num_classes": len(test_counts),
            "splits": {"test": {"count": sum(test_counts), "class_counts": test_counts},
                       "train": {"count": sum(train_counts), "class_counts": train_counts}}}


def test_with_holdout_a_class_needs_images_in_the_holdout_not_in_the_test_split():
    classifier = evaluator_for("image", "classifier")
    manifest = _manifest([1] * 10 + [3] * 70, [9] * 10 + [27] * 70)  # 150 test images, ten classes with one
    params = load_params(REPO / "params.yaml", ["preset=null"])
    assert classifier.size_problems(params, manifest) == [
        "classes c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 keep fewer than 2 held-out images; add images of those "
        "classes or raise data.test_fraction"]
    assert classifier.size_problems(params.with_overrides({"evaluator.holdout": 0.2}), manifest) == []
    assert "raise evaluator.holdout" in classifier.size_problems(params.with_overrides({"evaluator.holdout": 0.1}),
                                                                 manifest)[0]


# ---------------------------------------------------------------------------------------- prepare says it at once
def test_prepare_warns_at_once_when_the_split_is_too_small_for_the_evaluator(tmp_path, capsys):
    from PIL import Image

    from pipelines import prepare

    for c in range(3):
        (tmp_path / "img" / f"c{c}").mkdir(parents=True)
        for i in range(20):
            Image.fromarray(np.full((16, 16), 12 * i + c, np.uint8)).save(tmp_path / "img" / f"c{c}" / f"{i}.png")
    params = tiny_params(tmp_path, data={"source": "imagefolder", "path": str(tmp_path / "img"), "name": "tiny"})
    prepare.run(params, tmp_path)
    out = capsys.readouterr().out
    assert ("prepare: warning: dataset tiny is too small to be measured: the held-out split has 6 images (60 × "
            "data.test_fraction 0.1), and the classifier evaluator's features are 128-dimensional: FID needs more "
            "than 128 real images, so bring at least 1290 images") in out
    assert "The evaluator stage will refuse this split" in out
    digits = tiny_params(tmp_path, data={"prepared_dir": str(tmp_path / "p")})
    prepare.run(digits, tmp_path)
    assert "warning" not in capsys.readouterr().out  # 180 held-out digits: measurable


def test_the_classifier_reads_its_accuracy_on_its_holdout_and_records_it(run_root, capsys):
    from pipelines import evaluator

    params = tiny_params(run_root, evaluator={"epochs": 1, "holdout": 0.2, "output_dir": str(run_root / "evaluator")})
    train = read_manifest(params.prepared_path(run_root))["splits"]["train"]
    info = evaluator.run(params, run_root)
    held = sum(holdout_counts(train["class_counts"], 0.2))
    assert info["holdout"] == 0.2 and (info["report"]["train_count"], info["report"]["test_count"]) == \
        (train["count"] - held, held)
    assert f"on {held} train-split images held out of its training (evaluator.holdout 0.2)" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------- evaluate.reference
def test_reference_train_moves_fids_size_rule_to_the_train_split_and_asks_for_the_holdout():
    classifier = evaluator_for("image", "classifier")
    params = load_params(REPO / "params.yaml", ["preset=null"])
    train = params.with_overrides({"evaluate.reference": "train"})
    folder = _manifest([3] * 10, [27] * 10)  # 300 images at the default 0.1: 30 held out
    assert classifier.size_problems(params, folder)[0].endswith(
        "or set evaluate.reference: train (its 270 train-split images become FID's real side; "
        "docs/metrics.md#the-real-side)")
    assert classifier.size_problems(train, folder) == []
    thin = _manifest([1] * 10, [29] * 10)  # a class with one test image: the accuracy needs the holdout
    assert classifier.size_problems(train, thin) == [
        "classes c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 keep fewer than 2 held-out images; with evaluate.reference "
        "train the test split may stay small, but the classifier must read its accuracy on images it did not train "
        "on: set evaluator.holdout (e.g. 0.2, a slice of the train split held out of its training) or raise "
        "data.test_fraction"]
    assert classifier.size_problems(train.with_overrides({"evaluator.holdout": 0.2}), thin) == []
    tiny = {**_manifest([1] * 10, [12] * 10), "count": 130}  # 120 train images: not even the train split
    assert classifier.size_problems(train.with_overrides({"evaluator.holdout": 0.2}), tiny) == [
        "the train split (FID's real side: evaluate.reference train) has 120 images (130 less 10 held out), and "
        "the classifier evaluator's features are 128-dimensional: FID needs more than 128 real images, so bring "
        "at least 144 images"]
    with pytest.raises(EvaluatorError, match="evaluate.reference = 'train': the mode_counter evaluator compares "
                                             "samples with the test split only; set evaluate.reference: test"):
        EVALUATORS.get("mode_counter").check_reference(train)


class _Projection:
    """A stand-in feature network: a fixed random projection of the pixels to `feature_dim` dimensions."""

    def __init__(self, feature_dim):
        import torch

        self.feature_dim = feature_dim
        self.w = torch.randn(64, feature_dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def features(self, x):
        return x.flatten(1).double() @ self.w

    def features_and_logits(self, x):
        f = self.features(x)
        return f, f[:, :10]


def _scorer(run_root, feature_dim):
    from components.metrics.evaluators.feature_net import FeatureScorer

    prepared = tiny_params(run_root).prepared_path(run_root)
    return FeatureScorer(evaluator_for("image", "classifier"), {"hash": "0" * 64}, prepared,
                         read_manifest(prepared), _Projection(feature_dim))


def test_the_real_side_is_the_test_split_by_default_and_the_train_split_with_reference_train(run_root):
    """The default's scoring path is unchanged: the real side is the very TestSplit evaluate samples with (the
    object measure computed the reference from before the key existed); with `train` the train split."""
    from components.evaluation import TestSplit, real_side

    scorer = _scorer(run_root, 16)
    test = TestSplit.load(scorer.prepared)
    default = tiny_params(run_root)
    assert default.evaluate.reference == "test" and real_side(default, scorer, test) is test
    real = real_side(tiny_params(run_root, evaluate={"reference": "train"}), scorer, test)
    splits = scorer.manifest["splits"]
    assert (len(real.x), len(test.x)) == (splits["train"]["count"], splits["test"]["count"]) == (1618, 179)


def test_the_floor_is_the_same_pair_under_either_reference_and_left_out_when_a_split_is_too_small(run_root, capsys):
    from components.evaluation import TestSplit

    scorer = _scorer(run_root, 16)
    prepared = scorer.prepared
    by_reference = {}
    for split in ("test", "train"):
        params = tiny_params(run_root, evaluate={"reference": split, "kid_subset_size": 100})
        reference = scorer.reference(TestSplit.load(prepared, split))
        by_reference[split] = scorer.floor(reference, params, {"fid": 10.0})
    assert by_reference["test"] == by_reference["train"] and by_reference["test"]["fid_floor"] > 0  # bit for bit
    wide = _scorer(run_root, 200)  # 179 test images: too few for 200 features on the test side
    assert wide.floor(None, tiny_params(run_root, evaluate={"reference": "train"}), {"fid": 10.0}) == {}
    assert capsys.readouterr().out == (
        "evaluate: note: no real-vs-real floor (fid_floor, kid_floor, fid_over_floor): the test split has 179 images, "
        "and FID needs more than 200 on each side; the scores are against the train split "
        "(docs/metrics.md#the-real-side)\n")


def test_promote_rescores_a_champion_scored_against_another_split(monkeypatch):
    from types import SimpleNamespace

    from components.tracking import promotion
    from components.tracking.names import EVALUATOR_HASH_TAG, REFERENCE_TAG

    calls, tags = [], {}
    monkeypatch.setattr(promotion, "_rescore", lambda *a: calls.append(a[-1]) or {"fid": 7.0, "reference": a[-1]})
    client = SimpleNamespace(set_model_version_tag=lambda name, version, key, value: tags.update({key: value}))
    old = SimpleNamespace(name="m", version="1", tags={EVALUATOR_HASH_TAG: "e" * 64, "metric.fid": "9.0"})

    def numbers(champion, reference=None):
        report = {"evaluator_hash": "e" * 64, **({"reference": reference} if reference else {})}
        return promotion._champion_numbers(None, None, client, "uri", champion, report, "fid")[0]

    assert numbers(old) == numbers(old, "test") == 9.0 and not calls  # no tag: scored against the test split
    assert numbers(old, "train") == 7.0 and calls == ["train"] and set(tags) == {f"genpipe.rescore.{'e' * 64}.train"}
    assert numbers(SimpleNamespace(**{**vars(old), "tags": {**old.tags, REFERENCE_TAG: "train"}}), "train") == 9.0
    monkeypatch.undo()  # the real re-score refuses params of another real side before any work
    params = load_params(REPO / "params.yaml", ["preset=null"])
    with pytest.raises(promotion.PromoteError, match="scored with evaluate.reference train, but these params say test"):
        promotion._rescore(params, REPO, "uri", old, "e" * 64, "train")
