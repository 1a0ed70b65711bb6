"""`genpipe init --images DIR | --text FILE`: point this checkout's params.yaml at the user's data, with settings
sized for it, so that `dvc repro` then runs prepare → evaluator → train → evaluate → promote with no --set.

Only the keys it sets change in params.yaml (components/config/edit.py): every other key and comment stays. It
reads the data first (counts, sizes, line lengths) and refuses what the sources would refuse later. What it
chooses, and why, is printed; the result is validated as the stages validate it before the file is replaced."""
from __future__ import annotations

import math
import os
import re
from collections import Counter
from pathlib import Path

from components.atomic import atomic_write
from components.config import load_params
from components.config.edit import changed_values, render, set_values
from components.config.loading import code_defaults
from components.data.source_data import DataError

# Image models: steps that give a usable DCGAN on a few hundred to a few thousand images on 2 CPU cores
# (the mnist5k default trains ~5,000); the global batch is the default's 2 workers × 32.
IMAGE_STEPS, GLOBAL_BATCH = 5000, 64
# The classifier evaluator: as many updates as the mnist5k one gets (20 epochs of 4,500 images at batch 128).
EVALUATOR_STEPS, EVALUATOR_BATCH = 700, 128
LARGEST_SIDE = 64  # larger images are resized: a DCGAN at 128² is hours on 2 cores
TEST_FRACTION = 0.1  # the default split, kept on a small set too: FID then compares with the train split
HOLDOUT = 0.2  # evaluator.holdout on such a set: the share of the train split the classifier reads its accuracy on
TEXT_LENGTH_QUANTILE = 0.95  # seq_len covers this share of lines whole; longer ones are cut (and counted)
TEXT_PRESET = "seqgan_text"  # the model, phases and sweep of real text


def _dataset_name(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem if path.is_file() else path.name).strip("-.")
    return name or "own"


def _where(path: Path, repo_root: Path) -> str:
    """data.path as written: relative to the checkout when inside it (a clone finds it), else absolute."""
    path = path.expanduser().resolve()
    try:
        return path.relative_to(repo_root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _image_side(sizes: Counter) -> tuple[int | None, str]:
    """(data.image_size, why): None keeps the native size when every image has one square size the DCGAN takes."""
    from components.models.dcgan import stages_for

    (w, h), _ = sizes.most_common(1)[0]
    if len(sizes) == 1 and w == h and w <= LARGEST_SIDE and stages_for(w)[0] >= 1:
        return None, f"native {w}×{h}"
    side = min(LARGEST_SIDE, max(w, h))
    side = next(s for s in (8, 16, 28, 32, LARGEST_SIDE) if s >= side)
    why = "sizes differ" if len(sizes) > 1 else f"{w}×{h} is not a square side the DCGAN halves"
    return side, f"resized to {side}×{side} ({why}{'' if max(w, h) <= LARGEST_SIDE else f'; at most {LARGEST_SIDE}'})"


def _real_side(n: int, classes: int) -> tuple[dict, str]:
    """The split and what FID compares with. FID's real side must outnumber the classifier evaluator's feature
    dimension (one image per class of slack for the stratified rounding): the default 0.1 held out when that is
    enough; else the default split kept and FID compared with the train split (evaluate.reference train, as
    small-data GAN work does), the classifier reading its accuracy on a slice of the train split it did not train
    on (evaluator.holdout). Refused when even the train split is too few. Every key is written either way, so a
    second init on other data leaves none of the first's behind."""
    from components.metrics.classifier import FEATURE_DIM

    need = FEATURE_DIM + 1 + classes
    held = round(n * TEST_FRACTION)
    if n * TEST_FRACTION >= need:
        return ({"data.test_fraction": TEST_FRACTION, "evaluate.reference": "test", "evaluator.holdout": None},
                f"data.test_fraction {TEST_FRACTION}: {held} held-out images for FID's real side")
    if n * (1 - TEST_FRACTION) < need:
        raise DataError(f"{n} images are too few to measure: FID's real side (at the least the train split, "
                        f"{1 - TEST_FRACTION:.0%} of them) must hold more than {FEATURE_DIM} images (the classifier "
                        f"evaluator's feature dimension); bring at least {math.ceil(need / (1 - TEST_FRACTION))} "
                        "images")
    return ({"data.test_fraction": TEST_FRACTION, "evaluate.reference": "train", "evaluator.holdout": HOLDOUT},
            f"data.test_fraction {TEST_FRACTION} with evaluate.reference train: {held} held-out images are too few for "
            f"FID (it needs more than {FEATURE_DIM}), so FID/KID/precision/recall compare samples with the "
            f"{n - held} train-split images (blind to memorisation; no real-vs-real floor) and the classifier "
            f"evaluator reads its accuracy on evaluator.holdout {HOLDOUT} of them, held out of its training "
            f"(docs/metrics.md#the-real-side; with {math.ceil(need / TEST_FRACTION)} images or more, the test split "
            "is FID's real side)")


def image_settings(folder: Path, repo_root: Path) -> tuple[dict, list[str]]:
    from PIL import Image

    from components.data.sources import CHANNELS, list_images

    files, _, classes = list_images(folder)
    sizes, modes = Counter(), Counter()
    for f in files:
        with Image.open(f) as im:  # the header only: sizes and modes without decoding
            sizes[im.size] += 1
            modes[im.mode] += 1
    if len(modes) > 1 or next(iter(modes)) not in CHANNELS:
        raise DataError(f"{folder}: images of several modes ({dict(modes)}); convert them to one ('L' or 'RGB')")
    image_size, size_why = _image_side(sizes)
    n, k = len(files), len(classes)
    settings = {"preset": "cgan" if k >= 2 else None, "data.source": "imagefolder",
                "data.path": _where(folder, repo_root), "data.name": _dataset_name(folder),
                "data.image_size": image_size}
    split, split_why = _real_side(n, k)
    settings.update(split)
    train_rows = n * (1 - TEST_FRACTION)
    settings["train.epochs"] = epochs = max(1, math.ceil(IMAGE_STEPS * GLOBAL_BATCH / train_rows))
    settings["train.sample_every"] = max(1, epochs // 10)
    classifier_rows = train_rows * (1 - (split["evaluator.holdout"] or 0))  # its holdout does not train it
    settings["evaluator.epochs"] = max(20, math.ceil(EVALUATOR_STEPS * EVALUATOR_BATCH / classifier_rows))
    why = [f"{n} images in {k} class folder(s), mode {next(iter(modes))}, {size_why}",
           "preset cgan: a class-conditional DCGAN (projection D, diffusion-noised D), every class drawn equally"
           if k >= 2 else "preset null: the label-free DCGAN (one class folder: no labels to condition on)",
           split_why, f"train.epochs {epochs}: ~{IMAGE_STEPS} steps at the global batch of {GLOBAL_BATCH}",
           f"evaluator.epochs {settings['evaluator.epochs']}: ~{EVALUATOR_STEPS} updates of the classifier evaluator"]
    return settings, why


def _text_preset() -> dict:
    import yaml

    from components.config.loading import PRESETS_DIR

    return yaml.safe_load((PRESETS_DIR / f"{TEXT_PRESET}.yaml").read_text())


def _text_model(preset: dict) -> dict:
    """The text preset's keys but its data ones (they name the shipped corpus); tune.space is set whole."""
    return {f"{section}.{k}": v for section, values in preset.items() if section != "data" for k, v in values.items()}


# What only the other kind of data sets: reset to the code defaults, so that an init on a checkout another init
# prepared for text (or images) leaves none of that one's settings behind.
IMAGE_KEYS = ("data.image_size", "data.test_fraction", "evaluate.reference", "evaluator.holdout", "train.epochs",
              "train.sample_every", "evaluator.epochs")
TEXT_DATA_KEYS = ("data.seq_len", "data.long_lines", "data.min_count")


def text_settings(file: Path, repo_root: Path) -> tuple[dict, list[str]]:
    from components.data.text import read_lines

    sentences, _ = read_lines(file, seq_len=2**31)  # no line is long at this limit: each line as prepare reads it
    lengths = sorted(map(len, sentences))
    if len(lengths) < 20:
        raise DataError(f"text file {file} holds {len(lengths)} non-empty line(s); a text GAN needs at least 20")
    covered = lengths[min(len(lengths) - 1, int(TEXT_LENGTH_QUANTILE * len(lengths)))]
    seq_len = max(8, min(64, covered + 1))  # + <eos>
    cut = sum(n > seq_len - 1 for n in lengths)
    # The seqgan_text preset's model and phases, written out (its data keys name the shipped corpus, not yours).
    preset = _text_preset()
    settings = {"preset": None, "data.source": "textfile", "data.path": _where(file, repo_root),
                "data.name": _dataset_name(file), "data.seq_len": seq_len,
                "data.long_lines": "truncate" if cut else "error",
                "data.min_count": 2 if sum(lengths) >= 20_000 else 1}
    settings.update(_text_model(preset))
    why = [f"{len(lengths)} sentences, {min(lengths)}–{lengths[-1]} words (median {lengths[len(lengths) // 2]})",
           f"data.seq_len {seq_len}: {int(TEXT_LENGTH_QUANTILE * 100)} % of lines whole with <eos>"
           + (f"; {cut} longer line(s) cut (data.long_lines truncate; prepare prints the count)" if cut else ""),
           f"data.min_count {settings['data.min_count']}: "
           + ("rarer words become <unk>" if settings["data.min_count"] > 1 else "every word of the train split kept"),
           f"the {TEXT_PRESET} preset's model, phases and sweep, written into params.yaml"]
    return settings, why


def run(repo_root: Path, params_file: str, images: str | None = None, text: str | None = None) -> dict:
    repo_root = Path(repo_root)
    target = repo_root / params_file
    if not target.is_file():
        raise FileNotFoundError(f"{target} does not exist: run genpipe init in a genpipe checkout")
    if images is not None:
        settings, why = image_settings(Path(images).expanduser(), repo_root)
        other = (*TEXT_DATA_KEYS, *_text_model(_text_preset()))
    else:
        settings, why = text_settings(Path(text).expanduser(), repo_root)
        other = IMAGE_KEYS
    settings = {**code_defaults(k for k in other if k not in settings), **settings}
    text_before = target.read_text()
    changed = changed_values(text_before, settings)
    new = set_values(text_before, changed)
    check = target.with_name(f".{target.name}.init-{os.getpid()}")
    try:  # validated as every stage will validate it, before the file is replaced
        check.write_text(new)
        params = load_params(check)
    finally:
        check.unlink(missing_ok=True)
    atomic_write(target, new)
    print(f"genpipe init: wrote {params_file} for {settings['data.path']} (dataset {params.data.dataset}):")
    for line in why:
        print(f"  - {line}")
    print("  set: " + (", ".join(f"{k}={render(v)}" for k, v in changed.items()) or "nothing new: params.yaml "
                       "already said all this"))
    print("next: `dvc repro` (prepare → evaluator → train → evaluate → promote); any change to your files reruns "
          "the stages that read them")
    return settings
