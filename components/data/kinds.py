"""Data kinds by name (a prepared manifest's `kind`): what one row of a dataset is. Each kind owns its
shard schema and how a table is built from samples, what a rank reads of it, how samples are previewed,
and how a preview is logged. What scores them is an evaluator (components/metrics/evaluators/), which
declares the kinds it scores, as a family declares the kinds it trains on (components/families/). Adding a
kind (token sequences…) is one class here."""
from __future__ import annotations

from typing import ClassVar, NamedTuple

import numpy as np
import pyarrow as pa

from components.registry import Registry


class Share(NamedTuple):
    """What a rank reads of a split: samples (images uint8 (n, C, H, W), points float32 (n, D)) and labels
    int64; for pairs also the inputs they are translated from, row for row."""
    samples: np.ndarray
    labels: np.ndarray
    inputs: np.ndarray | None = None
    input_labels: np.ndarray | None = None


def _list_type(dtype) -> pa.DataType:
    # "element" is the child name Parquet's spec uses, so tables read back have exactly this schema.
    return pa.list_(pa.field("element", dtype))


def list_column(samples: np.ndarray, dtype) -> pa.ListArray:
    """(n, …) samples as one list<dtype> column of n rows (flattened row-major)."""
    n, width = len(samples), int(np.prod(samples.shape[1:]))
    if n * width > np.iinfo(np.int32).max:  # list<> uses int32 offsets
        from components.data.source_data import DataError

        raise DataError(f"a shard of {n} samples of shape {samples.shape[1:]} exceeds 2**31 values; "
                        "lower data.rows_per_shard")
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * np.int32(width))
    values = pa.array(np.ascontiguousarray(samples).reshape(-1))
    return pa.ListArray.from_arrays(offsets, values, type=_list_type(dtype))


RATE_SUFFIX = "_per_s"  # a throughput metric's suffix (shown on the console and kept as a curve with the losses)


class DataKind:
    name: ClassVar[str]
    column: ClassVar[str]  # the samples column
    schema: ClassVar[pa.Schema]
    paired: ClassVar[bool] = False  # rows also hold the input they are translated from (Share.inputs)
    preview_suffix: ClassVar[str] = ".png"  # the file a preview is logged as (`preview` returns text for ".txt")
    rate_unit: ClassVar[str] = "images"  # what training throughput counts: the metric `<rate_unit>_per_s`

    def table(self, samples: np.ndarray, labels: np.ndarray, index: np.ndarray, inputs=None, input_labels=None) -> pa.Table:
        raise NotImplementedError

    def rows_called(self, manifest: dict) -> str:
        """What its rows are called in messages ("images", "points", "downsample pairs")."""
        return "images"

    @property
    def rate_metric(self) -> str:
        """The training loop's throughput metric: images_per_s, points_per_s, tokens_per_s."""
        return self.rate_unit + RATE_SUFFIX

    def units_per_row(self, manifest: dict) -> int:
        """How many `rate_unit`s one row holds."""
        return 1

    def preview(self, samples, cols: int | None = None) -> np.ndarray | str:
        """Generated samples as one picture for MLflow (an image grid, `cols` per row), or text."""
        from components.training.images import grid

        return grid(samples, cols=cols)

    def to_model_space(self, samples: np.ndarray):
        """Stored samples → what a generator produces (a tensor): uint8 images to [-1, 1]."""
        import torch

        return torch.from_numpy(samples).float().div_(127.5).sub_(1.0)


DATA_KINDS: Registry[DataKind] = Registry("data kind")
_IMAGE_SCHEMA = pa.schema([
    ("image", _list_type(pa.uint8())),  # C*H*W bytes, row-major; shape in the columns below and the manifest
    ("channels", pa.int32()), ("height", pa.int32()), ("width", pa.int32()),
    ("label", pa.int32()),
    ("index", pa.int64()),  # row in the source, so any prepared row can be traced back
])


def _tail(labels: np.ndarray, index: np.ndarray) -> list[pa.Array]:
    return [pa.array(labels.astype(np.int32)), pa.array(index.astype(np.int64))]


def _image_columns(samples: np.ndarray) -> list[pa.Array]:
    n, c, h, w = samples.shape
    const = lambda v: pa.array(np.full(n, v, dtype=np.int32))  # noqa: E731
    return [list_column(samples, pa.uint8()), const(c), const(h), const(w)]


class Images(DataKind):
    """uint8 images (C, H, W), scored under the evaluator's feature network."""
    name = "image"
    column = "image"
    schema = _IMAGE_SCHEMA

    def table(self, samples, labels, index, inputs=None, input_labels=None):
        return pa.Table.from_arrays([*_image_columns(samples), *_tail(labels, index)], schema=self.schema)


class Points(DataKind):
    """float32 points (D,) of a known mixture (the 2D benchmarks), scored by counting its modes."""
    name = "points"
    column = "point"
    rate_unit = "points"
    schema = pa.schema([("point", _list_type(pa.float32())), ("label", pa.int32()), ("index", pa.int64())])

    def table(self, samples, labels, index, inputs=None, input_labels=None):
        return pa.Table.from_arrays([list_column(samples, pa.float32()), *_tail(labels, index)], schema=self.schema)

    def to_model_space(self, samples):
        import torch

        return torch.from_numpy(samples).float()  # points are stored as they are

    def rows_called(self, manifest):
        return "points"

    def preview(self, samples, cols=None):
        from components.training.images import scatter

        return scatter(samples)  # a scatter plot of the first two coordinates


class Pairs(Images):
    """Translation pairs (components/data/pairings.py): the target image plus its input image and label."""
    name = "pairs"
    paired = True
    schema = pa.schema([*_IMAGE_SCHEMA, ("input", _list_type(pa.uint8())), ("input_label", pa.int32())])

    def table(self, samples, labels, index, inputs=None, input_labels=None):
        return pa.Table.from_arrays([*_image_columns(samples), *_tail(labels, index), list_column(inputs, pa.uint8()),
                                     pa.array(input_labels.astype(np.int32))], schema=self.schema)

    def rows_called(self, manifest):
        return f"{manifest.get('pairing')} pairs"


class Tokens(DataKind):
    """Fixed-length int32 token-id sequences of a text (components/data/text.py: <eos> ends and pads, the
    vocabulary is in the manifest), scored by BLEU / Self-BLEU against the test split."""
    name = "tokens"
    column = "tokens"
    schema = pa.schema([("tokens", _list_type(pa.int32())), ("label", pa.int32()), ("index", pa.int64())])
    preview_suffix = ".txt"
    rate_unit = "tokens"

    def table(self, samples, labels, index, inputs=None, input_labels=None):
        return pa.Table.from_arrays([list_column(samples, pa.int32()), *_tail(labels, index)], schema=self.schema)

    def rows_called(self, manifest):
        return "sequences"

    def units_per_row(self, manifest):
        return manifest["seq_len"]  # every token of a row, the <eos> padding included

    def to_model_space(self, samples):
        import torch

        return torch.from_numpy(np.asarray(samples)).long()

    def preview(self, samples, cols=None):
        return samples  # text already: the task decodes its sentences with the vocabulary


class OracleTokens(Tokens):
    """Sequences drawn from a known oracle LSTM (SeqGAN's synthetic benchmark), kept beside the shards
    (oracle.npz): samples are also scored by the oracle's NLL of them."""
    name = "oracle_tokens"


for _kind in (Images(), Points(), Pairs(), Tokens(), OracleTokens()):
    DATA_KINDS.register(_kind.name)(_kind)


def kind_of(manifest: dict) -> DataKind:
    """The data kind of a prepared dataset (manifests written before points existed hold images)."""
    return DATA_KINDS.get(manifest.get("kind", "image"))
