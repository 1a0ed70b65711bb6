"""COCO captions (`data.source: coco`), the real-text benchmark of Texygen (Zhu et al. 2018) and of the text
GANs scored on it (SeqGAN, LeakGAN, RelGAN…): Texygen's `image_coco.txt` (10,000 captions; `wc -l` says
9,999, as the last line has no newline) is the train split and `test_coco.txt` (10,000) the test split, the
references of BLEU, exactly as Texygen scores them: there is no random split, so data.test_fraction is not
used (prepare says so, and the manifest's test_fraction is null). The files ship with the project in
data/coco/ beside their README (origin, attribution) and Texygen's MIT licence; the captions are Microsoft
COCO's (CC BY 4.0). data/coco is not a DVC dependency of prepare (dvc.yaml is unchanged): the files are fixed.

Both files go through the textfile rules (components/data/text.py `read_lines`): our `tokenize`, and
data.long_lines for a line of more than data.seq_len - 1 tokens, in either file alike. The counts of lines
kept, cut and dropped are printed and kept per file in the manifest's `origin.lines`.

How this differs from Texygen:

* Tokens: Texygen uses nltk's `word_tokenize`; ours keeps a hyphenated word's parts apart ("old - fashioned"
  where nltk keeps "old-fashioned"), keeps clitics on their word ("woman's", nltk "woman 's") and leaves
  quotes as '"' (nltk: `` and ''). 280 train and 247 test lines tokenise differently; the mean length is
  11.4 tokens in both (max 37), so BLEU is counted over nearly, not exactly, the same units.
* Vocabulary: Texygen's dictionary holds every word of BOTH files; ours, as for every text source, the train
  split's words only (data.min_count). The test file's ~1,880 words the train file never has (3.8 % of its
  tokens, in 3,149 of its 10,000 sentences at min_count 1 and seq_len 22) are therefore <unk> in the test
  references. Neither G ever trains on those words (in Texygen they are output classes no training sentence holds), so
  no sample matches them in either setup and BLEU is unaffected, but for a sample's <unk> (never in the
  train split at min_count 1, so G all but never emits it) matching a reference's. NLL_test prices each
  such word as <unk>, a token G never saw: comparable within genpipe, not with Texygen's figure.
* Length: Texygen pads to the longest sentence of both files; here data.seq_len decides (preset
  seqgan_coco: 22, i.e. 21 tokens and <eos>, which cuts 75 train and 55 test lines at long_lines truncate).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.data.source_data import SOURCES
from components.data.text import read_lines
from components.data.tokens import Sentences

if TYPE_CHECKING:
    from components.config import DataConfig

COCO_DIR = Path(__file__).resolve().parents[2] / "data" / "coco"  # in the repository, tracked by git
TRAIN_FILE, TEST_FILE = "image_coco.txt", "test_coco.txt"
ATTRIBUTION = ("README.md", "LICENSE-Texygen")  # kept beside the data (the MIT licence asks for it)
ORIGIN = ("Texygen's COCO captions (github.com/geek-ai/Texygen, commit 3104e22: data/image_coco.txt and "
          "data/testdata/test_coco.txt), captions of Microsoft COCO")
LICENCE = "MIT (Texygen, data/coco/LICENSE-Texygen); COCO's annotations CC BY 4.0"


@SOURCES.register("coco")
def coco(cfg: DataConfig) -> Sentences:
    """Train: image_coco.txt; test: test_coco.txt (both in data/coco)."""
    return coco_sentences(cfg, COCO_DIR)


def coco_sentences(cfg: DataConfig, folder: Path) -> Sentences:
    """The train file's sentences, then the test file's; test_rows marks the latter as the test split. A
    missing, non-UTF-8 or empty file, or a long line at data.long_lines error, is refused naming the file."""
    where = "data.source coco"
    split_lines, counts = {}, {}
    for split, name in (("train", TRAIN_FILE), ("test", TEST_FILE)):
        split_lines[split], counts[split] = read_lines(Path(folder) / name, cfg.seq_len, cfg.long_lines)
        if note := counts[split].note(f"{where} ({name}, the {split} split)", cfg.seq_len, cfg.long_lines):
            print(note, flush=True)
    train, test = split_lines["train"], split_lines["test"]
    print(f"{where}: the test split is {TEST_FILE}'s {len(test)} sentences, as Texygen scores BLEU; "
          f"data.test_fraction ({cfg.test_fraction}) is not used", flush=True)
    origin = {"name": "coco", "origin": ORIGIN, "licence": LICENCE,
              "split": {"train": TRAIN_FILE, "test": TEST_FILE},
              "lines": {split: {**c._asdict(), "kept": c.kept} for split, c in counts.items()}}
    return Sentences(train + test, origin, test_rows=np.arange(len(train), len(train) + len(test)))
