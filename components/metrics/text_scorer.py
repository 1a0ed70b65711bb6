"""The evaluator of token data: BLEU-2…5 of samples against the held-out split and Self-BLEU-2…5 among
the first SELF_BLEU_SAMPLES samples (components/metrics/text.py), plus, for an oracle dataset, NLL_oracle:
the oracle's mean per-token negative log-likelihood of the samples (SeqGAN §5), and `empty_rate`, the share of
samples whose first token ends the sentence (a degenerate output BLEU barely sees). Floors beside them: the
same scores of the held-out real sequences (`floor_nll_oracle`: what the oracle's own language scores).

Its hash names the data (content hash: sequences, vocabulary and oracle) and the scoring definition, so
numbers are compared only under the same test split, oracle and BLEU settings."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from components.metrics import text

VERSION = 2  # 2: empty_rate
MAX_N = 5
SELF_BLEU_SAMPLES = 1000  # Self-BLEU grows with the number of samples: always scored on this many


def info(manifest: dict) -> dict:
    """The evaluator's record (info.json): kind "text", its definition and its hash."""
    definition = {"scorer": "text", "version": VERSION, "content_hash": manifest["content_hash"], "max_n": MAX_N,
                  "self_bleu_samples": SELF_BLEU_SAMPLES, "oracle": bool(manifest.get("oracle"))}
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()
    return {"kind": "text", "hash": digest, "definition": definition}


def eos_id(manifest: dict) -> int | None:
    """The id that ends a sentence: <eos> (0) for text, none for an oracle's sequences (every id is a token)."""
    from components.data.text import EOS_ID, is_text

    return EOS_ID if is_text(manifest["vocabulary"]) else None


class TextScorer:
    """Scores generated token ids (N, L) against one prepared dataset's held-out split."""

    def __init__(self, prepared: Path):
        from components.data.shards import load_split, read_manifest

        self.manifest = read_manifest(prepared)
        self.eos = eos_id(self.manifest)
        self.test = load_split(prepared, "test")[0]
        self.references = [text.strip_after_eos(row, self.eos) for row in self.test]
        self.oracle = None
        if self.manifest.get("oracle"):
            from components.data.oracle import Oracle, load_oracle

            self.oracle = Oracle(load_oracle(Path(prepared) / self.manifest["oracle"]), "the dataset's oracle")

    def sentences(self, tokens) -> list[list[int]]:
        return [text.strip_after_eos(row, self.eos) for row in np.asarray(tokens)]

    def __call__(self, tokens) -> dict:
        import torch

        hyps = self.sentences(tokens)
        out = text.bleu_scores(hyps, self.references, MAX_N, self_samples=hyps[:SELF_BLEU_SAMPLES])
        if self.oracle is not None:
            out["nll_oracle"] = self.oracle.nll(torch.as_tensor(np.asarray(tokens)).long())
        return {**out, "empty_rate": empty_rate(hyps)}

    def curve_point(self, tokens) -> dict:
        """The quality numbers of one point of a quality–diversity curve (components/metrics/quality_diversity.py):
        NLL_oracle on oracle data; BLEU-4 and Self-BLEU-4 on real text; the empty-sentence rate."""
        import torch

        hyps = self.sentences(tokens)
        if self.oracle is not None:
            return {"nll_oracle": self.oracle.nll(torch.as_tensor(np.asarray(tokens)).long()),
                    "empty_rate": empty_rate(hyps)}
        four = text.bleu_scores(hyps, self.references, 4, self_samples=hyps[:SELF_BLEU_SAMPLES])
        return {"bleu4": four["bleu4"], "self_bleu4": four["self_bleu4"], "empty_rate": empty_rate(hyps)}

    def floor(self) -> dict:
        """The held-out real sequences scored as samples: Self-BLEU of real text, the oracle's NLL of its own
        language (BLEU against themselves would be 1, so it is left out)."""
        import torch

        real = self.sentences(self.test)
        out = {f"floor_self_bleu{n}": v for n, v in
               zip(range(2, MAX_N + 1), (text.self_bleu(real[:SELF_BLEU_SAMPLES], n) for n in range(2, MAX_N + 1)))}
        if self.oracle is not None:
            out["floor_nll_oracle"] = self.oracle.nll(torch.as_tensor(self.test).long())
        return out


def empty_rate(sentences: list[list[int]]) -> float:
    """The share of sentences with no token before <eos>."""
    return sum(not s for s in sentences) / max(len(sentences), 1)
