"""Stacked MNIST, the 1,000-mode image benchmark: the source stacks three independently drawn mnist5k digits,
and the counter reads each channel's digit and scores modes and KL(p ‖ uniform) over the 1,000 triples."""
from __future__ import annotations

import math

import numpy as np
import pytest

from components.config import load_params
from components.data.source_data import SOURCES
from components.data.stacked import STACKED_IMAGES, stack_digits
from components.metrics.stacked import read_channels, stacked_mode_scores, triples
from conftest import REPO

PINNED_MNIST = REPO / "components" / "metrics" / "pinned" / "mnist5k-00f535826d6e"


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


def test_the_source_stacks_three_independent_digits_with_their_triple_as_class():
    params = load_params(REPO / "params.yaml", ["data.source=stacked_mnist"])
    data = SOURCES.get("stacked_mnist")(params.data)
    assert data.samples.shape == (STACKED_IMAGES, 3, 28, 28) and data.samples.dtype == np.uint8
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
