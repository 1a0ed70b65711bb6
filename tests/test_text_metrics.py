"""BLEU / Self-BLEU (components/metrics/text.py) against their definition: nltk's sentence_bleu with
method1 smoothing, called sentence by sentence (the slow O(H·R) loop the fast path replaces)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from components.metrics.text import bleu, bleu_scores, self_bleu, strip_after_eos

ORDERS = [2, 3, 4, 5]


def nltk_bleu(hypotheses, references, n):
    smooth = SmoothingFunction().method1
    return math.fsum(sentence_bleu(references, h, weights=(1 / n,) * n, smoothing_function=smooth)
                     for h in hypotheses) / len(hypotheses)


def nltk_self_bleu(samples, n):
    smooth = SmoothingFunction().method1
    return math.fsum(sentence_bleu(samples[:i] + samples[i + 1:], s, weights=(1 / n,) * n, smoothing_function=smooth)
                     for i, s in enumerate(samples)) / len(samples)


def random_sentences(rng, count, vocab, min_len, max_len):
    return [rng.integers(0, vocab, int(rng.integers(min_len, max_len + 1))).tolist() for _ in range(count)]


REFERENCES = ["the cat sat on the mat near the door".split(),
              "a dog lay on the rug by the fire".split(),
              "the cat is sleeping on a warm mat".split()]
HYPOTHESES = ["the cat sat on the warm mat by the fire".split(),  # shares two 4-grams
              "the cat sat".split(),  # shorter than 4 and 5: those orders score nltk's 0.1/1
              "dog the on mat cat rug the".split()]  # unigrams only: no bigram, hence no 4-gram, in common
# Computed once with nltk 3.10.4 (sentence_bleu, method1), mean over HYPOTHESES, rounded to 1e-9: a change
# in nltk's definition shows here even though the comparison with the live nltk loop would still pass.
NLTK_3_10_4 = {2: 0.394235387, 3: 0.326300472, 4: 0.243379624, 5: 0.189282512}


@pytest.mark.parametrize("n", ORDERS)
def test_sentence_against_itself_is_one(n):
    sentence = "a generative model wrote this rather short sentence".split()
    assert bleu([sentence], [sentence], n) == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("n", ORDERS)
def test_hand_made_set_matches_nltk_and_recorded_values(n):
    assert bleu(HYPOTHESES, REFERENCES, n) == pytest.approx(nltk_bleu(HYPOTHESES, REFERENCES, n), rel=1e-12)
    assert bleu(HYPOTHESES, REFERENCES, n) == pytest.approx(NLTK_3_10_4[n], abs=1e-9)


@pytest.mark.parametrize("n", ORDERS)
def test_random_sentences_match_nltk_loop(n):
    rng = np.random.default_rng(1234)
    hypotheses = random_sentences(rng, 60, vocab=30, min_len=3, max_len=20)
    references = random_sentences(rng, 80, vocab=30, min_len=3, max_len=20)
    assert bleu(hypotheses, references, n) == pytest.approx(nltk_bleu(hypotheses, references, n), rel=1e-12)
    assert self_bleu(hypotheses, n) == pytest.approx(nltk_self_bleu(hypotheses, n), rel=1e-12)


@pytest.mark.parametrize("n", [1, *ORDERS])
def test_edge_cases_match_nltk_loop(n):
    """A 3-token vocabulary repeats n-grams within a sentence (clipping, and for Self-BLEU the runner-up
    count when a sample holds the most), lengths 0..8 give empty hypotheses and ones shorter than n, and
    many equal lengths / ties for the closest reference length."""
    rng = np.random.default_rng(7)
    samples = random_sentences(rng, 40, vocab=3, min_len=0, max_len=8)
    references = random_sentences(rng, 25, vocab=4, min_len=0, max_len=8)
    samples += [[0, 0, 0, 0, 0, 0], [0, 0, 0], [5, 5], []]  # one sample holds an n-gram far more than others
    assert bleu(samples, references, n) == pytest.approx(nltk_bleu(samples, references, n), rel=1e-12)
    assert self_bleu(samples, n) == pytest.approx(nltk_self_bleu(samples, n), rel=1e-12)


def test_empty_hypothesis_and_no_unigram_match_score_zero():
    assert bleu([[]], REFERENCES, 4) == 0.0
    assert bleu([["zebra", "xylophone"]], REFERENCES, 4) == 0.0
    assert nltk_bleu([[]], REFERENCES, 4) == 0.0


@pytest.mark.parametrize("n", ORDERS)
def test_self_bleu_identical_samples_is_one(n):
    sample = "the same sentence again and again and again".split()
    assert self_bleu([list(sample) for _ in range(5)], n) == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("n", ORDERS)
def test_self_bleu_disjoint_vocabularies_is_about_zero(n):
    rng = np.random.default_rng(3)
    samples = [(rng.integers(0, 10, 12) + 10 * i).tolist() for i in range(6)]  # sample i: tokens 10i..10i+9
    score = self_bleu(samples, n)
    assert score < 0.05
    assert score == 0.0  # nltk returns 0 outright when no unigram matches, before any smoothing


def test_bleu_scores_keys_and_values():
    rng = np.random.default_rng(11)
    samples = random_sentences(rng, 30, vocab=20, min_len=3, max_len=15)
    references = random_sentences(rng, 20, vocab=20, min_len=3, max_len=15)
    scores = bleu_scores(samples, references, max_n=4, self_samples=samples[:10])
    assert list(scores) == ["bleu2", "bleu3", "bleu4", "self_bleu2", "self_bleu3", "self_bleu4"]
    for n in [2, 3, 4]:
        assert scores[f"bleu{n}"] == bleu(samples, references, n)
        assert scores[f"self_bleu{n}"] == pytest.approx(nltk_self_bleu(samples[:10], n), rel=1e-12)
    assert bleu_scores(samples, references, max_n=2)["self_bleu2"] == self_bleu(samples, 2)


def test_rejects_what_nltk_cannot_score():
    with pytest.raises(ValueError):
        bleu([["a"]], [], 2)
    with pytest.raises(ValueError):
        bleu([], [["a"]], 2)
    with pytest.raises(ValueError):
        self_bleu([["a", "b"]], 2)
    with pytest.raises(ValueError):
        bleu([["a"]], [["a"]], 0)
    with pytest.raises(ValueError):
        bleu_scores([["a"]], [["a"]], max_n=1)


def test_strip_after_eos():
    assert strip_after_eos([5, 6, 2, 7, 2], eos=2) == [5, 6]
    assert strip_after_eos([2, 5, 6], eos=2) == []
    assert strip_after_eos([5, 6, 7], eos=2) == [5, 6, 7]
    assert strip_after_eos([5, 2, 7], eos=None) == [5, 2, 7]
    assert strip_after_eos([], eos=2) == []
    ids = strip_after_eos(np.array([[4, 3, 0, 0]])[0], eos=0)
    assert ids == [4, 3] and all(type(t) is int for t in ids)
    with pytest.raises(ValueError):
        strip_after_eos(np.zeros((2, 3), dtype=np.int64), eos=0)
    with pytest.raises(TypeError):
        strip_after_eos(np.array([1.0, 2.0]), eos=2)
