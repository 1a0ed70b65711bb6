"""SeqGAN's networks (Yu et al., AAAI 2017): the LSTM generator (a policy over the next token) and the CNN
discriminator with a highway layer. The oracle LSTM, the "true" language of the synthetic benchmark, is the
data's (components/data/oracle.py); the generator starts and draws tokens as it does.

Every sequence starts from token 0 fed as the first input with zero initial state (the reference's
start token); token ids are int64 tensors (N, L)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from components.data.oracle import CHUNK, START, draw, pick


class Generator(nn.Module):
    """The policy: embedding → one LSTM layer → logits over the vocabulary. `forward(tokens)` is the per-token
    log-likelihood under teacher forcing (what both MLE and the policy gradient differentiate; DDP syncs it)."""

    def __init__(self, vocab_size: int, seq_len: int, embed: int, hidden: int):
        super().__init__()
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.embedding = nn.Embedding(vocab_size, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab_size)

    def _inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        start = torch.full_like(tokens[:, :1], START)
        return torch.cat([start, tokens[:, :-1]], 1)

    def forward(self, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """log p(y_t | y_<t), (N, L), of the policy sampled at `temperature` (softmax of logits / temperature)."""
        hidden, _ = self.lstm(self.embedding(self._inputs(tokens)))
        logits = self.out(hidden)
        if temperature != 1.0:
            logits = logits / temperature
        # cross_entropy's fused kernel: 2× faster than log_softmax + gather through a 5,000-way output
        return -F.cross_entropy(logits.flatten(0, 1), tokens.flatten(), reduction="none").view(tokens.shape)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, temperature: float = 1.0) -> torch.Tensor:
        """n sequences of seq_len tokens, every draw from `generator` (a CPU generator: same seed, same tokens)."""
        prev = torch.full((n, 1), START, dtype=torch.long, device=self.out.weight.device)
        return self._continue(prev, None, self.seq_len, generator, temperature)

    def _continue(self, prev, state, steps: int, generator, temperature: float = 1.0) -> torch.Tensor:
        out = []
        for _ in range(steps):
            hidden, state = self.lstm(self.embedding(prev), state)
            prev = draw(self.out(hidden[:, -1]), generator, temperature).unsqueeze(1)
            out.append(prev)
        return torch.cat(out, 1)

    @torch.no_grad()
    def prefix_states(self, tokens: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The LSTM state (h, c) after the inputs start, y_1..y_{t-1}, for t = 1..L-1: the state from which
        feeding y_t samples y_{t+1} (one pass over the sequence; nn.LSTM returns only the last c)."""
        inputs, state, out = self._inputs(tokens), None, []
        for t in range(1, tokens.shape[1]):
            _, state = self.lstm(self.embedding(inputs[:, t - 1 : t]), state)
            out.append(state)
        return out

    @torch.no_grad()
    def rollouts(self, tokens: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
        """Monte Carlo search: for every prefix y_1..y_t (t = 1..L-1) of each sequence, `count` completions
        sampled from this policy. Returns (L-1, count, N, L) tokens whose [t-1, m, i, :t] is row i's prefix.

        One batched pass: the rows of every prefix and roll-out start together from the prefix's cached state,
        ordered by t so that the rows still completing at step j are a leading slice (prefix t needs L - t
        tokens). Completion step j of roll-out (t, m, i) draws with the uniform u[t-1, m, i, j], so the
        completions are those of completing each prefix on its own with the same uniforms."""
        n, length = tokens.shape
        u = torch.rand(length - 1, count, n, length - 1, generator=generator)
        states = self.prefix_states(tokens)
        expand = lambda x: x.unsqueeze(1).expand(-1, count, -1, -1).reshape(x.shape[0], -1, x.shape[-1])  # noqa: E731
        h = expand(torch.stack([s[0][0] for s in states]))  # (L-1, count·N, H), prefix-major
        c = expand(torch.stack([s[1][0] for s in states]))
        rows = (length - 1) * count * n
        state = (h.reshape(1, rows, -1), c.reshape(1, rows, -1))
        prev = tokens[:, : length - 1].T.unsqueeze(1).expand(-1, count, -1).reshape(rows, 1)  # y_t of row (t, m, i)
        out = tokens.unsqueeze(0).repeat(rows // n, 1, 1).view(length - 1, count, n, length)
        for j in range(length - 1):
            active = (length - 1 - j) * count * n  # prefixes t = 1..L-1-j still need a token
            hidden, state = self.lstm(self.embedding(prev[:active]), tuple(s[:, :active] for s in state))
            last, uj = hidden[:, -1], u[: length - 1 - j, ..., j].reshape(-1)
            # the vocabulary-wide logits a CHUNK of rows at a time: they stay in cache instead of filling memory
            drawn = torch.cat([pick(self.out(last[i : i + CHUNK]), uj[i : i + CHUNK]) for i in range(0, active, CHUNK)])
            t = torch.arange(1, length - j).view(-1, 1, 1)  # the position drawn: t + j (0-based), per prefix
            out[: length - 1 - j].scatter_(3, (t + j).expand(-1, count, n).unsqueeze(3),
                                           drawn.view(length - 1 - j, count, n, 1))
            prev = drawn.unsqueeze(1)
        return out


class Highway(nn.Module):
    """y = g∘relu(W x) + (1 - g)∘x with a transform gate g = σ(W_g x + b_g) (Srivastava et al. 2015)."""

    def __init__(self, size: int, gate_bias: float = -2.0):
        super().__init__()
        self.transform, self.gate = nn.Linear(size, size), nn.Linear(size, size)
        nn.init.constant_(self.gate.bias, gate_bias)  # start near the identity (carry most of x)

    def forward(self, x):
        g = torch.sigmoid(self.gate(x))
        return g * F.relu(self.transform(x)) + (1 - g) * x


class Discriminator(nn.Module):
    """CNN over token embeddings (Kim 2014, as in SeqGAN): filters of several widths, max over time, a
    highway layer, dropout, one logit (real vs generated)."""

    def __init__(self, vocab_size: int, seq_len: int, embed: int, widths: list[int], filters: list[int],
                 dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed)
        self.convs = nn.ModuleList(nn.Conv1d(embed, f, w) for w, f in zip(widths, filters) if w <= seq_len)
        size = sum(c.out_channels for c in self.convs)
        self.highway, self.dropout, self.head = Highway(size), nn.Dropout(dropout), nn.Linear(size, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens).transpose(1, 2)  # (N, E, L)
        pooled = torch.cat([F.relu(conv(x)).amax(2) for conv in self.convs], 1)
        return self.head(self.dropout(self.highway(pooled))).squeeze(1)
