"""Text models' quality–diversity evaluation (components/metrics/quality_diversity.py) and SeqGAN's batched
roll-outs: tempered scores, the matched-NLL_test interpolation on a hand-made curve, the empty-sentence rate,
and batched roll-outs that draw what completing each prefix on its own draws."""
from __future__ import annotations

import math

import pytest
import torch

from components.data.oracle import pick
from components.metrics.quality_diversity import matched, matched_gain, tempered_nll
from components.metrics.text_scorer import empty_rate
from components.models.seqgan import Generator


def _generator(vocab=30, length=7, seed=0):
    torch.manual_seed(seed)
    g = Generator(vocab, length, 8, 8).eval()
    with torch.no_grad():
        g.out.weight.mul_(8)  # a peaked policy, as a trained one is: temperature then matters
    return g


def test_temperature_one_gives_the_untempered_scores_and_lower_ones_lower_entropy():
    g = _generator()
    tokens = g.sample(50, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert tempered_nll(g, tokens, 1.0) == pytest.approx(-g(tokens).double().mean().item(), rel=1e-12)
        assert torch.equal(g(tokens, 1.0), g(tokens))
    # same seed, temperature 1 passed explicitly: the same draws as the default
    assert torch.equal(g.sample(20, torch.Generator().manual_seed(2), 1.0), g.sample(20, torch.Generator().manual_seed(2)))

    def entropy(t):  # the next-token entropy of the tempered policy, averaged over G's own prefixes
        with torch.no_grad():
            hidden, _ = g.lstm(g.embedding(g._inputs(tokens)))
            logp = torch.log_softmax(g.out(hidden) / t, -1)
        return -(logp.exp() * logp).sum(-1).mean().item()

    values = [entropy(t) for t in (0.3, 0.7, 1.0, 1.5)]
    assert values == sorted(values) and values[0] < 0.6 * values[2]
    # a sharper policy draws fewer distinct sequences
    distinct = [len({tuple(r) for r in g.sample(400, torch.Generator().manual_seed(3), t).tolist()}) for t in (0.2, 1.0)]
    assert distinct[0] < distinct[1]


HAND = [  # MLE's curve: lowering T raises NLL_test and lowers NLL_oracle; T > 1 is the other side
    {"temperature": 0.5, "nll_test": 9.0, "nll_oracle": 6.0},
    {"temperature": 0.8, "nll_test": 8.0, "nll_oracle": 8.0},
    {"temperature": 1.0, "nll_test": 7.5, "nll_oracle": 9.0},
    {"temperature": 1.5, "nll_test": 8.5, "nll_oracle": 10.5},
]


def test_the_matched_point_is_exact_on_a_hand_made_curve():
    at = matched(HAND, "nll_test", 8.5, "nll_oracle")  # halfway between T 0.5 and 0.8: 7.0, at T 0.65
    assert (at.value, at.temperature, at.in_range) == (pytest.approx(7.0), pytest.approx(0.65), True)
    assert matched(HAND, "nll_test", 7.75, "nll_oracle").value == pytest.approx(8.5)  # between 1.0 and 0.8
    # a GAN at NLL_test 8.5 with NLL_oracle 6.5 is 0.5 nats better than temperature-tuned MLE
    assert matched_gain(HAND, {"nll_test": 8.5, "nll_oracle": 6.5}, "nll_test", "nll_oracle") == pytest.approx(-0.5)
    # the T > 1 side (same NLL_test 8.5, worse NLL_oracle) is never what the match reads
    assert matched(HAND, "nll_test", 8.5, "nll_oracle").value != pytest.approx(10.5)
    # outside the quality side: clamped to its end and said
    far = matched(HAND, "nll_test", 12.0, "nll_oracle")
    assert (far.value, far.temperature, far.in_range) == (6.0, 0.5, False)
    with pytest.raises(ValueError, match="no points"):
        matched([], "nll_test", 8.0, "nll_oracle")
    # an under-trained MLE whose least NLL_test lies at T 0.8: the side is read from there down
    shifted = [{**HAND[0]}, {**HAND[1], "nll_test": 7.0}, {**HAND[2], "nll_test": 7.5}, HAND[3]]
    at = matched(shifted, "nll_test", 8.0, "nll_oracle")  # halfway between T 0.8 (7.0 → 8.0) and 0.5 (9.0 → 6.0)
    assert (at.value, at.temperature, at.in_range) == (pytest.approx(7.0), pytest.approx(0.65), True)


def test_the_empty_rate_counts_sentences_with_no_token_before_eos():
    assert empty_rate([[], [3, 4], [], [5]]) == 0.5 and empty_rate([]) == 0.0


def _one_prefix_at_a_time(g, tokens, count, generator):
    """The reference loop: each prefix completed on its own, step by step, with the batched version's uniforms."""
    n, length = tokens.shape
    u = torch.rand(length - 1, count, n, length - 1, generator=generator)
    states = g.prefix_states(tokens)
    out = []
    for t in range(1, length):
        state = tuple(s.repeat(1, count, 1) for s in states[t - 1])
        prev, seq = tokens[:, t - 1 : t].repeat(count, 1), [tokens[:, :t].repeat(count, 1)]
        for j in range(length - t):
            with torch.no_grad():
                hidden, state = g.lstm(g.embedding(prev), state)
                prev = pick(g.out(hidden[:, -1]), u[t - 1, :, :, j].reshape(-1)).unsqueeze(1)
            seq.append(prev)
        out.append(torch.cat(seq, 1).view(count, n, length))
    return torch.stack(out)


def test_batched_rollouts_draw_the_same_completions_as_the_one_prefix_at_a_time_loop():
    g = _generator()
    tokens = g.sample(6, torch.Generator().manual_seed(1))
    batched = g.rollouts(tokens, 4, torch.Generator().manual_seed(5))
    assert batched.shape == (6, 4, 6, 7)
    assert torch.equal(batched, _one_prefix_at_a_time(g, tokens, 4, torch.Generator().manual_seed(5)))
    assert not torch.equal(batched, g.rollouts(tokens, 4, torch.Generator().manual_seed(6)))  # the seed matters


def test_pick_is_the_inverse_cdf_at_u():
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5]]))
    for u, token in ((0.0, 0), (0.19, 0), (0.21, 1), (0.49, 1), (0.51, 2), (0.999, 2)):
        assert pick(logits, torch.tensor([u])).item() == token
    # chunked rows give what one call gives
    many = torch.randn(5000, 11)
    u = torch.rand(5000)
    assert torch.equal(pick(many, u), torch.cat([pick(many[i : i + 7], u[i : i + 7]) for i in range(0, 5000, 7)]))
    assert math.isclose(float((pick(many, u) == many.argmax(1)).float().mean()), 1.0) is False
