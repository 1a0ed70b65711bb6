"""The coco source (components/data/coco.py): Texygen's COCO captions shipped in data/coco, the train split from
image_coco.txt and the test split, line for line, from test_coco.txt; its preset seqgan_coco."""
from __future__ import annotations

import pytest

from components.config import load_params
from components.data.coco import ATTRIBUTION, COCO_DIR, TEST_FILE, TRAIN_FILE, coco_sentences
from components.data.shards import load_split, read_manifest
from components.data.source_data import DataError
from components.data.text import UNK, decode, tokenize
from conftest import REPO
from pipelines import prepare

LIMIT = 21  # the preset's data.seq_len 22, less one for <eos>


def _tokenised(name: str) -> list[list[str]]:
    """The file's lines as the preset reads them: tokenised, cut to LIMIT tokens (data.long_lines truncate)."""
    return [tokenize(line)[:LIMIT] for line in (COCO_DIR / name).read_text().splitlines()]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    params = load_params(REPO / "params.yaml", ["preset=seqgan_coco", f"data.prepared_dir={root / 'prepared'}"])
    return prepare.run(params, root)


def test_the_splits_are_the_two_files_line_for_line(prepared):
    manifest = read_manifest(prepared)
    vocabulary = manifest["vocabulary"]
    train, test = (load_split(prepared, s)[0] for s in ("train", "test"))
    train_lines, test_lines = _tokenised(TRAIN_FILE), _tokenised(TEST_FILE)
    assert len(train) == len(train_lines) == 10_000 and len(test) == len(test_lines) == 10_000
    # the vocabulary is the train file's: every train word is in it, and a test word the train file lacks is <unk>
    assert [decode(row, vocabulary).split() for row in train] == train_lines
    known = set(vocabulary)
    assert [decode(row, vocabulary).split() for row in test] == [[w if w in known else UNK for w in s]
                                                                 for s in test_lines]
    assert manifest["test_fraction"] is None and manifest["seq_len"] == LIMIT + 1
    lines = manifest["origin"]["lines"]
    assert (lines["train"]["truncated"], lines["test"]["truncated"]) == (75, 55)
    assert lines["train"]["dropped"] == lines["test"]["dropped"] == 0


def test_the_attribution_ships_beside_the_data():
    for name in (TRAIN_FILE, TEST_FILE, *ATTRIBUTION):
        assert (COCO_DIR / name).is_file(), name
    readme = (COCO_DIR / "README.md").read_text()
    assert "geek-ai/Texygen" in readme and "CC BY 4.0" in readme
    assert "MIT License" in (COCO_DIR / "LICENSE-Texygen").read_text()


@pytest.mark.parametrize("broken, message", [
    (TEST_FILE, f"{TEST_FILE} does not exist"),
    (TRAIN_FILE, f"{TRAIN_FILE} is not UTF-8: line 2"),
])
def test_a_missing_or_bad_file_is_refused_by_name(tmp_path, broken, message):
    (tmp_path / TRAIN_FILE).write_text("a dog on a bed .\na cat\n")
    (tmp_path / TEST_FILE).write_text("a dog .\n")
    if broken == TEST_FILE:
        (tmp_path / TEST_FILE).unlink()
    else:
        (tmp_path / TRAIN_FILE).write_bytes(b"a dog\n\xff a cat\n")
    cfg = load_params(None, ["preset=seqgan_coco"]).data
    with pytest.raises(DataError, match=message):
        coco_sentences(cfg, tmp_path)


def test_a_long_line_follows_data_long_lines_in_either_file(tmp_path, capsys):
    (tmp_path / TRAIN_FILE).write_text("a b c\nd e f g h\n")
    (tmp_path / TEST_FILE).write_text("a b c d e\n")
    cfg = load_params(None, ["preset=seqgan_coco", "data.seq_len=4", "data.long_lines=error"]).data
    with pytest.raises(DataError, match=rf"{TRAIN_FILE}, line 2: 5 tokens"):
        coco_sentences(cfg, tmp_path)
    got = coco_sentences(cfg.model_copy(update={"long_lines": "truncate"}), tmp_path)
    assert got.lines == [["a", "b", "c"], ["d", "e", "f"], ["a", "b", "c"]] and got.test_rows.tolist() == [2]
    shown = capsys.readouterr().out
    assert f"({TEST_FILE}, the test split): kept 1 of 1 lines; cut 1" in shown
    assert "data.test_fraction (0.1) is not used" in shown
