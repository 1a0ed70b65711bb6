"""Token-sequence sources (data kinds `tokens` and `oracle_tokens`):

- `oracle`: SeqGAN's synthetic benchmark. A random LSTM (components/data/oracle.py; every weight N(0, 1),
  data.oracle_seed) or the one in data.oracle_path (an .npz in the reference layout) generates
  data.num_sequences sequences of data.seq_len tokens; the oracle is kept with the dataset (oracle.npz) so
  evaluate can score NLL_oracle.
- `textfile`: the user's file (data.path), one sentence per line, tokenised at word level.
- `python-docs`: English prose of the Python documentation shipped inside CPython (pydoc_data.topics),
  the default real corpus: no download, PSF licence.
- `coco` (components/data/coco.py): Texygen's COCO captions shipped in data/coco, with their own test file.

Text sources return `Sentences`; `encode_split` builds the vocabulary from the train split only (the same
split write_prepared makes: seeded, or the source's own test rows) and encodes every sentence against it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.data.source_data import SOURCES, DataError, SourceData
from components.data.text import EOS_ID, UNK, UNK_ID, build_vocabulary, corpus_sentences, encode, read_lines

if TYPE_CHECKING:
    from components.config import DataConfig

CLASS_NAMES = ["sentence"]  # token datasets have no classes: one label for the stratified split


@dataclass(frozen=True)
class Sentences:
    """What a text source reads: sentences as word lists, before the vocabulary exists."""
    lines: list[list[str]]
    origin: dict | None = None
    test_rows: np.ndarray | None = None  # the source's own test split (SourceData.test_rows); None: seeded

    def encoded(self, cfg: DataConfig, seed: int) -> SourceData:
        """Token ids, with the vocabulary of the train split (`encode_split`)."""
        return encode_split(self, cfg, seed)


@SOURCES.register("oracle")
def oracle(cfg: DataConfig) -> SourceData:
    """data.num_sequences sequences of data.seq_len tokens sampled from the oracle LSTM."""
    import torch

    from components.data.oracle import Oracle, load_oracle, random_oracle

    arrays = (load_oracle(cfg.oracle_path) if cfg.oracle_path else
              random_oracle(cfg.vocab_size, cfg.oracle_embed, cfg.oracle_hidden, cfg.oracle_seed))
    model = Oracle(arrays, cfg.oracle_path or "random oracle")
    generator = torch.Generator().manual_seed(cfg.oracle_seed)
    chunks = [model.sample(min(5000, cfg.num_sequences - i), cfg.seq_len, generator)
              for i in range(0, cfg.num_sequences, 5000)]
    tokens = torch.cat(chunks).numpy().astype(np.int32)
    return SourceData(tokens, np.zeros(len(tokens), np.int64), CLASS_NAMES,
                      vocabulary=[str(i) for i in range(model.vocab_size)],
                      oracle={k: np.asarray(v, np.float32) for k, v in arrays.items()})


@SOURCES.register("textfile")
def textfile(cfg: DataConfig) -> Sentences:
    """The user's sentences; lines dropped or cut (data.long_lines) are said on the console and counted in
    the manifest's `origin.lines`."""
    if not cfg.path:
        raise DataError("data.path is required for the textfile source (a UTF-8 file, one sentence per line)")
    lines, counts = read_lines(Path(cfg.path).expanduser(), cfg.seq_len, cfg.long_lines)
    if note := counts.note(f"data.source textfile ({cfg.path})", cfg.seq_len, cfg.long_lines):
        print(note, flush=True)
    return Sentences(lines, {"name": Path(cfg.path).name, "origin": f"the user's file {cfg.path}",
                             "lines": {**counts._asdict(), "kept": counts.kept}})


@SOURCES.register("python-docs")
def python_docs(cfg: DataConfig) -> Sentences:
    lines, info = corpus_sentences(cfg.seq_len)
    return Sentences(lines, info)


def encode_split(data: Sentences, cfg: DataConfig, seed: int) -> SourceData:
    """Sentences → int32 ids against a vocabulary of the train split's words (write_prepared then makes the
    same split: same labels, fraction and seed)."""
    from components.data.shards import source_split

    where = f"data.source {cfg.source}" + (f" ({cfg.path})" if cfg.source == "textfile" else "")
    if len(data.lines) < 2:
        raise DataError(f"{where}: {len(data.lines)} sentence(s); a train and a test split need at least 2")
    labels = np.zeros(len(data.lines), np.int64)
    train, test = source_split(labels, data.test_rows, cfg.test_fraction, seed)
    vocabulary = build_vocabulary([data.lines[i] for i in train], cfg.min_count, cfg.max_vocab, where)
    tokens = encode(data.lines, vocabulary, cfg.seq_len)
    print(vocabulary_note(tokens, (train, test), vocabulary, cfg.min_count, where), flush=True)
    return SourceData(tokens, labels, CLASS_NAMES, vocabulary=vocabulary, origin=data.origin,
                      test_rows=data.test_rows)


def vocabulary_note(tokens: np.ndarray, splits: tuple[np.ndarray, np.ndarray], vocabulary: list[str],
                    min_count: int, where: str) -> str:
    """What the vocabulary lost, in one console line: the share of the train split's words that became
    <unk> (rarer than data.min_count) and of the test split's (those, and words the train split never had)."""
    def unk_share(rows: np.ndarray) -> str:
        words = tokens[rows][tokens[rows] != EOS_ID]  # EOS ends and pads: not a word
        return f"{(words == UNK_ID).mean():.1%}" if words.size else "n/a"

    train, test = splits
    return (f"{where}: a vocabulary of {len(vocabulary) - 2} words seen at least {min_count} time(s) in the "
            f"train split (data.min_count); {UNK} stands for {unk_share(train)} of the train split's words and "
            f"{unk_share(test)} of the test split's")
