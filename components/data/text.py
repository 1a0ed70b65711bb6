"""Text for the "token sequences" data kind (SeqGAN-style text GANs): sentences ↔ fixed-length token ids.
Pure numpy and the standard library.

Layout
------
* A sentence is a list of word-level tokens (`tokenize`: NFKC, lower case, words and single punctuation
  marks). A dataset row is a fixed-length int32 array of `seq_len` token ids (`encode`).
* Id 0 is `EOS` ("<eos>"): it ends the sentence *and* pads the rest of the row, and it is also the
  generator's start token. A sentence of n words is ids[0:n] followed by seq_len - n EOS, so every row
  holds at least one EOS: a sentence may have at most seq_len - 1 words. `decode` reads up to the first
  EOS, so nothing after it matters.
* Id 1 is `UNK` ("<unk>"): every word not in the vocabulary. Ids 2… are the words, most frequent first.

Vocabulary (`build_vocabulary`)
-------------------------------
`[EOS, UNK, words…]` where the words are those seen at least `data.min_count` times, sorted by
(-count, word), so the result depends only on the counts. `build_vocabulary` counts whatever sentences
it is given: the caller passes the TRAIN split only, so validation/test words the training data never
had become UNK rather than leaking into the model's output layer. If the vocabulary would exceed
`data.max_vocab` entries (EOS and UNK included) it raises `DataError` naming the data and suggesting a
higher `data.min_count` (rarer words then become UNK) rather than silently cutting words.

Long lines (`read_lines`)
-------------------------
A user's file holds one sentence per line (UTF-8, blank lines skipped). A line of more than
seq_len - 1 tokens is handled by `data.long_lines`: "error" (the default: `DataError` naming the file,
line, its token count and the limit), "truncate" (keep its first seq_len - 1 tokens) or "drop" (skip it).
`read_lines` also returns the counts (`LineCounts`), which prepare prints and keeps in the manifest.

Built-in corpus (`corpus_sentences`)
------------------------------------
Real English that ships with every Python install, so it needs no download: the prose of the Python
Language Reference help topics in the standard library's `pydoc_data.topics` (PSF License). The text
(and so the sentence count) depends on the Python version, which `info["origin"]` names.
"""
from __future__ import annotations

import re
import sys
import unicodedata
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np

from components.data.source_data import DataError

EOS, UNK = "<eos>", "<unk>"
EOS_ID, UNK_ID = 0, 1
LONG_LINES = ("error", "truncate", "drop")

# A word: letters/digits (any script; "_" excluded), optionally with apostrophe parts ("don't", "it's");
# anything else that is not whitespace is a token of its own character.
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|\S")


def tokenize(line: str) -> list[str]:
    """Word-level tokens of `line`, deterministically: Unicode NFKC normalisation, the typographic
    apostrophe ’ made ', lower case, then the regex `[^\\W_]+(?:'[^\\W_]+)*|\\S`, i.e. runs of letters and
    digits (any script, apostrophes inside a word kept: "don't") and every other non-space character
    (punctuation, "_", symbols) as a token of its own. "It's 3.5x faster!" → ["it's", "3", ".", "5x",
    "faster", "!"]. Tokens never contain whitespace and re-tokenizing " ".join(tokens) gives them back."""
    text = unicodedata.normalize("NFKC", line).replace("\u2019", "'").lower()
    return _TOKEN.findall(text)


def build_vocabulary(sentences: list[list[str]], min_count: int, max_vocab: int, where: str) -> list[str]:
    """[EOS, UNK, then the words seen at least `min_count` times in `sentences`, sorted by (-count, word)].
    Counts exactly the sentences given (the caller passes the train split). Raises DataError naming
    `where` when that is more than `max_vocab` entries in all."""
    if not isinstance(min_count, int) or isinstance(min_count, bool) or min_count < 1:
        raise DataError(f"data.min_count must be an integer >= 1, got {min_count!r}")
    if not isinstance(max_vocab, int) or isinstance(max_vocab, bool) or max_vocab < 3:
        raise DataError(f"data.max_vocab must be an integer >= 3 (<eos>, <unk> and one word), got {max_vocab!r}")
    counts = Counter(w for s in sentences for w in s if w not in (EOS, UNK))
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    if len(words) + 2 > max_vocab:
        raise DataError(
            f"{where}: {len(words)} distinct words occur at least {min_count} time(s) (data.min_count = "
            f"{min_count}), so the vocabulary would hold {len(words) + 2} entries with {EOS} and {UNK}, more "
            f"than data.max_vocab = {max_vocab}; set data.min_count higher (rarer words become {UNK}) or "
            f"raise data.max_vocab")
    return [EOS, UNK, *words]


def _check_vocabulary(vocabulary: list[str]) -> None:
    if len(vocabulary) < 2 or vocabulary[0] != EOS or vocabulary[1] != UNK:
        raise ValueError(f"a vocabulary starts with [{EOS!r}, {UNK!r}], got {list(vocabulary[:2])!r}")


def encode(sentences: list[list[str]], vocabulary: list[str], seq_len: int) -> np.ndarray:
    """int32 (N, seq_len): row i is the ids of sentence i's words (UNK_ID for words not in `vocabulary`)
    followed by EOS_ID up to seq_len. Every sentence must leave room for one EOS (len <= seq_len - 1);
    callers apply the long-line rule first, so a longer one raises ValueError."""
    _check_vocabulary(vocabulary)
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2 (one word and {EOS}), got {seq_len}")
    index = {w: i for i, w in enumerate(vocabulary)}
    out = np.full((len(sentences), seq_len), EOS_ID, dtype=np.int32)
    for row, words in enumerate(sentences):
        if len(words) > seq_len - 1:
            raise ValueError(f"sentence {row} has {len(words)} tokens, more than seq_len - 1 = {seq_len - 1}")
        if EOS in words:
            raise ValueError(f"sentence {row} contains the token {EOS!r}, which would end it early")
        out[row, :len(words)] = [index.get(w, UNK_ID) for w in words]
    return out


def is_text(vocabulary: list[str]) -> bool:
    """Whether a vocabulary is a text's (EOS ends its sentences) rather than an oracle's bare ids."""
    return len(vocabulary) > 1 and vocabulary[0] == EOS


def decode(ids, vocabulary: list[str]) -> str:
    """The words of one row of ids up to its first EOS, joined by single spaces (unknown words as UNK)."""
    _check_vocabulary(vocabulary)
    words = []
    for i in np.asarray(ids).reshape(-1).tolist():
        if i == EOS_ID:
            break
        if not 0 <= i < len(vocabulary):
            raise ValueError(f"token id {i} is outside the vocabulary of {len(vocabulary)} entries")
        words.append(vocabulary[i])
    return " ".join(words)


class LineCounts(NamedTuple):
    """What `read_lines` did with a file's non-blank lines."""
    lines: int  # non-blank lines read
    dropped: int  # longer than seq_len - 1 tokens, skipped (data.long_lines = drop)
    truncated: int  # longer than seq_len - 1 tokens, cut to their first seq_len - 1 (data.long_lines = truncate)

    @property
    def kept(self) -> int:
        return self.lines - self.dropped

    def note(self, where: str, seq_len: int, long_lines: str) -> str | None:
        """One console line saying what was lost (None: every line kept whole)."""
        if not (self.dropped or self.truncated):
            return None
        limit = seq_len - 1
        what = (f"dropped {self.dropped} longer than {limit} tokens" if self.dropped else
                f"cut {self.truncated} longer than {limit} tokens to their first {limit}")
        return (f"{where}: kept {self.kept} of {self.lines} lines; {what} (data.seq_len = {seq_len}, less one "
                f"for {EOS}; data.long_lines = {long_lines})")


def read_lines(path: Path, seq_len: int, long_lines: str = "error") -> tuple[list[list[str]], LineCounts]:
    """The sentences of a user's text file: UTF-8, one sentence per line, tokenized; blank lines skipped.
    A line of more than seq_len - 1 tokens follows `long_lines` ("error", "truncate" or "drop", see the
    module docstring). Returns (sentences, what happened to the lines). Raises DataError naming the file
    when it is missing, not UTF-8 or holds no sentence."""
    path = Path(path)
    if not isinstance(seq_len, int) or seq_len < 2:
        raise DataError(f"data.seq_len must be an integer >= 2 (one word and {EOS}), got {seq_len!r}")
    if long_lines not in LONG_LINES:
        raise DataError(f"data.long_lines must be one of {', '.join(LONG_LINES)}, got {long_lines!r}")
    if not path.is_file():
        raise DataError(f"text file {path} does not exist or is not a file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"text file {path} is not UTF-8: line {line} (byte {e.start}) holds "
                        f"{raw[e.start:e.end]!r}; save the file as UTF-8") from e
    text = text.removeprefix("\ufeff")  # a byte-order mark some editors write
    limit = seq_len - 1
    sentences: list[list[str]] = []
    read = dropped = truncated = 0
    for number, line in enumerate(text.split("\n"), start=1):
        words = tokenize(line)
        if not words:
            continue
        read += 1
        if len(words) > limit:
            if long_lines == "error":
                raise DataError(
                    f"{path}, line {number}: {len(words)} tokens, more than the {limit} a sentence may have "
                    f"(data.seq_len = {seq_len} less one for {EOS}); raise data.seq_len, or set "
                    f"data.long_lines to 'truncate' or 'drop'")
            if long_lines == "drop":
                dropped += 1
                continue
            words = words[:limit]
            truncated += 1
        sentences.append(words)
    if not sentences:
        why = (f" (all {dropped} non-blank lines were longer than {limit} tokens and data.long_lines = 'drop')"
               if dropped else " (it is empty or holds only blank lines)")
        raise DataError(f"text file {path} holds no sentence{why}")
    return sentences, LineCounts(read, dropped, truncated)


# --- the built-in corpus -------------------------------------------------------------------------------

_UNDERLINE = re.compile(r"^\s*([*=\-~^#+])\1{2,}\s*$")  # reST heading underlines as pydoc renders them
_BULLET = re.compile(r"^(\s*)(?:[*\-+]|\d+\.|\(\d+\))\s+")
_ADMONITIONS = {"Note:", "Warning:", "See also:", "Caution:", "Important:", "Tip:", "Hint:", "Attention:",
                "Danger:", "Error:"}
_PROSE_MARKS = frozenset(".,;:!?()'\"“”‘-–—")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"“‘(]?[A-Z])")
_CLAUSE_END = re.compile(r"(?<=[;:])\s+")
_FOOTNOTE = re.compile(r"\s*\[\d+\]")  # footnote references "[1]"
_EMPHASIS = re.compile(r"(\*{1,2})(?=\S)([^*]*?\S)\1")  # *emphasis* and **strong**, as pydoc renders reST


def _letters_share(s: str) -> float:
    chars = [c for c in s if not c.isspace()]
    return sum(c.isalpha() for c in chars) / len(chars) if chars else 0.0


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _paragraphs(text: str) -> list[str]:
    """The prose paragraphs of one help topic, each joined into one line, in order. A paragraph is a run
    of non-blank lines. Headings (a line over an underline) go. A paragraph indented deeper than the prose
    before it, right after a paragraph ending in ':' (reST's '::' as pydoc renders it) other than an
    admonition ("Note:"), starts a literal block (grammar, code) that goes, with everything indented
    deeper, until the indentation comes back; other deeper paragraphs (the body of a described method,
    a note) are prose. Bullet markers and definition-list terms are stripped. A paragraph with a code-ish
    line ('>>>', '::', table borders, a line mostly non-letters) goes."""
    lines = text.split("\n")
    keep: list[str] = []
    for i, line in enumerate(lines):  # drop headings and their underlines
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        keep.append("" if _UNDERLINE.match(line) or (line.strip() and _UNDERLINE.match(nxt)) else line)
    blocks: list[list[str]] = [[]]
    for line in keep:
        if line.strip():
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    out = []
    context = 0  # indentation of the prose the next paragraph continues
    literal: int | None = None  # while in a literal block: the prose indentation it interrupts
    before = ""  # the last line of the previous paragraph
    for block in (b for b in blocks if b):
        first, indent = block[0], _indent(block[0])
        previous, before = before, block[-1].strip()
        if literal is not None:
            if indent > literal:
                continue
            literal = None
        bullet = _BULLET.match(first)
        if indent > context and not bullet and previous.endswith(":") and previous not in _ADMONITIONS:
            literal = context
            continue
        context = indent
        if bullet:
            context = bullet.end()
            block = [first[bullet.end():], *block[1:]]
        elif len(block) > 1 and _indent(block[1]) > indent:
            # a definition list entry: the term, then its definition indented deeper; the definition is
            # the prose that following paragraphs at its indentation continue
            context = _indent(block[1])
            block = block[1:]
        if any(">>>" in ln or "::" in ln or ln.lstrip().startswith(("|", "+", "...")) or _letters_share(ln) < 0.5
               for ln in block):
            continue
        joined = ""
        for ln in block:  # a line broken after a hyphen ("built-" / "in") joins without a space
            ln = ln.strip()
            joined += ln if joined.endswith("-") and joined[-2:-1].isalpha() else (" " + ln if joined else ln)
        out.append(joined)
    return out


def _mostly_words(words: list[str]) -> bool:
    """At least 70% of the tokens are words of letters, the rest plain punctuation, quotes or numbers (so
    no code: "_", brackets, operators)."""
    alpha = sum(w.replace("'", "").isalpha() for w in words)
    return alpha >= 0.7 * len(words) and all(w in _PROSE_MARKS or w.replace("'", "").isalpha() or w.isdigit()
                                             for w in words)


def corpus_sentences(seq_len: int, min_words: int = 5) -> tuple[list[list[str]], dict]:
    """Tokenized prose sentences of the Python Language Reference help topics (`pydoc_data.topics`,
    shipped with CPython), so the corpus needs no download. Deterministic:

    * topics in sorted key order; their prose paragraphs only (`_paragraphs`: no headings, grammar, code
      examples, tables), with emphasis asterisks (*word*, **word**) and footnote references ([1]) removed;
    * split into sentences on [.!?] followed by whitespace and a capital letter (or a quote/parenthesis
      and one); a sentence of more than seq_len - 1 tokens is split further after each ';' and ':' into
      its clauses, so long sentences still give their clauses;
    * a sentence (or clause) is kept when it has min_words..seq_len - 1 tokens, they are mostly words
      (`_mostly_words`), and it was not kept before (first occurrence wins).

    Returns (sentences, info); info names the corpus, its origin (with the Python version, which decides
    the text) and licence, and the number of sentences."""
    from pydoc_data.topics import topics

    if seq_len < 2 or min_words < 1:
        raise ValueError(f"need seq_len >= 2 and min_words >= 1, got seq_len={seq_len}, min_words={min_words}")
    limit = seq_len - 1
    seen: set[tuple[str, ...]] = set()
    sentences: list[list[str]] = []
    for key in sorted(topics):
        for paragraph in _paragraphs(topics[key]):
            paragraph = _FOOTNOTE.sub("", _EMPHASIS.sub(r"\2", paragraph))
            for sentence in _SENTENCE_END.split(paragraph):
                words = tokenize(sentence)
                parts = [tokenize(c) for c in _CLAUSE_END.split(sentence)] if len(words) > limit else [words]
                for words in parts:
                    if min_words <= len(words) <= limit and _mostly_words(words) and tuple(words) not in seen:
                        seen.add(tuple(words))
                        sentences.append(words)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    info = {"name": "python-docs",
            "origin": f"pydoc_data.topics in CPython {version}'s standard library "
                      "(the Python Language Reference help topics)",
            "licence": "PSF License Version 2 (Python Software Foundation)",
            "sentences": len(sentences)}
    return sentences, info
