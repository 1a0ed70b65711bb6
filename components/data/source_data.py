"""What a data source produces (`SourceData`), the `SOURCES` registry it registers in, and `DataError`.
Kept apart from the sources themselves (sources.py, mixtures.py), which import this module, so nothing
here imports them back."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from components.registry import Registry

if TYPE_CHECKING:
    from components.config import DataConfig


class DataError(ValueError):
    """Unusable input data or prepared dataset; the message names the offending file, folder or value."""


CHANNELS = {"L": 1, "RGB": 3}  # PIL mode → channels; anything else must be converted by the user


@dataclass(frozen=True)
class SourceData:
    samples: np.ndarray  # images: uint8 (N, C, H, W); points: float32 (N, D)
    labels: np.ndarray  # int64, shape (N,)
    class_names: list[str]
    # points only: the mixture the points come from, {"centers": [[x, y], …], "sigma": σ}, for mode metrics
    mixture: dict | None = None
    # translation pairs only (components/data/pairings.py): row i is (inputs[i] → samples[i]); for an
    # unpaired dataset the two are drawn independently from two domains and the pairing means nothing
    inputs: np.ndarray | None = None  # uint8 (N, C', H', W')
    input_labels: np.ndarray | None = None  # int64 (N,)
    pairing: str | None = None
    # token sequences only: samples are int32 (N, seq_len) ids into `vocabulary` (components/data/text.py);
    # an oracle dataset also keeps the oracle's arrays (components/data/oracle.py), which score NLL_oracle
    vocabulary: list[str] | None = None
    oracle: dict | None = None
    origin: dict | None = None  # a shipped corpus: its name, origin and licence
    # a data kind the layout does not tell apart (components/data/kinds.py): set by its own source; None infers
    declared_kind: str | None = None
    # a source whose files fix the split (coco: its test file): the rows of the test split, the rest train;
    # None: write_prepared draws the seeded stratified split of data.test_fraction
    test_rows: np.ndarray | None = None

    def encoded(self, cfg, seed: int) -> "SourceData":
        """What is written to shards: samples as they are (a text source encodes its sentences first)."""
        return self

    @property
    def kind(self) -> str:
        if self.declared_kind is not None:
            return self.declared_kind
        if self.inputs is not None:
            return "pairs"
        if self.vocabulary is not None:
            return "oracle_tokens" if self.oracle is not None else "tokens"
        return "points" if self.samples.ndim == 2 else "image"

    def __post_init__(self) -> None:
        # Checked once here so the writer and the content hash can rely on the layout.
        im, lb = self.samples, self.labels
        is_image = im.dtype == np.uint8 and im.ndim == 4 and im.shape[1] in CHANNELS.values()
        is_points = im.dtype == np.float32 and im.ndim == 2 and im.shape[1] >= 1
        is_tokens = im.dtype == np.int32 and im.ndim == 2 and self.vocabulary is not None
        if not (is_image or is_points or is_tokens):
            raise DataError("samples must be uint8 images (N, C, H, W) with C in 1 or 3, float32 points (N, D) or "
                            f"int32 token ids (N, L) with a vocabulary; got {im.dtype} {im.shape}")
        if is_tokens and len(im) and (im.min() < 0 or im.max() >= len(self.vocabulary)):
            raise DataError(f"token ids must lie in [0, {len(self.vocabulary)}), got [{im.min()}, {im.max()}]")
        if lb.dtype != np.int64 or lb.shape != im.shape[:1]:
            raise DataError(f"labels must be int64 of shape ({len(im)},), got {lb.dtype} {lb.shape}")
        names = self.class_names
        if not all(isinstance(c, str) for c in names) or len(set(names)) != len(names):
            raise DataError(f"class_names must be distinct strings, got {names!r}")
        if len(lb) and (lb.min() < 0 or lb.max() >= len(self.class_names)):
            raise DataError(f"labels must lie in [0, {len(self.class_names)}), got [{lb.min()}, {lb.max()}]")
        if self.test_rows is not None:
            rows = np.asarray(self.test_rows)
            if rows.dtype.kind not in "iu" or rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.max() >= len(lb))):
                raise DataError(f"test_rows must be row indices in [0, {len(lb)}), got {rows.dtype} {rows.shape}")
        if self.inputs is not None:
            x, xl = self.inputs, self.input_labels
            if not (is_image and x.dtype == np.uint8 and x.ndim == 4 and len(x) == len(im)):
                raise DataError(f"pairs need uint8 images on both sides, one input per sample; got inputs "
                                f"{x.dtype} {x.shape} for samples {im.dtype} {im.shape}")
            if xl is None or xl.dtype != np.int64 or xl.shape != lb.shape:
                raise DataError(f"input_labels must be int64 of shape ({len(lb)},)")


SOURCES: Registry[Callable[["DataConfig"], SourceData]] = Registry("source")
