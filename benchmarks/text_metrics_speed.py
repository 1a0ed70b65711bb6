"""Seconds for BLEU-2..5 and Self-BLEU-2..5 (components/metrics/text.py) on 1,000 generated × 1,000
reference random 20-token sentences, on one CPU core, and nltk's own per-sentence loop on a few
hypotheses for scale (extrapolated to 1,000). Not part of the test suite.

    python benchmarks/text_metrics_speed.py [--sentences 1000] [--length 20] [--vocab 5000]
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from components.metrics.text import bleu, bleu_scores, self_bleu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--length", type=int, default=20)
    parser.add_argument("--vocab", type=int, default=5000)
    parser.add_argument("--nltk-hypotheses", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    samples = rng.integers(0, args.vocab, (args.sentences, args.length)).tolist()
    references = rng.integers(0, args.vocab, (args.sentences, args.length)).tolist()
    bleu(samples[:2], references[:2], 2)  # loads nltk (~2 s) outside the timings

    def timed(label, fn):
        start = time.perf_counter()
        value = fn()
        print(f"{label:<28} {time.perf_counter() - start:7.3f} s")
        return value

    timed("bleu (n=5)", lambda: bleu(samples, references, 5))
    timed("self_bleu (n=5)", lambda: self_bleu(samples, 5))
    timed("bleu_scores (2..5, both)", lambda: bleu_scores(samples, references, max_n=5))

    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    k = args.nltk_hypotheses
    start = time.perf_counter()
    slow = [sentence_bleu(references, h, weights=(0.2,) * 5, smoothing_function=SmoothingFunction().method1)
            for h in samples[:k]]
    per = (time.perf_counter() - start) / k
    assert math.isclose(math.fsum(slow) / k, bleu(samples[:k], references, 5), rel_tol=1e-12)
    print(f"{'nltk loop, bleu (n=5)':<28} {per * len(samples):7.1f} s (extrapolated from {k} hypotheses)")


if __name__ == "__main__":
    main()
