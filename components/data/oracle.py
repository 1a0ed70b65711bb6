"""The oracle of SeqGAN's synthetic benchmark (Yu et al., AAAI 2017): a random LSTM that is the "true"
language of the `oracle` source (components/data/tokens.py). Its sequences are the dataset, its arrays are
kept beside the shards (oracle.npz) and its per-token NLL of generated sequences is NLL_oracle
(components/metrics/text_scorer.py). The generator (components/models/seqgan.py) starts and draws tokens
as it does.

Every sequence starts from token 0 fed as the first input with zero initial state (the reference's
start token); token ids are int64 tensors (N, L)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from components.data.source_data import DataError

# The oracle's arrays in the reference layout (LantaoYu/SeqGAN's TargetLSTM): name → shape in (V, E, H).
ORACLE_ARRAYS = {"embedding": "VE", "Wi": "EH", "Wf": "EH", "Wog": "EH", "Wc": "EH",
                 "Ui": "HH", "Uf": "HH", "Uog": "HH", "Uc": "HH", "bi": "H", "bf": "H", "bog": "H", "bc": "H",
                 "Wo": "HV", "bo": "V"}
START = 0


def draw(logits: torch.Tensor, generator: torch.Generator, temperature: float = 1.0) -> torch.Tensor:
    """One token per row of `logits`, sampled by the inverse CDF with one uniform per row from `generator`
    (a CPU generator): ~5× faster than torch.multinomial over a 5,000-token vocabulary, and as exact."""
    return pick(logits, torch.rand(len(logits), generator=generator), temperature)


def pick(logits: torch.Tensor, u: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The token of each row of `logits` at the quantile u ∈ [0, 1) of softmax(logits / temperature): with u
    uniform, a draw from it. Given the uniforms, draws are reproducible however the rows are batched."""
    if len(logits) > CHUNK:  # a CHUNK rows at a time: the vocabulary-wide temporaries stay small and reused
        return torch.cat([pick(logits[i : i + CHUNK], u[i : i + CHUNK], temperature) for i in range(0, len(logits), CHUNK)])
    cdf = torch.softmax(logits.float() / temperature, -1).cumsum(-1).cpu()
    return torch.searchsorted(cdf, u.view(-1, 1) * cdf[:, -1:]).clamp_(max=cdf.shape[1] - 1).squeeze(1).to(logits.device)


CHUNK = 1024


def random_oracle(vocab_size: int, embed: int, hidden: int, seed: int) -> dict[str, np.ndarray]:
    """The reference's oracle: every array drawn from N(0, 1) (float32), in ORACLE_ARRAYS order."""
    rng = np.random.default_rng(seed)
    dims = {"V": vocab_size, "E": embed, "H": hidden}
    return {k: rng.standard_normal([dims[d] for d in shape]).astype(np.float32) for k, shape in ORACLE_ARRAYS.items()}


def check_oracle(arrays: dict[str, np.ndarray], where: str) -> tuple[int, int, int]:
    """(V, E, H) of an oracle's arrays; DataError naming `where` and the key for a missing or misshapen one."""
    missing = [k for k in ORACLE_ARRAYS if k not in arrays]
    if missing:
        raise DataError(f"{where}: oracle array(s) {', '.join(missing)} missing; an oracle holds "
                        f"{', '.join(ORACLE_ARRAYS)}")
    v, e = np.shape(arrays["embedding"]) if np.ndim(arrays["embedding"]) == 2 else (None, None)
    h = np.shape(arrays["Ui"])[0] if np.ndim(arrays["Ui"]) == 2 else None
    if v is None or h is None:
        raise DataError(f"{where}: oracle arrays embedding and Ui must be matrices, got shapes "
                        f"{np.shape(arrays['embedding'])} and {np.shape(arrays['Ui'])}")
    dims = {"V": v, "E": e, "H": h}
    for key, shape in ORACLE_ARRAYS.items():
        want = tuple(dims[d] for d in shape)
        got = np.shape(arrays[key])
        if got != want:
            raise DataError(f"{where}: oracle array {key} has shape {got}, expected {want} "
                            f"({'×'.join(shape)} with V={v}, E={e}, H={h})")
        if not np.all(np.isfinite(arrays[key])):
            raise DataError(f"{where}: oracle array {key} holds non-finite values")
    return v, e, h


class Oracle(nn.Module):
    """The reference's LSTM in its own equations (float32, as the reference; sums in float64):
    i = σ(x·Wi + h·Ui + bi), f and o likewise (Wf/Uf/bf, Wog/Uog/bog), c̃ = tanh(x·Wc + h·Uc + bc),
    c = f∘c_prev + i∘c̃, h = o∘tanh(c), logits = h·Wo + bo."""

    def __init__(self, arrays: dict[str, np.ndarray], where: str = "oracle"):
        super().__init__()
        self.vocab_size, self.embed, self.hidden = check_oracle(arrays, where)
        for k in ORACLE_ARRAYS:
            self.register_buffer(k, torch.from_numpy(np.asarray(arrays[k], dtype=np.float32)))

    def _cell(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        gate = lambda w, u, b: x @ getattr(self, w) + h @ getattr(self, u) + getattr(self, b)  # noqa: E731
        i, f, o = (torch.sigmoid(gate(*g)) for g in (("Wi", "Ui", "bi"), ("Wf", "Uf", "bf"), ("Wog", "Uog", "bog")))
        c = f * c + i * torch.tanh(gate("Wc", "Uc", "bc"))
        h = o * torch.tanh(c)
        return h @ self.Wo + self.bo, h, c

    def _zeros(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.zeros(n, self.hidden, device=self.Wo.device)
        return z, z.clone()

    @torch.no_grad()
    def log_probs(self, tokens: torch.Tensor) -> torch.Tensor:
        """log p(y_t | y_<t) of every token, (N, L)."""
        n, length = tokens.shape
        h, c = self._zeros(n)
        prev = torch.full((n,), START, dtype=torch.long, device=tokens.device)
        out = []
        for t in range(length):
            logits, h, c = self._cell(self.embedding[prev], h, c)
            out.append(torch.log_softmax(logits, -1).gather(1, tokens[:, t : t + 1]).squeeze(1))
            prev = tokens[:, t]
        return torch.stack(out, 1)

    def nll(self, tokens: torch.Tensor, batch: int = 2000) -> float:
        """Mean per-token negative log-likelihood of `tokens` under the oracle (NLL_oracle), nats."""
        total = sum(-self.log_probs(tokens[i : i + batch]).double().sum().item() for i in range(0, len(tokens), batch))
        return total / tokens.numel()

    @torch.no_grad()
    def sample(self, n: int, length: int, generator: torch.Generator) -> torch.Tensor:
        h, c = self._zeros(n)
        prev = torch.full((n,), START, dtype=torch.long)
        out = []
        for _ in range(length):
            logits, h, c = self._cell(self.embedding[prev], h, c)
            prev = draw(logits, generator)
            out.append(prev)
        return torch.stack(out, 1)

    @torch.no_grad()
    def entropy_rate(self, n: int, length: int, generator: torch.Generator) -> float:
        """Monte Carlo estimate of the oracle's per-token entropy: the NLL of its own samples' next-token
        distributions, averaged exactly over the vocabulary at every position."""
        tokens = self.sample(n, length, generator)
        h, c = self._zeros(n)
        prev = torch.full((n,), START, dtype=torch.long)
        total = 0.0
        for t in range(length):
            logits, h, c = self._cell(self.embedding[prev], h, c)
            logp = torch.log_softmax(logits, -1)
            total += -(logp.exp() * logp).double().sum().item()
            prev = tokens[:, t]
        return total / (n * length)


def load_oracle(path: str | Path) -> dict[str, np.ndarray]:
    """The oracle's arrays from an .npz in the reference layout, checked (DataError naming file and key)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"data.oracle_path: {path} does not exist or is not a file")
    try:
        with np.load(path, allow_pickle=False) as f:  # arrays only: nothing is unpickled
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise DataError(f"data.oracle_path: cannot read {path} as an .npz of arrays ({e})") from None
    check_oracle(arrays, f"data.oracle_path {path}")
    return arrays
