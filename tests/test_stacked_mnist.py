"""Stacked MNIST, the 1,000-mode image benchmark: the source stacks three independently drawn mnist5k digits,
and the counter reads each channel's digit and scores modes and KL(p ‖ uniform) over the 1,000 triples."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from components.config import load_params
from components.data.source_data import SOURCES
from components.data.stacked import STACKED_TEST, STACKED_TRAIN, stack_digits
from components.metrics.stacked import PerChannelClassifier, channel_kls, read_channels, stacked_mode_scores, triples
from conftest import REPO

PINNED_MNIST = REPO / "components" / "metrics" / "pinned" / "mnist5k-00f535826d6e"
STACKED = ["data.source=stacked_mnist", "evaluator.kind=per_channel"]


def test_the_counter_scores_every_triple_equally_often_as_1000_modes_and_one_triple_as_one():
    every = np.array([[k // 100, k // 10 % 10, k % 10] for k in range(1000)] * 26)  # 26,000 samples, as PacGAN
    scores = stacked_mode_scores(every)
    assert scores["modes"] == 1000 and scores["reverse_kl"] == pytest.approx(0.0, abs=1e-12)
    one = stacked_mode_scores(np.tile([[3, 1, 4]], (26_000, 1)))
    assert one["modes"] == 1 and one["reverse_kl"] == pytest.approx(math.log(1000))
    half = stacked_mode_scores(every[:500])  # triples 0…499 once each: half the modes, KL log 2
    assert half["modes"] == 500 and half["reverse_kl"] == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="expected \\(N, 3\\) digits in 0..9"):
        triples(np.array([[1, 2, 10]]))


def test_the_triples_kl_splits_into_each_channels_kl_plus_their_dependence():
    """channel_kls: uneven digits on a channel show in that channel's KL; digits paired across channels show
    only in the triples' KL (the rest, the total correlation)."""
    rng = np.random.default_rng(0)
    uneven = rng.choice(10, size=(26_000, 3), p=[0.28] + [0.08] * 9)  # every channel draws too many 0s
    kls, total = channel_kls(triples(uneven)), stacked_mode_scores(uneven)["reverse_kl"]
    expected = float(0.28 * np.log(2.8) + 0.72 * np.log(0.8))
    assert kls == pytest.approx([expected] * 3, abs=0.012) and total == pytest.approx(sum(kls), abs=0.03)
    copied = np.repeat(rng.integers(0, 10, size=(26_000, 1)), 3, axis=1)  # all three channels the same digit
    kls, total = channel_kls(triples(copied)), stacked_mode_scores(copied)["reverse_kl"]
    assert max(kls) < 0.001 and total == pytest.approx(np.log(100), abs=0.002)  # 10 of 1,000 triples


def test_the_counter_reads_real_stacked_digits_with_the_pinned_mnist_classifier():
    """Every triple built from real mnist5k digits is read back by the pinned evaluator's classifier."""
    from components.metrics.feature_nets import load_evaluator

    classifier, _ = load_evaluator(PINNED_MNIST)

    def classify(x):
        return classifier.features_and_logits(x)[1].argmax(1).numpy()

    base = SOURCES.get("mnist5k")(load_params(REPO / "params.yaml").data)
    picks = np.random.default_rng(0).choice(len(base.samples), 400, replace=False)  # the file is sorted by class
    read = classify(base.samples[picks])
    representative = [base.samples[picks][(read == d) & (base.labels[picks] == d)][0] for d in range(10)]
    every = np.array([[k // 100, k // 10 % 10, k % 10] for k in range(1000)])
    images = np.stack([np.concatenate([representative[d] for d in row]) for row in every])  # (1000, 3, 28, 28)
    digits = read_channels(classify, images)
    assert (digits == every).all()
    scores = stacked_mode_scores(digits)
    assert scores["modes"] == 1000 and scores["reverse_kl"] == pytest.approx(0.0, abs=1e-12)

    # the per_channel evaluator around the same classifier: its logits over the 1,000 triples are the sum
    # of the channels' log-probabilities, so its argmax is the triple read channel by channel
    reader = PerChannelClassifier.around(classifier, 3)
    feats, joint = reader.features_and_logits(images)
    assert feats.shape == (1000, 3 * classifier.feature_dim) and joint.shape == (1000, 1000)
    logp = torch.log_softmax(classifier.features_and_logits(images.reshape(3000, 1, 28, 28))[1], 1).reshape(1000, 3, 10)
    a, b, c = 314 // 100, 314 // 10 % 10, 314 % 10
    assert torch.allclose(joint[:, 314], logp[:, 0, a] + logp[:, 1, b] + logp[:, 2, c], atol=1e-5)
    assert (joint.argmax(1).numpy() == triples(every)).all()
    assert reader.set_scores(joint) == {"modes": 1000, "reverse_kl": pytest.approx(0.0, abs=1e-12)}
    assert reader.set_scores(joint[:1].repeat(50, 1))["modes"] == 1


def test_the_evaluator_stage_trains_a_digit_reader_on_held_out_digits_and_evaluate_counts_modes(tmp_path):
    """prepare → evaluator (per_channel) → the held-out Stacked MNIST images scored as if generated: the
    modes found are the triples present, and what the stage refuses."""
    from components.config import ConfigError
    from components.data.shards import load_split, read_manifest
    from components.evaluation import TestSplit, open_evaluator
    from pipelines import evaluator, prepare

    params = load_params(REPO / "params.yaml", [*STACKED, f"data.prepared_dir={tmp_path / 'prepared'}",
                                                f"evaluator.output_dir={tmp_path / 'evaluator'}", "evaluator.epochs=3"])
    prepare.run(params, tmp_path)
    info = evaluator.run(params, tmp_path)
    assert info["kind"] == "per_channel" and info["num_classes"] == 1000 and info["feature_dim"] == 384
    report = info["report"]
    assert report["digit_images"] > 4000 and report["held_out_digits"] == report["digit_images"] // 10
    assert report["test_accuracy"] > 0.9  # read on digits the reader never trained on
    scorer = open_evaluator(params, tmp_path)
    test = TestSplit.load(params.prepared_path(tmp_path))
    m = scorer.score(scorer.reference(test), test.x, None, params)
    present = len(np.unique(load_split(params.prepared_path(tmp_path), "test")[1]))
    assert abs(m["modes"] - present) <= 0.05 * present and m["fid"] < 1e-3
    assert m["class_kl"] == pytest.approx(m["reverse_kl"])  # the class histogram is the triples' histogram
    assert read_manifest(params.prepared_path(tmp_path))["num_classes"] == 1000
    with pytest.raises(ConfigError, match="stacked_mnist is scored by reading one digit per channel"):
        load_params(REPO / "params.yaml", ["data.source=stacked_mnist"])
    with pytest.raises(ConfigError, match="per_channel reads one digit per channel of Stacked MNIST"):
        load_params(REPO / "params.yaml", ["evaluator.kind=per_channel"])


def test_the_source_stacks_three_independent_digits_with_their_triple_as_class():
    params = load_params(REPO / "params.yaml", STACKED)
    data = SOURCES.get("stacked_mnist")(params.data)
    assert data.samples.shape == (STACKED_TRAIN + STACKED_TEST, 3, 28, 28) and data.samples.dtype == np.uint8
    assert STACKED_TRAIN == 128_000 and data.test_rows.tolist() == list(range(STACKED_TRAIN, len(data.samples)))
    assert len(data.class_names) == 1000 and len(np.unique(data.labels)) == 1000  # every mode in the data
    base = SOURCES.get("mnist5k")(params.data)
    images, labels = stack_digits(base.samples, base.labels, 50, seed=7)
    for img, label in zip(images, labels):  # each channel is one mnist5k digit, the class its triple
        found = [np.flatnonzero((base.samples[:, 0] == channel).all(axis=(1, 2))) for channel in img]
        assert all(len(f) for f in found)
        assert label in {100 * base.labels[a] + 10 * base.labels[b] + base.labels[c]
                         for a in found[0] for b in found[1] for c in found[2]}
    d = np.stack([data.labels // 100, data.labels // 10 % 10, data.labels % 10], 1)
    assert abs(np.corrcoef(d.T)[0, 1]) < 0.03 and abs(np.corrcoef(d.T)[1, 2]) < 0.03  # drawn independently
    again = SOURCES.get("stacked_mnist")(params.data)
    assert np.array_equal(again.samples, data.samples) and np.array_equal(again.labels, data.labels)


def test_the_128k_training_triples_cover_all_1000_modes_with_multinomial_counts():
    """PacGAN's 128,000 training images: every triple occurs, each as often as the multinomial of the pool's
    digit frequencies allows (each count within 5 binomial standard deviations, the Pearson χ² of the 1,000
    counts within 5 of its own standard deviations of its mean), so no triple is over- or under-drawn."""
    params = load_params(REPO / "params.yaml", STACKED)
    data = SOURCES.get("stacked_mnist")(params.data)
    counts = np.bincount(data.labels[:STACKED_TRAIN], minlength=1000)
    assert counts.sum() == 128_000 and (counts > 0).all()
    base = SOURCES.get("mnist5k")(params.data)
    p_digit = np.bincount(base.labels, minlength=10) / len(base.labels)  # the 5,000-digit pool's frequencies
    p = np.einsum("i,j,k->ijk", p_digit, p_digit, p_digit).ravel()  # triple 100·a + 10·b + c
    mean, sd = 128_000 * p, np.sqrt(128_000 * p * (1 - p))
    assert (np.abs(counts - mean) < 5 * sd).all()
    chi2 = (((counts - mean) ** 2) / mean).sum()
    assert abs(chi2 - 999) < 5 * math.sqrt(2 * 999)
    uniform = np.full(1000, 128.0)  # and not the uniform draw: the pool's unequal digit counts show
    assert (((counts - uniform) ** 2) / uniform).sum() > chi2


def test_the_report_reuses_a_committed_recount_only_for_the_same_samples_under_the_same_reader(tmp_path):
    """benchmarks/stacked_report.py recounts only what changed: a run's committed recount is kept when its
    samples file has the committed SHA-256 and the reader is the one it was counted with; any other file or
    reader is counted afresh."""
    import hashlib
    import importlib.util
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))  # the script imports its sibling fusion_report
    try:
        spec = importlib.util.spec_from_file_location("stacked_report", REPO / "benchmarks" / "stacked_report.py")
        report = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(report)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    samples = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
    path = tmp_path / "dcgan-s0.npz"
    np.savez(path, samples=samples)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    counted = []

    def count(u8):
        counted.append(u8.copy())
        return {"modes": 7}

    kept = {"modes": 1000, "sha256": digest}
    before = {"evaluator_hashes": ["reader-a"], "recount": {"dcgan-s0": kept}}
    assert report.kept_or_counted(path, before, ["reader-a"], count) == kept and not counted
    assert report.kept_or_counted(path, before, ["reader-b"], count) == {"modes": 7, "sha256": digest}
    assert np.array_equal(counted[-1], samples)  # the file's own samples were counted
    np.savez(path, samples=samples[::-1])  # new samples under the same name
    again = report.kept_or_counted(path, before, ["reader-a"], count)
    assert again["modes"] == 7 and again["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() != digest
    assert np.array_equal(counted[-1], samples[::-1]) and len(counted) == 2
