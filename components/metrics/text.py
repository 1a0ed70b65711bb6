"""BLEU and Self-BLEU of generated text, as Texygen defines them (Zhu et al. 2018, "Texygen").

- BLEU-n: every hypothesis is scored by nltk's `sentence_bleu` with ALL reference sentences as its
  references, weights (1/n,)*n and `SmoothingFunction().method1`; the score is the mean over hypotheses.
- Self-BLEU-n: every sample is the hypothesis and all OTHER samples are its references; mean over samples
  (lower = more diverse). This is what Texygen's get_score runs (get_bleu_parallel); its unused serial
  get_bleu leaves each hypothesis among its own references.
Texygen's default (is_fast) keeps only the first 500 reference sentences for BLEU and the first 500 samples
for Self-BLEU; here the caller chooses the sets.

nltk is the definition. Called as is, it recounts every reference's n-grams for every hypothesis
(O(H·R) Counters: minutes for 1,000 × 1,000). Here the references are counted once: per n-gram the most
any reference holds (for Self-BLEU also the runner-up and who holds the most, so a sample's own counts
can be left out), and each hypothesis is clipped against that. From these sufficient statistics the score
is rebuilt with nltk's rules: its modified precision (clipped / max(1, n-gram count)), its closest
reference length and brevity penalty (both called from nltk), method1's epsilon on a zero numerator and
its log-space geometric mean. tests/test_text_metrics.py checks the result against nltk's own loop.

Sentences are token lists (strings or ints); `strip_after_eos` turns a fixed-length id sequence into one.
nltk loads lazily: importing it pulls in scipy and scikit-learn (~2 s).
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import NamedTuple

import numpy as np

from components.lazy import LazyModule

_bleu_score = LazyModule("nltk.translate.bleu_score")
_nltk_util = LazyModule("nltk.util")

Sentence = Sequence[Hashable]


class _Stats(NamedTuple):
    """nltk's per-hypothesis sufficient statistics, orders 1..max_n at index 0..max_n-1."""
    clipped: list[list[int]]  # modified-precision numerators
    totals: list[list[int]]  # modified-precision denominators (max(1, hypothesis n-grams))
    hyp_lens: list[int]
    ref_lens: list[int]  # the closest reference length, nltk's rule


def strip_after_eos(ids: Sequence[int] | np.ndarray, eos: int | None) -> list[int]:
    """The ids of one sequence (list, numpy array or CPU tensor) before the first `eos`; all of them when
    `eos` is None or absent."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"one sequence of ids expected, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"token ids must be integers, got {arr.dtype}")
    tokens = [int(t) for t in arr.tolist()]  # plain ints: numpy scalars hash slower in the n-gram tables
    if eos is not None and eos in tokens:
        tokens = tokens[: tokens.index(eos)]
    return tokens


def bleu(hypotheses: Sequence[Sentence], references: Sequence[Sentence], max_n: int) -> float:
    """Texygen's BLEU-`max_n`: mean over hypotheses of nltk's sentence BLEU against all references."""
    _check_order(max_n)
    return _mean_scores(_bleu_stats(hypotheses, references, max_n), [max_n])[max_n]


def self_bleu(samples: Sequence[Sentence], max_n: int) -> float:
    """Texygen's Self-BLEU-`max_n`: mean over samples of nltk's sentence BLEU against all other samples."""
    _check_order(max_n)
    return _mean_scores(_self_bleu_stats(samples, max_n), [max_n])[max_n]


def bleu_scores(samples: Sequence[Sentence], references: Sequence[Sentence], max_n: int = 5,
                self_samples: Sequence[Sentence] | None = None) -> dict[str, float]:
    """{"bleu2"…"bleu{max_n}", "self_bleu2"…"self_bleu{max_n}"}. Self-BLEU is O(N²) in nltk's reference
    definition and rises with N (more chances to match), so callers may pass a fixed-size subset as
    `self_samples` (default: all `samples`); compare Self-BLEU only at equal N."""
    _check_order(max_n)
    if max_n < 2:
        raise ValueError(f"max_n must be at least 2 (BLEU-2..BLEU-max_n), got {max_n}")
    orders = list(range(2, max_n + 1))
    out = {f"bleu{n}": s for n, s in _mean_scores(_bleu_stats(samples, references, max_n), orders).items()}
    own = samples if self_samples is None else self_samples
    out |= {f"self_bleu{n}": s for n, s in _mean_scores(_self_bleu_stats(own, max_n), orders).items()}
    return out


def _check_order(max_n: int) -> None:
    if isinstance(max_n, bool) or not isinstance(max_n, int) or max_n < 1:
        raise ValueError(f"max_n must be a positive int, got {max_n!r}")


def _ngram_counts(sentences: Sequence[Sentence], max_n: int) -> list[list[Counter]]:
    """[order-1][sentence] → Counter of its n-grams; empty for a sentence shorter than the order, as in
    nltk's modified_precision."""
    ngrams = _nltk_util.ngrams
    return [[Counter(ngrams(s, n)) for s in sentences] for n in range(1, max_n + 1)]


def _closest_length(candidates: list[int]):
    """hyp_len → nltk's closest_ref_length over references of these lengths (the closest, ties to the
    shorter), memoised: it only reads len() of each reference, so ranges stand in for the sentences."""
    proxies = [range(length) for length in candidates]
    closest_ref_length = _bleu_score.closest_ref_length
    cache: dict[int, int] = {}

    def closest(hyp_len: int) -> int:
        if hyp_len not in cache:
            cache[hyp_len] = closest_ref_length(proxies, hyp_len)
        return cache[hyp_len]
    return closest


def _bleu_stats(hypotheses: Sequence[Sentence], references: Sequence[Sentence], max_n: int) -> _Stats:
    if len(hypotheses) == 0 or len(references) == 0:
        raise ValueError(f"BLEU needs hypotheses and references, got {len(hypotheses)} and {len(references)}")
    hyp_counts = _ngram_counts(hypotheses, max_n)
    clipped: list[list[int]] = [[] for _ in hypotheses]
    totals: list[list[int]] = [[] for _ in hypotheses]
    for order_counts, ref_counts in zip(hyp_counts, _ngram_counts(references, max_n)):
        # The most any single reference holds of each n-gram: nltk's per-hypothesis max over references,
        # computed once. An n-gram no reference holds clips to 0.
        most: dict = {}
        for counts in ref_counts:
            for gram, c in counts.items():
                if c > most.get(gram, 0):
                    most[gram] = c
        for h, counts in enumerate(order_counts):
            clipped[h].append(sum(min(c, most.get(gram, 0)) for gram, c in counts.items()))
            totals[h].append(max(1, sum(counts.values())))
    hyp_lens = [len(s) for s in hypotheses]
    closest = _closest_length(sorted({len(r) for r in references}))
    return _Stats(clipped, totals, hyp_lens, [closest(n) for n in hyp_lens])


def _self_bleu_stats(samples: Sequence[Sentence], max_n: int) -> _Stats:
    if len(samples) < 2:
        raise ValueError(f"Self-BLEU needs at least 2 samples (each is scored against the others), "
                         f"got {len(samples)}")
    counts_by_order = _ngram_counts(samples, max_n)
    clipped: list[list[int]] = [[] for _ in samples]
    totals: list[list[int]] = [[] for _ in samples]
    for order_counts in counts_by_order:
        # Per n-gram [largest count, sample holding it, largest count among all other samples]: the most
        # any sample other than i holds is the runner-up when i holds the largest, else the largest. A tie
        # for the largest makes the runner-up equal to it, so which holder is recorded does not matter.
        top: dict = {}
        for i, counts in enumerate(order_counts):
            for gram, c in counts.items():
                entry = top.get(gram)
                if entry is None:
                    top[gram] = [c, i, 0]
                elif c > entry[0]:
                    entry[2], entry[0], entry[1] = entry[0], c, i
                elif c > entry[2]:
                    entry[2] = c
        for i, counts in enumerate(order_counts):
            num = 0
            for gram, c in counts.items():
                best, holder, runner_up = top[gram]
                num += min(c, runner_up if holder == i else best)
            clipped[i].append(num)
            totals[i].append(max(1, sum(counts.values())))
    hyp_lens = [len(s) for s in samples]
    # The closest length among the OTHER samples: a length only this sample has is not a candidate for it.
    how_many = Counter(hyp_lens)
    everyone = _closest_length(sorted(how_many))
    unique = {n: _closest_length(sorted(set(how_many) - {n})) for n, k in how_many.items() if k == 1}
    ref_lens = [unique[n](n) if n in unique else everyone(n) for n in hyp_lens]
    return _Stats(clipped, totals, hyp_lens, ref_lens)


def _mean_scores(stats: _Stats, orders: list[int]) -> dict[int, float]:
    """n → mean over hypotheses of nltk's sentence BLEU-n rebuilt from `stats`."""
    epsilon = _bleu_score.SmoothingFunction().epsilon  # method1's 0.1
    brevity_penalty = _bleu_score.brevity_penalty
    scores: dict[int, list[float]] = {n: [] for n in orders}
    for clipped, totals, hyp_len, ref_len in zip(*stats):
        if clipped[0] == 0:
            # nltk returns 0 outright when no unigram matches (this covers the empty hypothesis), before
            # smoothing or the brevity penalty.
            for n in orders:
                scores[n].append(0.0)
            continue
        bp = brevity_penalty(ref_len, hyp_len)
        # method1 replaces a zero numerator by epsilon over the UNREDUCED denominator (nltk's Fraction keeps
        # it: _normalize=False); an order longer than the hypothesis has denominator 1, i.e. precision 0.1.
        logs = [math.log(c / t if c else epsilon / t) for c, t in zip(clipped, totals)]
        for n in orders:
            weight = 1 / n
            scores[n].append(float(bp * math.exp(math.fsum(weight * log for log in logs[:n]))))
    return {n: math.fsum(s) / len(s) for n, s in scores.items()}
