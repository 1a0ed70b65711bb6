"""Metrics on real data: a classifier evaluator trained on the 8×8 digits, FID/KID/IS/PRDC on sets whose
answer is known (a copy of the test set, one constant image, one class), an independent scipy FID, the
InceptionV3 path on a randomly initialised weights file, and the evaluator folder round trip."""
from __future__ import annotations

import hashlib
import math
import shutil

import numpy as np
import pytest
import scipy.linalg
import torch

from components.data.shards import load_split, read_manifest
from components.metrics import scores
from components.metrics.feature_nets import (
    FEATURE_NETS, ClassifierNet, InceptionV3, load_evaluator, load_inception, save_evaluator, train_classifier,
)
from conftest import REPO, tiny_params

# train_classifier with DIGITS_TRAINING on the digits test split (179 images): measured 0.983-0.994 over
# seeds 0-4, ~4 s on 2 threads. The bound leaves ~4 images of margin for thread-count / platform floats.
DIGITS_TRAINING = dict(epochs=12, batch_size=64, lr=4e-3, num_threads=2)
DIGITS_MIN_ACCURACY = 0.96


@pytest.fixture(scope="module")
def digits(digits_root):
    prepared = tiny_params(digits_root).prepared_path(digits_root)
    return prepared, load_split(prepared, "train"), load_split(prepared, "test")


@pytest.fixture(scope="module")
def evaluator(digits):
    _, (xtr, ytr), (xte, yte) = digits
    return train_classifier(xtr, ytr, xte, yte, seed=0, **DIGITS_TRAINING)


@pytest.fixture(scope="module")
def feats(evaluator, digits):
    """Features and logits of the train and test splits, computed once (as the evaluate stage does)."""
    net, _ = evaluator
    _, (xtr, _), (xte, _) = digits
    return {"train": net.features_and_logits(xtr), "test": net.features_and_logits(xte)}


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """Independent reference: Fréchet distance of the Gaussians fitted to a and b, matrix root by scipy."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(root)))


# --------------------------------------------------------------------------------------- evaluator

def test_classifier_learns_digits(evaluator):
    net, report = evaluator
    assert report["test_accuracy"] >= DIGITS_MIN_ACCURACY, report
    assert report["epochs"] == DIGITS_TRAINING["epochs"] and report["train_seconds"] > 0
    assert (net.feature_dim, net.num_classes, net.image_shape) == (128, 10, (1, 8, 8))
    assert not net.training


def test_classifier_training_is_deterministic(digits):
    _, (xtr, ytr), (xte, yte) = digits
    kw = dict(seed=3, epochs=1, batch_size=64, lr=1e-3, num_threads=1)
    rng_before = torch.get_rng_state()
    a, _ = train_classifier(xtr[:256], ytr[:256], xte, yte, **kw)
    b, _ = train_classifier(xtr[:256], ytr[:256], xte, yte, **kw)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG stream is untouched


def test_features_are_batched_in_eval_mode(evaluator, digits):
    net, _ = evaluator
    _, _, (xte, _) = digits
    whole_f, whole_l = net.features_and_logits(xte)
    net.batch_size = 7  # odd batches: eval-mode BatchNorm makes features independent of batching
    try:
        part_f, part_l = net.features_and_logits(torch.from_numpy(xte).float() / 127.5 - 1)  # float input too
    finally:
        net.batch_size = ClassifierNet.batch_size
    assert whole_f.shape == (len(xte), 128) and whole_l.shape == (len(xte), 10)
    torch.testing.assert_close(part_f, whole_f, rtol=1e-5, atol=1e-5)
    assert not whole_f.requires_grad


def test_classifier_refuses_tiny_images_and_other_shapes(evaluator):
    with pytest.raises(ValueError, match="at least 8"):
        ClassifierNet((1, 4, 4), 10)
    with pytest.raises(ValueError, match="1×8×8 images, got 1×16×16"):  # a generator of the wrong size
        evaluator[0].features(torch.zeros(2, 1, 16, 16))


def test_registry_names_every_network():
    assert FEATURE_NETS.names() == ["classifier", "inception", "per_channel"]


# --------------------------------------------------------------------------------------- FID / KID

def test_fid_matches_scipy_on_evaluator_features(feats):
    real, fake = feats["test"][0].double().numpy(), feats["train"][0].double().numpy()
    ours = scores.fid_kid(real, fake, kid_subset_size=100)["fid"]
    assert ours == pytest.approx(scipy_fid(real, fake), rel=1e-3)


def test_fid_matches_scipy_on_shifted_gaussians():
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(16, 16))
    real = rng.normal(size=(400, 16)) @ mix
    fake = rng.normal(size=(300, 16)) @ (mix * 1.3) + 0.5
    out = scores.fid_kid(real, fake, kid_subset_size=100)
    assert out["fid"] == pytest.approx(scipy_fid(real, fake), rel=1e-3)
    assert out["kid_mean"] > 0


def test_copy_of_test_set_scores_at_the_floor(feats):
    test_f, train_f = feats["test"][0], feats["train"][0]
    floor = scores.fid_kid(test_f, train_f, kid_subset_size=300)  # real vs real: held-out vs train split
    copied = scores.fid_kid(test_f, test_f.clone(), kid_subset_size=300)
    assert copied["fid"] == pytest.approx(0.0, abs=1e-6 * float(test_f.var(0).sum()))
    # The unbiased KID of a set against itself is negative (k(x, x) is left out of the within-set terms only).
    assert copied["fid"] <= floor["fid"] and copied["kid_mean"] <= max(floor["kid_mean"], 0.0) + 1e-3
    same = scores.prdc_scores(test_f, test_f.clone(), k=5)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    near = scores.prdc_scores(test_f, train_f, k=5)  # another draw of real digits: close to 1 as well
    assert near["precision"] > 0.85 and near["recall"] > 0.85, near


def test_constant_image_is_far_above_the_floor(feats, evaluator, digits):
    net, _ = evaluator
    _, _, (xte, _) = digits
    test_f, train_f = feats["test"][0], feats["train"][0]
    const_f = net.features(np.repeat(xte[:1], 400, axis=0))  # a "generator" that always draws one image
    floor = scores.fid_kid(test_f, train_f, kid_subset_size=300)
    const = scores.fid_kid(test_f, const_f, kid_subset_size=300)
    assert const["fid"] > 10 * floor["fid"] and const["kid_mean"] > 10 * abs(floor["kid_mean"]), (const, floor)
    assert scores.prdc_scores(test_f, const_f, k=5)["recall"] == pytest.approx(0.0, abs=0.01)


@pytest.mark.parametrize("cache_max", [scores.KID_KERNEL_CACHE_MAX, 100])  # whole kernels sliced / per subset
def test_kid_is_torchmetrics_kid(monkeypatch, cache_max):
    """Our KID draws the same subsets as torchmetrics' KernelInceptionDistance for a seed and computes the
    same estimator, only with the kernels computed once: the numbers agree to float rounding."""
    from torchmetrics.image.kid import KernelInceptionDistance

    monkeypatch.setattr(scores, "KID_KERNEL_CACHE_MAX", cache_max)
    rng = np.random.default_rng(2)
    real = torch.from_numpy(rng.normal(size=(300, 16)))
    fake = torch.from_numpy(rng.normal(size=(400, 16)) * 1.1 + 0.1)
    ours = scores.fid_kid(real, fake, kid_subset_size=120, kid_subsets=20, seed=7)
    torch.manual_seed(7)
    reference = KernelInceptionDistance(feature=scores.Precomputed(16), subsets=20, subset_size=120)
    reference.update(real, real=True)
    reference.update(fake, real=False)
    mean, std = reference.compute()
    assert ours["kid_mean"] == pytest.approx(float(mean), rel=1e-9, abs=1e-12) and float(mean) > 1e-3
    assert ours["kid_std"] == pytest.approx(float(std), rel=1e-9)


def test_kid_is_seeded():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 0.2
    a = scores.fid_kid(real, fake, kid_subset_size=50, seed=4)
    b = scores.fid_kid(real, fake, kid_subset_size=50, seed=4)
    assert a == b and a["kid_std"] > 0  # subsets of 50 out of 300 differ, the same ones for a seed


def test_too_few_samples_for_the_feature_dimension_is_refused(feats):
    test_f = feats["test"][0]  # 179 × 128
    with pytest.raises(ValueError, match=r"100 samples for 128-dimensional.*evaluate\.num_samples"):
        scores.fid_kid(test_f, test_f[:100], kid_subset_size=50)
    with pytest.raises(ValueError, match=r"128 samples for 128-dimensional.*data\.test_fraction"):
        scores.fid_kid(test_f[:128], test_f, kid_subset_size=50)
    with pytest.raises(ValueError, match=r"evaluate\.prdc_k"):
        scores.prdc_scores(test_f, test_f[:5], k=5)


# ------------------------------------------------------------------------------- classes, IS, all

def test_kl_to_uniform_bounds():
    assert scores.kl_to_uniform([0, 0, 7, 0]) == pytest.approx(math.log(4))
    assert scores.kl_to_uniform([5, 5, 5]) == pytest.approx(0.0)
    hist = scores.class_histogram(torch.eye(3)[[0, 0, 2]], 4)
    assert hist.tolist() == [2, 0, 1, 0]


def test_class_collapse_and_balance(evaluator, digits):
    net, _ = evaluator
    _, (xtr, ytr), _ = digits
    threes = net.logits(xtr[ytr == 3])  # "generator" that only draws 3s (from the data)
    balanced = net.logits(xtr)  # the stratified train split: every class about equally (IS splits of ~160)
    collapsed_kl = scores.kl_to_uniform(scores.class_histogram(threes, 10))
    assert collapsed_kl == pytest.approx(math.log(10), abs=0.05)
    assert scores.kl_to_uniform(scores.class_histogram(balanced, 10)) < 0.05
    assert scores.inception_score(balanced)["is_mean"] > 8  # confident and diverse: at most 10
    assert scores.inception_score(threes)["is_mean"] < 1.5  # confident, one class


def test_all_scores_report(feats):
    out = scores.all_scores(feats["test"], feats["train"], prdc_k=5, kid_subset_size=300)
    assert set(out) == {"fid", "kid_mean", "kid_std", "is_mean", "is_std", "precision", "recall", "density",
                        "coverage", "class_kl", "class_histogram"}
    assert sum(out["class_histogram"]) == len(feats["train"][0])
    assert all(math.isfinite(v) for k, v in out.items() if k != "class_histogram")


# ------------------------------------------------------------------------------- evaluator folder

def test_evaluator_round_trip_and_tamper(evaluator, digits, tmp_path):
    net, report = evaluator
    prepared, _, (xte, _) = digits
    content_hash = read_manifest(prepared)["content_hash"]
    info = save_evaluator(net, report, {"dataset": "digits", "content_hash": content_hash}, tmp_path / "ev")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ev"]  # atomic: no temp folder left beside it
    weights = tmp_path / "ev" / "evaluator.safetensors"
    assert info["hash"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert (info["kind"], info["content_hash"], info["feature_dim"]) == ("classifier", content_hash, 128)
    assert info["test_accuracy"] == report["test_accuracy"] and info["image_shape"] == [1, 8, 8]

    loaded, loaded_info = load_evaluator(tmp_path / "ev")
    assert loaded_info == info and not loaded.training
    assert torch.equal(loaded.features(xte), net.features(xte))

    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit of one weight
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="evaluator.safetensors"):
        load_evaluator(tmp_path / "ev")


def test_missing_evaluator_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="evaluator.json"):
        load_evaluator(tmp_path)


# ------------------------------------------------------------------------------------ InceptionV3

# sha256 of the sorted "key:[shape]" lines of torch-fidelity 0.4.0's FeatureExtractorInceptionV3 state dict,
# the module that loads pt_inception-2015-12-05-6726825d.pth strictly (computed once from its source; the
# package itself cannot be imported here, it needs torchvision).
PT_INCEPTION_KEYS_SHA256 = "cd36bcf4883935e5bc430934132957704fa70f7dfec1eeb2fcfc3288bc5075c9"


@pytest.fixture(scope="module")
def random_inception_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("inception") / "pt_inception-random.pth"
    torch.save(InceptionV3().state_dict(), path)  # random weights, the real file's keys
    return path


def test_inception_architecture_matches_pt_inception_keys():
    lines = "\n".join(f"{k}:{list(v.shape)}" for k, v in sorted(InceptionV3().state_dict().items()))
    assert hashlib.sha256(lines.encode()).hexdigest() == PT_INCEPTION_KEYS_SHA256


def test_inception_from_local_file(random_inception_file, digits):
    _, _, (xte, _) = digits
    net, info = load_inception(random_inception_file)
    f, logits = net.features_and_logits(xte[:3])  # 1×8×8 grey → 3×299×299
    assert f.shape == (3, 2048) and logits.shape == (3, 1008) and torch.isfinite(f).all()
    assert info["hash"] == hashlib.sha256(random_inception_file.read_bytes()).hexdigest()
    assert (info["feature_dim"], info["num_classes"]) == (2048, 1008)


def test_inception_needs_a_path():
    for missing in (None, ""):
        with pytest.raises(ValueError, match=r"evaluator\.inception_weights.*never downloaded"):
            load_inception(missing)
    with pytest.raises(FileNotFoundError, match=r"evaluator\.inception_weights"):
        load_inception("/nonexistent/pt_inception.pth")


def test_inception_refuses_foreign_weights(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(ValueError, match="other.pth"):
        load_inception(path)


def test_inception_evaluator_folder_pins_the_file(random_inception_file, tmp_path):
    user_file = tmp_path / "pt_inception.pth"
    shutil.copy(random_inception_file, user_file)
    net, info = load_inception(user_file)
    saved = save_evaluator(net, {}, {"image_shape": [1, 8, 8]}, tmp_path / "ev")
    assert (saved["hash"], saved["weights"], saved["image_shape"]) == (info["hash"], str(user_file), [1, 8, 8])
    assert not (tmp_path / "ev" / "evaluator.safetensors").exists()  # referenced, not copied
    loaded, _ = load_evaluator(tmp_path / "ev")
    assert isinstance(loaded, InceptionV3) and loaded.weights_path == str(user_file)
    torch.save({k: v + 1 if v.is_floating_point() else v for k, v in net.state_dict().items()}, user_file)
    with pytest.raises(ValueError, match="pt_inception.pth"):  # the user's file changed under the evaluator
        load_evaluator(tmp_path / "ev")
