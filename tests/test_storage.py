"""Storage by URI (components/storage.py) on a local S3 server (moto's server mode): checkpoints, prepared
shards and their per-rank reads, the bad-input refusals; and the streamed reader (components/training/batches.py)."""
from __future__ import annotations

import os

import boto3
import numpy as np
import pytest
import torch
from moto.server import ThreadedMotoServer

from components.data import shards
from components.storage import StorageError, check_reachable, location
from components.training import batches, checkpoint as ckpt
from components.training.loop import Worker, plan, stream_seed
from conftest import tiny_params, train_in_process

BUCKET = "genpipe-test"


@pytest.fixture(scope="module")
def s3():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket=BUCKET)
    yield env
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    server.stop()


def test_location_reads_and_writes_objects_and_publishes_the_marker_last(s3, tmp_path):
    root = location(f"s3://{BUCKET}/loc")
    (root / "a" / "x.txt").write_text("hello")
    assert (root / "a" / "x.txt").read_text() == "hello" and (root / "a").is_dir() and not (root / "b").exists()
    assert [c.name for c in root.children()] == ["a"] and (root / "a").size() == 5
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("manifest.json", "z.bin", "sub/y.bin"):
        (tmp_path / "d" / name).write_bytes(name.encode())
    keys = []
    from components import storage

    real = storage.Location.write_bytes
    storage.Location.write_bytes = lambda self, data: (keys.append(self.name), real(self, data))[1]
    try:
        target = storage.publish(tmp_path / "d", root / "pub", last="manifest.json")
    finally:
        storage.Location.write_bytes = real
    assert keys[-1] == "manifest.json" and sorted(keys) == ["manifest.json", "y.bin", "z.bin"]
    with target.local_copy() as d:
        assert sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()) == \
            ["manifest.json", "sub/y.bin", "z.bin"]


def test_prepared_data_published_once_and_read_per_rank_from_s3(s3, digits_root):
    local = tiny_params(digits_root).prepared_path(digits_root)
    remote = location(f"s3://{BUCKET}/prepared")
    first = shards.publish_prepared(local, remote)
    manifest = shards.read_manifest(local)
    assert first.uri == f"s3://{BUCKET}/prepared/digits-{manifest['content_hash'][:16]}"
    assert shards.read_manifest(first.uri) == manifest
    marker = boto3.client("s3").head_object(Bucket=BUCKET, Key=f"prepared/{first.name}/manifest.json")
    assert shards.publish_prepared(local, remote).uri == first.uri  # content-named: not uploaded again
    assert boto3.client("s3").head_object(Bucket=BUCKET, Key=f"prepared/{first.name}/manifest.json")["ETag"] == marker["ETag"]
    for rank in range(2):
        here, there = shards.read_share(local, "train", rank, 2), shards.read_share(first.uri, "train", rank, 2)
        assert np.array_equal(here.samples, there.samples) and np.array_equal(here.labels, there.labels)
    params = tiny_params(digits_root)
    assert plan(params, first.uri, 2) == plan(params, local, 2)


def test_newest_whole_checkpoint_and_pruning_on_s3(s3, tmp_path):
    from pipelines.leftovers import TRAIN_RECORD, prune_train_run

    run = location(f"s3://{BUCKET}/runs/r1")
    for i, step in enumerate((3, 6, 9)):
        d = tmp_path / f"c{i}"
        d.mkdir()
        ckpt.save({"step": step, "w": torch.arange(4.0) * step}, d)
        (run / f"checkpoint_2026-01-01_00-00-0{i}.000000").upload(d)
    assert ckpt.load_at(ckpt.newest_whole(run))["step"] == 9
    newest = run / "checkpoint_2026-01-01_00-00-02.000000" / ckpt.STATE_FILE
    newest.write_bytes(newest.read_bytes()[:-10])  # cut short: the hash record says so
    assert ckpt.newest_whole(run).name.endswith("01.000000")
    (run / TRAIN_RECORD).write_text('{"checkpoint_results": [{"checkpoint_dir_name": "checkpoint_2026-01-01_00-00-01.000000"}]}')
    assert ckpt.newest_whole(run).name.endswith("01.000000")  # Ray's record beside them is no checkpoint
    removed = prune_train_run(run.uri)  # unrecorded: the older one, and the damaged newer one
    assert sorted(f.name for f in removed) == ["checkpoint_2026-01-01_00-00-00.000000", "checkpoint_2026-01-01_00-00-02.000000"]
    assert [c.name for c in run.children("checkpoint_") if c.is_dir()] == ["checkpoint_2026-01-01_00-00-01.000000"]


def test_bad_storage_is_refused_with_the_key_and_nothing_written(s3, monkeypatch):
    with pytest.raises(StorageError, match=r"scaling.storage_path = s3://no-such-bucket/x: the bucket 'no-such-bucket' does not exist"):
        check_reachable(location("s3://no-such-bucket/x"), "scaling.storage_path")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(StorageError, match=r"tune.storage_path = .*cannot be reached; check AWS_ENDPOINT_URL"):
        check_reachable(location(f"s3://{BUCKET}/x"), "tune.storage_path")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3["AWS_ENDPOINT_URL"])
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StorageError, match=r"data.remote = .*no S3 credentials; set AWS_ACCESS_KEY_ID"):
        check_reachable(location(f"s3://{BUCKET}/x"), "data.remote")
    assert not location(f"s3://{BUCKET}/x").exists()


def test_streamed_share_serves_every_row_once_an_epoch_and_resumes_identically(digits_root):
    params = tiny_params(digits_root, data={"stream": "streamed", "stream_window_rows": 100})
    prepared = params.prepared_path(digits_root)
    manifest = shards.read_manifest(prepared)
    ident = lambda t: t  # noqa: E731
    worker = Worker(1, 2)
    rows = shards.rank_row_counts(prepared, "train", 2)[1]
    reader = batches.Streamed(prepared, worker, 0, manifest, 100, ident)
    assert reader.per_window == 100 // 64 + 0 or reader.per_window == 1
    b = 32
    epoch0 = [reader.rows(0, n * b, (n + 1) * b, stream_seed) for n in range(rows // b)]
    served = torch.cat([x for x, _ in epoch0])
    assert len(served) == rows // b * b and len(reader.loaded) <= 2
    # every served row is distinct and belongs to rank 1's share
    share = torch.from_numpy(shards.read_share(prepared, "train", 1, 2).samples)
    as_bytes = lambda t: {bytes(r.numpy().tobytes()) for r in t}  # noqa: E731
    assert len(as_bytes(served)) == len(as_bytes(share[:]) & as_bytes(served)) == len(served)
    epoch1 = reader.rows(1, 0, b, stream_seed)[0]
    assert not torch.equal(epoch1, epoch0[0][0])  # another order next epoch
    fresh = batches.Streamed(prepared, worker, 0, manifest, 100, ident)  # a resumed run, mid-epoch
    assert torch.equal(fresh.rows(0, 5 * b, 6 * b, stream_seed)[0], epoch0[5][0])


def test_the_rule_picks_streamed_past_the_budget_and_streamed_training_runs(run_root):
    small = tiny_params(run_root, data={"memory_budget_mb": 1})
    manifest = shards.read_manifest(small.prepared_path(run_root))
    assert batches.share_bytes(manifest, 1000) == 1000 * (64 + 8)  # 8×8 uint8 + an int64 label
    assert not batches.streamed(small.data, manifest, 10_000)  # 0.7 MB fits 1 MB
    assert batches.streamed(small.data, manifest, 20_000)
    assert batches.streamed(tiny_params(run_root, data={"stream": "streamed"}).data, manifest, 1)
    params = tiny_params(run_root, data={"stream": "streamed", "stream_window_rows": 128})
    rec, out = train_in_process(params, run_root)
    assert out["step"] == 6 and all(np.isfinite(v) for _, m in rec.logs for v in m.values())
