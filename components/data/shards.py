"""Prepared datasets on disk: Parquet shards per split plus a manifest, written atomically, read per rank.

Layout of `<prepared_dir>/<dataset>/`:

    manifest.json              counts, shape, class names, shard files per split, content hash
    train/part-00000.parquet   at most rows_per_shard rows, row groups of row_group_rows
    test/part-00000.parquet

The row group is the unit of data parallelism: of `world_size` workers, rank r reads the row
groups i (numbered across the split's files in manifest order) with i % world_size == r, so no
worker reads another worker's rows. A split too small for MIN_ROW_GROUPS groups of row_group_rows gets
smaller groups, so a small dataset still gives every worker a share.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.atomic import atomic_dir
from components.data.kinds import DATA_KINDS, Share, kind_of
from components.data.source_data import DataError, SourceData
from components.storage import Location, location, publish

if TYPE_CHECKING:
    from components.config import DataConfig

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ORACLE_FILE = "oracle.npz"  # beside the shards of an oracle dataset (components/data/oracle.py)
SPLITS = ("train", "test")
_HINT = "run `genpipe prepare` first"

# ---------------------------------------------------------------------------------------------- split

def _test_count(n: int, test_fraction: float) -> int:
    if n < 2:
        return 0  # a singleton class cannot be in both splits; it trains
    return min(max(int(n * test_fraction + 0.5), 1), n - 1)  # ≥ 1 test and ≥ 1 train item


def split_indices(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded train/test split of row indices, each sorted ascending."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for c in np.unique(labels):  # sorted classes: the RNG is consumed in a fixed order
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = _test_count(len(idx), test_fraction)
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def source_split(labels: np.ndarray, test_rows: np.ndarray | None, test_fraction: float,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The train and test rows: the source's own test rows when its files fix them (coco's test file), the
    rest train; else the seeded stratified `split_indices`."""
    if test_rows is None:
        return split_indices(labels, test_fraction, seed)
    test = np.unique(np.asarray(test_rows, np.int64))
    return np.setdiff1d(np.arange(len(labels)), test), test


# ---------------------------------------------------------------------------------------------- write

MIN_ROW_GROUPS = 16  # a split has at least this many row groups when it has that many rows


def row_group_size(rows: int, row_group_rows: int) -> int:
    """data.row_group_rows, or smaller for a small split: at least MIN_ROW_GROUPS groups (one row each at
    worst), so that up to MIN_ROW_GROUPS workers each get rows."""
    return max(1, min(row_group_rows, rows // MIN_ROW_GROUPS))


def _write_split(root: Path, name: str, rows_of: SourceData, index: np.ndarray, cfg: DataConfig) -> list[str]:
    (root / name).mkdir()
    files, group = [], row_group_size(len(index), cfg.row_group_rows)
    for part, start in enumerate(range(0, len(index), cfg.rows_per_shard)):
        rows = index[start : start + cfg.rows_per_shard]
        rel = f"{name}/part-{part:05d}.parquet"
        pair = (rows_of.inputs[rows], rows_of.input_labels[rows]) if rows_of.inputs is not None else ()
        # pyarrow stamps no time or host into the file (only "created_by" with its version): same data → same bytes.
        pq.write_table(DATA_KINDS.get(rows_of.kind).table(rows_of.samples[rows], rows_of.labels[rows], rows, *pair), root / rel,
                       row_group_size=group, compression="zstd")
        files.append(rel)
    return files


def _hash_split(h: "hashlib._Hash", name: str, images: np.ndarray, labels: np.ndarray) -> None:
    # A hash of the data, not of the Parquet encoding: it survives a pyarrow upgrade. The header line
    # carries the count so split boundaries are unambiguous.
    n, *shape = images.shape
    dtype = "" if images.dtype == np.uint8 else f" {images.dtype}"  # images hash as before
    h.update(f"{name} {n} {'x'.join(map(str, shape))}{dtype}\n".encode())
    h.update(labels.astype("<i4").tobytes())
    h.update(np.ascontiguousarray(images))


def write_prepared(data: SourceData, cfg: DataConfig, seed: int, out_dir: Path) -> dict:
    """Split `data`, write the shards and manifest.json into `out_dir` atomically; return the manifest."""
    out_dir = Path(out_dir)
    idx = dict(zip(SPLITS, source_split(data.labels, data.test_rows, cfg.test_fraction, seed)))
    for name in SPLITS:
        if len(idx[name]) == 0:
            raise DataError(f"dataset {cfg.dataset!r} ({len(data.labels)} images) leaves the {name} split empty; "
                            "give every class at least 2 images")
    num_classes = len(data.class_names)
    with atomic_dir(out_dir) as tmp:
        digest = hashlib.sha256()
        splits = {}
        for name in SPLITS:
            images, labels = data.samples[idx[name]], data.labels[idx[name]]
            splits[name] = {
                "count": len(labels),
                "class_counts": np.bincount(labels, minlength=num_classes).tolist(),
                "files": _write_split(tmp, name, data, idx[name], cfg),
            }
            _hash_split(digest, name, images, labels)
            if data.inputs is not None:
                _hash_split(digest, f"{name} inputs", data.inputs[idx[name]], data.input_labels[idx[name]])
        manifest = {
            "format_version": FORMAT_VERSION,
            "dataset": cfg.dataset,
            "source": cfg.source,
            "seed": seed,
            "test_fraction": cfg.test_fraction if data.test_rows is None else None,  # None: the source's split
            "count": len(data.labels),
            "kind": data.kind,
            "image_shape": list(data.samples.shape[1:]),  # shape of one sample: (C, H, W) or (D,) for points
            "class_names": list(data.class_names),
            "num_classes": num_classes,
            "splits": splits,
            "content_hash": digest.hexdigest(),
        }
        if data.mixture is not None:
            manifest["mixture"] = data.mixture
        if data.vocabulary is not None:  # token sequences: ids index the vocabulary (components/data/text.py)
            manifest.update(vocabulary=list(data.vocabulary), seq_len=int(data.samples.shape[1]))
            digest.update(json.dumps(data.vocabulary).encode())
            if data.origin is not None:
                manifest["origin"] = data.origin
        if data.oracle is not None:  # the language the sequences were drawn from: it scores NLL_oracle
            np.savez(tmp / ORACLE_FILE, **data.oracle)
            for key in sorted(data.oracle):
                digest.update(key.encode() + np.ascontiguousarray(data.oracle[key], dtype="<f4").tobytes())
            manifest["oracle"] = ORACLE_FILE
        if data.inputs is not None:
            manifest.update(pairing=data.pairing, input_shape=list(data.inputs.shape[1:]))
        manifest["content_hash"] = digest.hexdigest()
        (tmp / MANIFEST).write_text(json.dumps(manifest, sort_keys=True, indent=2) + "\n")
    return manifest


# ---------------------------------------------------------------------------------------------- read

def read_manifest(prepared_dir: Path | str | Location) -> dict:
    """The manifest of a prepared dataset: a local folder or one published at a URI (s3://…)."""
    path = location(prepared_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"no prepared dataset in {prepared_dir}: {path} is missing; {_HINT}") from None
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path} ({e}); {_HINT}") from None
    splits = manifest.get("splits") if isinstance(manifest, dict) else None
    ok = (
        isinstance(splits, dict)
        and manifest.get("format_version") == FORMAT_VERSION
        and all(k in manifest for k in ("image_shape", "class_names", "content_hash"))
        and all(isinstance(splits.get(s), dict) and "files" in splits[s] for s in SPLITS)
    )
    if not ok:
        raise DataError(f"{path} is not a genpipe manifest of format_version {FORMAT_VERSION}; {_HINT}")
    return manifest


def _row_groups(prepared_dir, split: str) -> list[tuple[Location, int, int]]:
    """(file, row group, rows) for every row group of a split, from Parquet footers only."""
    splits = read_manifest(prepared_dir)["splits"]
    if split not in splits:
        raise DataError(f"unknown split {split!r} in {prepared_dir}; available: {', '.join(sorted(splits))}")
    out = []
    for rel in splits[split]["files"]:
        path = location(prepared_dir) / rel
        try:
            with path.fs.open_input_file(path.path) as f:
                meta = pq.read_metadata(f)
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"cannot read shard {path} ({e}); {_HINT}") from None
        out += [(path, i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups)]
    return out


def publish_prepared(prepared_dir: Path, remote: Location) -> Location:
    """The prepared dataset at `remote`/<dataset>-<content hash>, uploaded unless a whole copy is there (the
    name changes with the content, so a copy is never overwritten with other data). Returns its location."""
    manifest = read_manifest(prepared_dir)
    target = remote / f"{manifest['dataset']}-{manifest['content_hash'][:16]}"
    if (target / MANIFEST).is_file() and read_manifest(target)["content_hash"] == manifest["content_hash"]:
        return target
    return publish(Path(prepared_dir), target, last=MANIFEST)


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")


def rank_row_groups(prepared_dir, split: str, rank: int, world_size: int) -> list[tuple[Location, int]]:
    """The (file, row group index) pairs rank `rank` of `world_size` reads: round-robin over the split."""
    _check_rank(rank, world_size)
    return [(p, i) for j, (p, i, _) in enumerate(_row_groups(prepared_dir, split)) if j % world_size == rank]


def rank_row_groups_with_rows(prepared_dir, split: str, rank: int, world_size: int) -> list[tuple[Location, int, int]]:
    """rank_row_groups with each group's row count (from the footers): what a streamed reader plans with."""
    _check_rank(rank, world_size)
    return [g for j, g in enumerate(_row_groups(prepared_dir, split)) if j % world_size == rank]


def read_group(path: Location, group: int, columns: list[str]) -> pa.Table:
    """One row group of one shard (these columns only)."""
    with path.fs.open_input_file(path.path) as source, pq.ParquetFile(source) as f:
        return f.read_row_group(group, columns=columns)


def rank_row_counts(prepared_dir: Path, split: str, world_size: int) -> list[int]:
    """Rows each rank gets (from Parquet metadata, no data read); ranks may differ by a row group."""
    _check_rank(0, world_size)
    counts = [0] * world_size
    for j, (_, _, rows) in enumerate(_row_groups(prepared_dir, split)):
        counts[j % world_size] += rows
    return counts


def read_rank_table(prepared_dir: Path, split: str, rank: int = 0, world_size: int = 1,
                    columns: list[str] | None = None) -> pa.Table:
    """The Arrow table of one rank's row groups (all columns, or `columns`), reading nothing else."""
    tables = []
    for path, group in itertools.groupby(rank_row_groups(prepared_dir, split, rank, world_size), key=lambda g: g[0]):
        with path.fs.open_input_file(path.path) as source, pq.ParquetFile(source) as f:  # reads only these groups
            tables.append(f.read_row_groups([i for _, i in group], columns=columns))
    if not tables:  # more ranks than row groups: this rank gets nothing
        empty = kind_of(read_manifest(prepared_dir)).schema.empty_table()
        return empty.select(columns) if columns else empty
    return pa.concat_tables(tables)


def _column_array(table: pa.Table, column: str, shape: list[int], where: str) -> np.ndarray:
    n = table.num_rows
    # flatten() honours list offsets (unlike .values on a sliced array); writable=True copies once so
    # torch.from_numpy gets a writable buffer (Arrow memory is immutable).
    flat = table.column(column).combine_chunks().flatten().to_numpy(zero_copy_only=False, writable=True)
    if flat.size != n * int(np.prod(shape)):
        raise DataError(f"{where}: {column} values do not match the manifest shape {'x'.join(map(str, shape))}; {_HINT}")
    return flat.reshape(n, *shape)


def load_rank_share(prepared_dir: Path, split: str, rank: int = 0, world_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """One rank's samples — images uint8 (n, C, H, W) or points float32 (n, D) — and labels, int64 (n,).
    For translation pairs these are the targets (load_rank_inputs: what they are translated from)."""
    manifest = read_manifest(prepared_dir)
    column = kind_of(manifest).column
    table = read_rank_table(prepared_dir, split, rank, world_size, columns=[column, "label"])
    samples = _column_array(table, column, manifest["image_shape"], f"{prepared_dir} {split}")
    return samples, table.column("label").to_numpy().astype(np.int64)


def load_rank_inputs(prepared_dir: Path, split: str, rank: int = 0, world_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Translation pairs: one rank's input images uint8 (n, C', H', W') and their labels, row for row
    with load_rank_share."""
    manifest = read_manifest(prepared_dir)
    if "input_shape" not in manifest:
        raise DataError(f"{prepared_dir} holds {manifest.get('kind', 'image')} samples, not translation pairs; "
                        "set data.pairs and run `genpipe prepare`")
    table = read_rank_table(prepared_dir, split, rank, world_size, columns=["input", "input_label"])
    inputs = _column_array(table, "input", manifest["input_shape"], f"{prepared_dir} {split}")
    return inputs, table.column("input_label").to_numpy().astype(np.int64)


def read_share(prepared_dir: Path, split: str, rank: int = 0, world_size: int = 1) -> Share:
    """What a rank reads of a split, as its data kind stores it (pairs: with the inputs, row for row)."""
    paired = kind_of(read_manifest(prepared_dir)).paired
    return Share(*load_rank_share(prepared_dir, split, rank, world_size),
                 *(load_rank_inputs(prepared_dir, split, rank, world_size) if paired else ()))


def load_split(prepared_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A whole split: samples (images uint8 (N, C, H, W) or points float32 (N, D)) and labels int64."""
    return load_rank_share(prepared_dir, split, 0, 1)
