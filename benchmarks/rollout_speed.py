"""SeqGAN's Monte Carlo roll-outs: the batched pass (components/models/seqgan.py `rollouts`: every prefix and
roll-out from cached states in one LSTM pass) against the one-prefix-at-a-time loop it replaced (commit
ab570de: for each prefix, re-run the LSTM over it and complete it on its own), in the same process, on G of
the seqgan_oracle preset's size (vocabulary 5,000, embedding and hidden 32, 20 tokens, batch 64).

    python benchmarks/rollout_speed.py            # reports/text/rollout_speed.json
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.atomic import atomic_write  # noqa: E402
from components.models.seqgan import Generator  # noqa: E402


@torch.no_grad()
def one_prefix_at_a_time(g: Generator, tokens: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """The loop of ab570de, kept as the baseline."""
    n, length = tokens.shape
    inputs, state, out = g._inputs(tokens), None, []
    for t in range(1, length):
        _, state = g.lstm(g.embedding(inputs[:, t - 1 : t]), state)
        tail = g._continue(tokens[:, t - 1 : t].repeat(count, 1), tuple(s.repeat(1, count, 1) for s in state),
                           length - t, generator)
        out.append(torch.cat([tokens[:, :t].repeat(count, 1), tail], 1).view(count, n, length))
    return torch.stack(out)


def best_of(f, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        f()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    g = Generator(5000, 20, 32, 32).eval()
    tokens = g.sample(64, torch.Generator().manual_seed(1))
    rows = {}
    for count in (8, 16):
        sampled = count * 64 * 20 * 19 / 2  # tokens the roll-outs draw
        loop = best_of(lambda: one_prefix_at_a_time(g, tokens, count, torch.Generator().manual_seed(2)), 3)
        batched = best_of(lambda: g.rollouts(tokens, count, torch.Generator().manual_seed(2)), 3)
        rows[str(count)] = {"loop_seconds": loop, "batched_seconds": batched, "speedup": loop / batched,
                            "loop_tokens_per_s": sampled / loop, "batched_tokens_per_s": sampled / batched}
        print(f"{count} roll-outs of 64 × 19 prefixes: loop {loop:.2f} s, batched {batched:.2f} s "
              f"({loop / batched:.2f}×)", flush=True)
    atomic_write(REPO / "reports/text/rollout_speed.json", json.dumps(
        {"machine": "2-core CPU", "command": "python benchmarks/rollout_speed.py", "best_of": 3, "rollouts": rows},
        indent=1) + "\n")


if __name__ == "__main__":
    main()
