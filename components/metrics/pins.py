"""Pinned evaluators: the measuring stick as a versioned artifact, the same on every machine.

An evaluator's *definition* is what decides its weights: the network (kind and architecture), the
training recipe (epochs, batch size, learning rate, its own seed, `RECIPE_VERSION`) and the data it
learns (the prepared dataset's content hash). The same definition trained on another CPU gives other
weights (floating-point reductions differ), so metrics would stop being comparable between clones. A
pin is an evaluator folder kept in git under `components/metrics/pinned/<dataset>-<definition hash>/`:
a clone whose definition matches copies it instead of training. Edits elsewhere in the metrics package
change no definition, so they never change the evaluator.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from components.atomic import atomic_dir

PINNED_DIR = Path(__file__).resolve().parent / "pinned"
DEFINITION = "definition.json"

# Bump when train_classifier or ClassifierNet changes what weights a definition trains to (a new
# augmentation, optimiser or layer): every definition then names a new evaluator, and the old pins stay
# valid for the old code. Comments, speed-ups with the same numbers and other files need no bump.
RECIPE_VERSION = 1


def definition(manifest: dict, cfg, network: tuple[list[int], int]) -> dict:
    """A trained classifier evaluator's definition on this prepared dataset (unpaired datasets: both domains):
    the architecture `ClassifierNet` builds for `network` = (image shape, classes), which its evaluator
    (components/metrics/evaluators/) decides, the recipe in `cfg` (the `evaluator` config section) and the data."""
    from components.metrics.classifier import FEATURE_DIM, WIDTHS

    shape, classes = network
    return {
        "kind": cfg.kind,
        "recipe_version": RECIPE_VERSION,
        "arch": {"image_shape": list(shape), "num_classes": classes, "feature_dim": FEATURE_DIM, "widths": list(WIDTHS)},
        "recipe": {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed},
        "data": {"dataset": manifest["dataset"], "content_hash": manifest["content_hash"],
                 "input_domain": manifest.get("pairing") == "unpaired"},
    }


def definition_hash(defn: dict) -> str:
    return hashlib.sha256(json.dumps(defn, sort_keys=True).encode()).hexdigest()


def pin_dir(defn: dict, root: Path | None = None) -> Path:
    return (root or PINNED_DIR) / f"{defn['data']['dataset']}-{definition_hash(defn)[:12]}"


def find(defn: dict, root: Path | None = None) -> Path | None:
    """The pinned evaluator folder of this definition, or None. A folder whose recorded definition
    differs (a 12-hex-digit prefix clash, or a hand edit) is refused rather than used."""
    folder = pin_dir(defn, root)
    if not folder.is_dir():
        return None
    recorded = json.loads((folder / DEFINITION).read_text())
    if recorded != defn:
        raise ValueError(f"pinned evaluator {folder} records a different definition than this one; "
                         f"remove it or retrain with `genpipe evaluator --retrain --pin`")
    return folder


def copy_pin(folder: Path, out_dir: Path) -> None:
    """The pinned folder, byte for byte, as the stage's output (atomic)."""
    with atomic_dir(out_dir) as tmp:
        shutil.copytree(folder, tmp, dirs_exist_ok=True)
        (tmp / DEFINITION).unlink()


def pin(evaluator_dir: Path, defn: dict, root: Path | None = None) -> Path:
    """Keep the evaluator folder as the pin of its definition (replacing an older pin of it)."""
    dest = pin_dir(defn, root)
    with atomic_dir(dest) as tmp:
        shutil.copytree(evaluator_dir, tmp, dirs_exist_ok=True)
        (tmp / DEFINITION).write_text(json.dumps(defn, indent=2, sort_keys=True) + "\n")
    return dest
