"""Text half of the token-sequences data kind (components/data/text.py): tokenisation, vocabulary,
fixed-length encoding and back, reading a user's file, the built-in python-docs corpus."""
from __future__ import annotations

import numpy as np
import pytest

from components.data.source_data import DataError
from components.data.text import (EOS, UNK, LineCounts, build_vocabulary, corpus_sentences, decode, encode,
                                  read_lines, tokenize)

SEQ_LEN = 20


@pytest.fixture(scope="module")
def corpus():
    return corpus_sentences(SEQ_LEN)


def _write(tmp_path, name, content: bytes | str):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


# --- tokenize -------------------------------------------------------------------------------------------

def test_tokenize_rules():
    assert tokenize("It's 3.5x faster!") == ["it's", "3", ".", "5x", "faster", "!"]
    assert tokenize("  The CAT, the dog;\tthe end.  ") == ["the", "cat", ",", "the", "dog", ";", "the", "end", "."]
    assert tokenize("don’t ｆｕｌｌ-width") == ["don't", "full", "-", "width"]  # ’ → ', NFKC folds full width
    assert tokenize("__init__") == ["_", "_", "init", "_", "_"]
    assert tokenize("Café naïve") == ["café", "naïve"]
    assert tokenize("   \t ") == []


def test_tokenize_is_stable_on_its_own_output(corpus):
    for s in corpus[0]:
        assert tokenize(" ".join(s)) == s


# --- vocabulary ------------------------------------------------------------------------------------------

SENTENCES = [["y", "z", "c"], ["z", "y", "d"], ["z", "a"]]  # z:3 y:2, then a c d once each


def test_vocabulary_order_and_min_count():
    assert build_vocabulary(SENTENCES, 1, 100, "x") == [EOS, UNK, "z", "y", "a", "c", "d"]
    assert build_vocabulary(SENTENCES, 2, 100, "x") == [EOS, UNK, "z", "y"]
    assert build_vocabulary(SENTENCES, 4, 100, "x") == [EOS, UNK]
    # only the counts matter, not the order sentences come in
    assert build_vocabulary(SENTENCES[::-1], 1, 100, "x") == build_vocabulary(SENTENCES, 1, 100, "x")
    assert build_vocabulary(SENTENCES, 1, 7, "x") == [EOS, UNK, "z", "y", "a", "c", "d"]  # exactly at the limit


def test_vocabulary_over_the_limit_names_where_and_keys():
    with pytest.raises(DataError) as e:
        build_vocabulary(SENTENCES, 1, 6, "data/text/train.txt")
    msg = str(e.value)
    assert "data/text/train.txt" in msg and "data.max_vocab" in msg and "data.min_count" in msg
    assert "5 distinct words" in msg and "7 entries" in msg
    with pytest.raises(DataError, match="data.min_count"):
        build_vocabulary(SENTENCES, 0, 100, "x")


# --- encode / decode -------------------------------------------------------------------------------------

def test_encode_layout():
    vocab = build_vocabulary(SENTENCES, 2, 100, "x")  # [EOS, UNK, z, y]
    ids = encode([["z", "y", "zzz"], ["y"], [], ["z"] * 4], vocab, 5)
    assert ids.dtype == np.int32 and ids.shape == (4, 5)
    assert ids.tolist() == [[2, 3, 1, 0, 0], [3, 0, 0, 0, 0], [0, 0, 0, 0, 0], [2, 2, 2, 2, 0]]
    assert encode([], vocab, 5).shape == (0, 5)
    with pytest.raises(ValueError, match="seq_len - 1"):
        encode([["z"] * 5], vocab, 5)  # no room left for EOS


def test_encode_layout_on_the_corpus(corpus):
    sentences = corpus[0]
    vocab = build_vocabulary(sentences, 2, 10**6, "python-docs")
    ids = encode(sentences, vocab, SEQ_LEN)
    assert ids.dtype == np.int32 and ids.shape == (len(sentences), SEQ_LEN)
    assert ids.min() >= 0 and ids.max() < len(vocab)
    lengths = np.array([len(s) for s in sentences])
    first_eos = (ids == 0).argmax(axis=1)
    assert (first_eos == lengths).all()  # the words, then EOS …
    assert all((row[n:] == 0).all() for row, n in zip(ids, lengths))  # … to the end
    assert all((row[:n] != 0).all() for row, n in zip(ids, lengths))


def test_round_trip_and_unknown_words(corpus, tmp_path):
    path = _write(tmp_path, "mine.txt", "The cat sat on the mat.\nA dog; a CAT!\n\nthe mat sat\n")
    for sentences in (corpus[0], read_lines(path, 8, "error")[0]):
        vocab = build_vocabulary(sentences, 2, 10**6, "x")
        known = set(vocab)
        checked = 0
        for s in sentences:
            text = decode(encode([s], vocab, SEQ_LEN)[0], vocab)
            if set(s) <= known:
                assert text == " ".join(s)
                checked += 1
            else:
                assert text == " ".join(w if w in known else UNK for w in s) and UNK in text.split()
        assert checked
    vocab = [EOS, UNK, "the", "cat"]
    assert decode(encode([["the", "dog", "cat"]], vocab, 6)[0], vocab) == "the <unk> cat"
    assert decode([3, 0, 2, 2], vocab) == "cat"  # nothing after the first EOS counts
    assert decode(np.zeros(4, np.int32), vocab) == ""
    with pytest.raises(ValueError):
        decode([7], vocab)


# --- read_lines ------------------------------------------------------------------------------------------

def test_read_lines_reads_and_skips_blank_lines(tmp_path):
    path = _write(tmp_path, "ok.txt", "\ufeffHello, World!\r\n\n   \nSecond line here\n")
    assert read_lines(path, 10, "error") == ([["hello", ",", "world", "!"], ["second", "line", "here"]],
                                             LineCounts(lines=2, dropped=0, truncated=0))


@pytest.mark.parametrize("content", ["", "\n\n  \n\t\n"])
def test_read_lines_no_sentence(tmp_path, content):
    path = _write(tmp_path, "empty.txt", content)
    with pytest.raises(DataError, match="no sentence") as e:
        read_lines(path, 10, "error")
    assert str(path) in str(e.value)


def test_read_lines_missing_file(tmp_path):
    with pytest.raises(DataError) as e:
        read_lines(tmp_path / "nope.txt", 10, "error")
    assert str(tmp_path / "nope.txt") in str(e.value)


def test_read_lines_not_utf8(tmp_path):
    path = _write(tmp_path, "latin.txt", "first line\nna\u00efve\n".encode("latin-1"))
    with pytest.raises(DataError) as e:
        read_lines(path, 10, "error")
    msg = str(e.value)
    assert str(path) in msg and "UTF-8" in msg and "line 2" in msg and "byte 13" in msg


LONG = "one two three\n\na b c d e f g h\nfour five\n"  # line 3 has 8 tokens


def test_read_lines_long_line_error(tmp_path):
    path = _write(tmp_path, "long.txt", LONG)
    with pytest.raises(DataError) as e:
        read_lines(path, 6, "error")
    msg = str(e.value)
    assert str(path) in msg and "line 3" in msg and "8 tokens" in msg and "5" in msg
    assert "data.seq_len" in msg and "data.long_lines" in msg
    assert len(read_lines(path, 9, "error")[0]) == 3  # 8 tokens fit seq_len 9 (8 words + EOS)


def test_read_lines_truncate_and_drop_and_count_what_they_did(tmp_path):
    path = _write(tmp_path, "long.txt", LONG)
    sentences, counts = read_lines(path, 6, "truncate")
    assert sentences == [["one", "two", "three"], ["a", "b", "c", "d", "e"], ["four", "five"]]
    assert counts == (3, 0, 1) and counts.kept == 3
    assert counts.note("f.txt", 6, "truncate") == ("f.txt: kept 3 of 3 lines; cut 1 longer than 5 tokens to their "
                                                    "first 5 (data.seq_len = 6, less one for <eos>; "
                                                    "data.long_lines = truncate)")
    sentences, counts = read_lines(path, 6, "drop")
    assert sentences == [["one", "two", "three"], ["four", "five"]]
    assert counts == (3, 1, 0) and counts.kept == 2
    assert counts.note("f.txt", 6, "drop") == ("f.txt: kept 2 of 3 lines; dropped 1 longer than 5 tokens "
                                               "(data.seq_len = 6, less one for <eos>; data.long_lines = drop)")
    assert read_lines(path, 9, "drop")[1].note("f.txt", 9, "drop") is None  # every line whole: nothing said
    only_long = _write(tmp_path, "only_long.txt", "a b c d e f g h\n")
    with pytest.raises(DataError, match="drop") as e:
        read_lines(only_long, 6, "drop")
    assert str(only_long) in str(e.value)
    with pytest.raises(DataError, match="data.long_lines"):
        read_lines(path, 6, "wrap")


# --- the built-in corpus ---------------------------------------------------------------------------------

def test_corpus_is_deterministic_and_within_limits(corpus):
    sentences, info = corpus
    assert corpus_sentences(SEQ_LEN) == (sentences, info)
    assert len(sentences) >= 1000 and info["sentences"] == len(sentences)
    assert info["name"] == "python-docs"
    assert "pydoc_data.topics" in info["origin"] and "PSF" in info["licence"]
    assert all(5 <= len(s) <= SEQ_LEN - 1 for s in sentences)
    assert len({tuple(s) for s in sentences}) == len(sentences)
    assert all(sum(w.isalpha() for w in s) >= 0.5 * len(s) for s in sentences)
    assert not any("_" in s or ">>>" in " ".join(s) for s in sentences)  # no code
    shorter, _ = corpus_sentences(10, min_words=3)
    assert shorter and all(3 <= len(s) <= 9 for s in shorter)


# --- what prepare says about the text -------------------------------------------------------------------

def test_the_textfile_source_says_what_it_dropped_and_what_became_unk(tmp_path, capsys):
    from collections import Counter

    from components.config import DataConfig
    from components.data.shards import split_indices
    from components.data.sources import SOURCES

    short = ["the cat sat", "the dog sat", "a cat ran", "the bird sang", "a dog ran far", "the cat ran"] * 2
    path = _write(tmp_path, "mine.txt", "\n".join(short + ["one two three four five six seven"] * 3) + "\n")
    cfg = DataConfig(source="textfile", path=str(path), seq_len=6, long_lines="drop", min_count=2)
    text = SOURCES.get("textfile")(cfg)
    assert capsys.readouterr().out == (f"data.source textfile ({path}): kept 12 of 15 lines; dropped 3 longer than 5 "
                                       "tokens (data.seq_len = 6, less one for <eos>; data.long_lines = drop)\n")
    assert text.origin["lines"] == {"lines": 15, "dropped": 3, "truncated": 0, "kept": 12}
    data = text.encoded(cfg, seed=0)
    train, test = split_indices(data.labels, cfg.test_fraction, 0)
    counts = Counter(w for i in train for w in text.lines[i])
    known = {w for w, c in counts.items() if c >= 2}

    def unk(rows):  # counted on the words, not the ids
        words = [w for i in rows for w in text.lines[i]]
        return f"{sum(w not in known for w in words) / len(words):.1%}"

    line = capsys.readouterr().out
    assert line == (f"data.source textfile ({path}): a vocabulary of {len(known)} words seen at least 2 time(s) in "
                    f"the train split (data.min_count); <unk> stands for {unk(train)} of the train split's words and "
                    f"{unk(test)} of the test split's\n")
    assert unk(train) != "0.0%"  # "sang", "bird", "far" are rare: the line has something to say
