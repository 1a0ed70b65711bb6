"""Quality–diversity curves of a text model (Caccia et al., "Language GANs Falling Short", ICLR 2020).

Lowering the sampling temperature trades diversity for quality, so a GAN's gain at temperature 1 says nothing
until it is placed on MLE's temperature curve. For each temperature T the model samples from
softmax(logits / T) and is scored by:
- NLL_test: the tempered model's per-token NLL of the held-out sequences (diversity: lower covers more of it);
- the text scorer's quality numbers at that temperature: NLL_oracle on oracle data, BLEU-4 and Self-BLEU-4 on
  real text (components/metrics/text_scorer.py `curve_point`), and the share of empty sentences.

`matched` reads a reference curve (MLE's) at another model's NLL_test: the quality MLE reaches at the same
diversity by temperature alone. Only the curve's quality side is read (from the temperature of its least
NLL_test down, where lowering T sharpens the model), in order of the matching metric; a value outside it is
clamped to its end and said (`in_range`: a gain read there is not a comparison at equal diversity)."""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch


@torch.no_grad()
def tempered_nll(g, tokens: torch.Tensor, temperature: float, batch: int = 1000) -> float:
    """Mean per-token NLL of `tokens` under the generator sampled at `temperature` (nats)."""
    total = sum(-g(tokens[i : i + batch], temperature).double().sum().item() for i in range(0, len(tokens), batch))
    return total / tokens.numel()


def curve(g, family, params, scorer, test_tokens: torch.Tensor, temperatures: Sequence[float], samples: int,
          seed: int) -> list[dict]:
    """One row per temperature: {temperature, nll_test, <the scorer's curve metrics>}. Every temperature draws
    with the same seed."""
    rows = []
    for t in temperatures:
        fake = family.draw(g, samples, seed, None, {"temperature": float(t)}, 0)
        rows.append({"temperature": float(t), "nll_test": tempered_nll(g, test_tokens, float(t)),
                     **scorer.curve_point(fake)})
    return rows


class Matched(NamedTuple):
    value: float  # the reference curve's `key` at the matched point
    temperature: float  # the temperature MLE needs to get there
    in_range: bool  # False: the value lay outside the curve's quality side and was clamped to its end


def matched(reference: list[dict], on: str, value: float, key: str) -> Matched:
    """`key` of the `reference` curve where its `on` equals `value`, linearly interpolated along its quality
    side: the temperatures from the one where `on` is least (≈ 1 for MLE's NLL_test) down, sorted by `on`."""
    ordered = sorted(reference, key=lambda r: r["temperature"])
    if not ordered:
        raise ValueError("the reference curve has no points")
    best = min(range(len(ordered)), key=lambda i: ordered[i][on])
    side = sorted(ordered[: best + 1], key=lambda r: r[on])
    x = np.array([r[on] for r in side], float)
    in_range = bool(x[0] <= value <= x[-1])
    v = float(np.clip(value, x[0], x[-1]))
    return Matched(float(np.interp(v, x, [r[key] for r in side])),
                   float(np.interp(v, x, [r["temperature"] for r in side])), in_range)


def matched_gain(reference: list[dict], model: dict, on: str, key: str) -> float:
    """`model`'s `key` minus the reference curve's at the same `on`: for NLL_oracle below zero is better than
    temperature-tuned MLE; for BLEU above zero is."""
    return float(model[key] - matched(reference, on, model[on], key).value)
