"""RelGAN's networks (Nie, Narodytska & Patel, ICLR 2019; reference weilinie/RelGAN): a generator whose
recurrent core is a relational memory (Santoro et al. 2018), and a CNN discriminator that judges several
embedded representations of its input at once. D reads token ids (real data) or soft one-hots (G's
Gumbel-softmax relaxation), through the same embedding matrix, so G's adversarial loss reaches G.

Every sequence starts from token 0 fed as the first input with a fresh memory (as the oracle and seqgan's
generator start); token ids are int64 tensors (N, L)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from components.data.oracle import START, draw
from components.models.seqgan import Highway


class RelationalMemory(nn.Module):
    """One step of a relational memory core: the memory's `slots` rows (each heads × head_size wide) and the
    projected input attend to each other (multi-head self-attention with a residual and layer norm, then a
    two-layer MLP with a residual and layer norm); the input's row is dropped and the result is gated into the
    old memory by LSTM-like input and forget gates computed per unit from the input and tanh(memory)."""

    def __init__(self, input_size: int, slots: int, heads: int, head_size: int,
                 forget_bias: float = 1.0, input_bias: float = 0.0):
        super().__init__()
        self.slots, self.heads, self.head_size = slots, heads, head_size
        self.size = size = heads * head_size
        self.forget_bias, self.input_bias = forget_bias, input_bias
        self.project = nn.Linear(input_size, size)
        self.qkv = nn.Linear(size, 3 * size, bias=False)
        self.qkv_norm = nn.LayerNorm(3 * size)
        self.attend_norm, self.mlp_norm = nn.LayerNorm(size), nn.LayerNorm(size)
        self.mlp = nn.Sequential(nn.Linear(size, size), nn.ReLU(), nn.Linear(size, size))
        self.gate_input = nn.Linear(size, 2 * size, bias=False)
        self.gate_memory = nn.Linear(size, 2 * size, bias=False)

    @property
    def output_size(self) -> int:
        return self.slots * self.size

    def initial_state(self, n: int, device=None) -> torch.Tensor:
        """(n, slots, size): the identity in each slot's first units (distinct rows), zeros beyond."""
        eye = torch.eye(self.slots, max(self.slots, self.size), device=device)[:, : self.size]
        return eye.expand(n, -1, -1).contiguous()

    def _attend(self, m: torch.Tensor) -> torch.Tensor:
        n, rows, _ = m.shape
        qkv = self.qkv_norm(self.qkv(m)).view(n, rows, self.heads, 3 * self.head_size).transpose(1, 2)
        q, k, v = qkv.split(self.head_size, -1)
        # scaled by the q, k, v width 3·head_size, as the reference's relational memory (Sonnet's) does
        out = F.scaled_dot_product_attention(q, k, v, scale=(3 * self.head_size) ** -0.5)  # (n, heads, rows, head_size)
        return out.transpose(1, 2).reshape(n, rows, self.size)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, input_size), memory (N, slots, size) → (output (N, slots·size), the next memory)."""
        inp = self.project(x).unsqueeze(1)
        m = torch.cat([memory, inp], 1)
        m = self.attend_norm(m + self._attend(m))
        m = self.mlp_norm(m + self.mlp(m))[:, :-1]
        i, f = (self.gate_input(inp) + self.gate_memory(torch.tanh(memory))).chunk(2, -1)
        memory = torch.sigmoid(i + self.input_bias) * torch.tanh(m) + torch.sigmoid(f + self.forget_bias) * memory
        return memory.flatten(1), memory


def gumbel(shape, generator: torch.Generator) -> torch.Tensor:
    """Standard Gumbel noise −log(−log u), u ~ U(0, 1) from `generator` (a CPU generator), kept finite.
    (3× faster on the CPU than −log E with E from `exponential_`, which is not vectorised.)"""
    u = torch.rand(shape, generator=generator).clamp_(min=torch.finfo(torch.float32).tiny)
    return u.log_().neg_().log_().neg_()


class Generator(nn.Module):
    """Embedding → relational memory → logits over the vocabulary, one token at a time.

    - `forward(tokens, temperature)`: teacher forcing, log p(y_t | y_<t) of softmax(logits / temperature), (N, L);
    - `forward(noise=g, beta=β)`: the adversarial pass with Gumbel noise g (N, L, V): y_t = argmax(logits + g_t)
      (a draw from softmax(logits)), fed back as the next input, and its relaxation softmax(β·(logits + g_t))
      that D judges and G's loss differentiates; returns (tokens (N, L), soft one-hots (N, L, V)).
    Both go through `forward` so that DDP all-reduces G's gradients in either phase."""

    def __init__(self, vocab_size: int, seq_len: int, embed: int, slots: int, heads: int, head_size: int):
        super().__init__()
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.embedding = nn.Embedding(vocab_size, embed)
        self.memory = RelationalMemory(embed, slots, heads, head_size)
        self.out = nn.Linear(self.memory.output_size, vocab_size)

    def _logits(self, prev: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, state = self.memory(self.embedding(prev), state)
        return self.out(hidden), state

    def forward(self, tokens: torch.Tensor | None = None, temperature: float = 1.0, *,
                noise: torch.Tensor | None = None, beta: float = 1.0):
        if noise is not None:
            return self._relaxed(noise, beta)
        n, length = tokens.shape
        prev = torch.full((n,), START, dtype=torch.long, device=tokens.device)
        state, hidden = self.memory.initial_state(n, tokens.device), []
        for t in range(length):
            h, state = self.memory(self.embedding(prev), state)
            hidden.append(h)
            prev = tokens[:, t]
        logits = self.out(torch.stack(hidden, 1))  # one product for all steps: ~2× faster than one per step
        if temperature != 1.0:
            logits = logits / temperature
        # cross_entropy's fused kernel, as seqgan's generator: faster than log_softmax + gather
        return -F.cross_entropy(logits.flatten(0, 1), tokens.flatten(), reduction="none").view(tokens.shape)

    def _relaxed(self, noise: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(noise)
        prev = torch.full((n,), START, dtype=torch.long, device=noise.device)
        state, tokens, soft = self.memory.initial_state(n, noise.device), [], []
        for t in range(noise.shape[1]):
            logits, state = self._logits(prev, state)
            perturbed = logits + noise[:, t]
            prev = perturbed.detach().argmax(-1)
            tokens.append(prev)
            soft.append(torch.softmax(beta * perturbed, -1))
        return torch.stack(tokens, 1), torch.stack(soft, 1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, temperature: float = 1.0) -> torch.Tensor:
        """n sequences of seq_len tokens, every draw from `generator` (a CPU generator: same seed, same tokens)."""
        dev = self.out.weight.device
        prev = torch.full((n,), START, dtype=torch.long, device=dev)
        state, out = self.memory.initial_state(n, dev), []
        for _ in range(self.seq_len):
            logits, state = self._logits(prev, state)
            prev = draw(logits, generator, temperature)
            out.append(prev)
        return torch.stack(out, 1)


class Discriminator(nn.Module):
    """The multiple-representation CNN: the input (ids or soft one-hots, (N, L) or (N, L, V)) is embedded
    (embed units), the embedding split into `reps` representations of embed / reps units each; every
    representation goes through the same convolutions over time (widths × filters), max-pooled over time, a
    highway layer, dropout and two linear layers to one logit. Returns logits (N, reps): one verdict per
    representation, each trained on its own."""

    def __init__(self, vocab_size: int, seq_len: int, embed: int, reps: int, widths: list[int],
                 filters: list[int], dropout: float, hidden: int = 100):
        super().__init__()
        if embed % reps:
            raise ValueError(f"relgan.d_embed = {embed} must be a multiple of relgan.num_rep = {reps}")
        self.reps, self.unit = reps, embed // reps
        self.embedding = nn.Parameter(torch.randn(vocab_size, embed) / vocab_size ** 0.5)
        self.convs = nn.ModuleList(nn.Conv1d(self.unit, f, w) for w, f in zip(widths, filters) if w <= seq_len)
        size = sum(c.out_channels for c in self.convs)
        self.highway, self.dropout = Highway(size, gate_bias=0.0), nn.Dropout(dropout)  # the reference's gate bias 0
        self.head = nn.Sequential(nn.Linear(size, hidden), nn.Linear(hidden, 1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L, embed): a row of the embedding per id, or the soft one-hots' mixture of rows."""
        return F.embedding(x, self.embedding) if not x.is_floating_point() else x @ self.embedding

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Logits (ΣN, reps) of the inputs' rows in order (several inputs: one forward, one DDP reduction)."""
        e = torch.cat([self.embed(x) for x in inputs])
        n, length, _ = e.shape
        # (N, L, reps, unit) → (N·reps, unit, L): each representation is a sequence of `unit` channels
        x = e.view(n, length, self.reps, self.unit).permute(0, 2, 3, 1).reshape(n * self.reps, self.unit, length)
        pooled = torch.cat([F.relu(conv(x)).amax(2) for conv in self.convs], 1)
        return self.head(self.dropout(self.highway(pooled))).view(n, self.reps)
