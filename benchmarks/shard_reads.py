"""How should workers read prepared shards from object storage (issue 32, docs/cluster.md#data-on-the-workers)?
Per-rank pyarrow reads of each rank's own row groups (what genpipe does) against Ray Data's `read_parquet` +
`streaming_split` (what `ray.train.get_dataset_shard` serves), on the default dataset (data/prepared/mnist5k,
run `dvc repro prepare` first) published to a local S3 server (moto), 2 ranks as 2 Ray actors.

    python benchmarks/shard_reads.py [--epochs 3]     # ~2 min on 2 CPU cores

Prints, per method: start-up (first batch), seconds per epoch for both ranks, rows each rank got, and
whether a second run gives each rank the same rows in the same order. Writes reports/cluster/shard_reads.json."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
RANKS = 2


def pyarrow_epochs(uri: str, epochs: int) -> list[dict]:
    import ray

    @ray.remote(num_cpus=1)
    def rank_reads(rank: int):
        from components.data.shards import read_share

        t0 = time.perf_counter()
        times, first = [], None
        for _ in range(epochs):  # streamed mode reads the share again every epoch: the upper bound
            t = time.perf_counter()
            share = read_share(uri, "train", rank, RANKS)
            first = first or time.perf_counter() - t0
            times.append(time.perf_counter() - t)
        return {"first_batch_s": first, "epoch_s": times, "rows": len(share.labels),
                "digest": int(np.asarray(share.labels[:64]).sum())}

    return ray.get([rank_reads.remote(r) for r in range(RANKS)])


def ray_data_epochs(uri: str, epochs: int) -> list[dict]:
    import ray
    import ray.data

    from components.data.shards import read_manifest
    from components.storage import location

    loc = location(uri)
    files = [(loc / rel).path for rel in read_manifest(uri)["splits"]["train"]["files"]]
    ds = ray.data.read_parquet(files, filesystem=loc.fs, columns=["image", "label"])
    splits = ds.streaming_split(RANKS, equal=True)

    @ray.remote(num_cpus=1)
    class Rank:
        def epochs(self, it):
            t0, times, first, rows, labels = time.perf_counter(), [], None, 0, []
            for _ in range(epochs):
                t, rows, labels = time.perf_counter(), 0, []
                for batch in it.iter_batches(batch_size=256, batch_format="numpy"):
                    first = first or time.perf_counter() - t0
                    rows += len(batch["label"])
                    labels.extend(batch["label"][: 64 - len(labels)].tolist() if len(labels) < 64 else [])
                times.append(time.perf_counter() - t)
            return {"first_batch_s": first, "epoch_s": times, "rows": rows, "digest": int(sum(labels))}

    ranks = [Rank.remote() for _ in range(RANKS)]
    return ray.get([r.epochs.remote(s) for r, s in zip(ranks, splits)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()
    import ray
    from services import S3Server

    from components.data.shards import publish_prepared
    from components.storage import location

    local = REPO / "data" / "prepared" / "mnist5k"
    s3 = S3Server()
    s3.start()
    os.environ.update(s3.env())
    s3.create_bucket("genpipe-bench")
    uri = publish_prepared(local, location("s3://genpipe-bench/prepared")).uri
    ray.init(num_cpus=RANKS + 2, include_dashboard=False,  # Ray Data's read tasks need CPUs beside the ranks runtime_env={"env_vars": s3.env()},
             logging_config=ray.LoggingConfig(log_level="ERROR"))
    out = {}
    try:
        for name, how in (("pyarrow_per_rank", pyarrow_epochs), ("ray_data_streaming_split", ray_data_epochs)):
            runs = [how(uri, a.epochs) for _ in range(2)]
            out[name] = {"first_batch_s": round(max(r["first_batch_s"] for r in runs[0]), 3),
                         "epoch_s": round(float(np.mean([max(r["epoch_s"][e] for r in runs[0])
                                                         for e in range(a.epochs)])), 3),
                         "rows_per_rank": [r["rows"] for r in runs[0]],
                         "same_rows_twice": [r["digest"] for r in runs[0]] == [r["digest"] for r in runs[1]]}
            print(name, out[name], flush=True)
    finally:
        ray.shutdown()
        s3.stop()
    out["how"] = "python benchmarks/shard_reads.py: mnist5k train split on moto S3, 2 ranks as Ray actors, 2-core CPU"
    path = REPO / "reports" / "cluster" / "shard_reads.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
