"""Streamed training in bounded memory (issue 32; docs/cluster.md#streamed-or-in-memory-the-rule): a generated image dataset at
least 3× a worker's memory cap, published to a local S3 server (moto), trained by one worker that reads it
from there a window at a time, inside a memory cgroup whose limit is the cap (a worker over it is killed by
the kernel, so finishing is the proof; the peak is measured too).

    python benchmarks/cluster_memory.py [--cap-mb 1024] [--steps 0 (one epoch)]   # ~10 min on 2 CPU cores

Writes dataset_mb, worker_mem_cap_mb, peak_worker_rss_mb_streamed (and how they were measured) into
reports/cluster/summary.json, keeping the other keys (benchmarks/cluster.py writes those)."""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
CGROUP = Path("/sys/fs/cgroup/memory")


def write_dataset(out: Path, mb: int, seed: int = 0) -> dict:
    """Random 3×32×32 uint8 images in 10 classes, through the project's own shard writer."""
    from components.config import Params
    from components.data.shards import write_prepared
    from components.data.source_data import SourceData

    n = mb * 2**20 // (3 * 32 * 32) + 1
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.int64)
    data = SourceData(samples=samples, labels=labels, class_names=[str(i) for i in range(10)])
    cfg = Params.model_validate({"data": {"source": "digits", "name": "noise32", "rows_per_shard": 65536,
                                          "row_group_rows": 1024}}).data
    return write_prepared(data, cfg, seed, out)


def worker(uri: str, steps: int, out: str) -> None:
    """One worker's training, streamed from `uri`; writes its peak RSS."""
    import torch

    from components.config import Params
    from components.training.loop import Worker, train_model

    params = Params.model_validate({
        "data": {"source": "digits", "stream": "streamed", "stream_window_rows": 4096},
        "model": {"latent_dim": 16, "g_channels": 8, "d_channels": 8},  # small: the point is the data, a whole epoch of it
        "train": {"epochs": 1, "max_steps": steps or None, "batch_size": 512, "log_every": 100,
                  "checkpoint_every": 10**6}})
    torch.set_num_threads(2)

    class Quiet:
        def log(self, step, metrics): print(f"step {step}: {metrics.get('images_per_s', 0):.0f} images/s", flush=True)
        def samples(self, *a): pass
        def checkpoint(self, *a): pass

    started = time.perf_counter()
    done = train_model(params, uri, Worker(), Quiet())
    Path(out).write_text(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                     "steps": done["step"], "images": done["step"] * 512,
                                     "wall_s": time.perf_counter() - started}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cap-mb", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=0, help="0: one whole epoch of the dataset")
    ap.add_argument("--worker", nargs=3, metavar=("URI", "STEPS", "OUT"))
    a = ap.parse_args()
    if a.worker:
        return worker(a.worker[0], int(a.worker[1]), a.worker[2])
    from services import S3Server

    from components.data.shards import publish_prepared
    from components.storage import location

    dataset_mb = 3 * a.cap_mb + 64
    with tempfile.TemporaryDirectory(prefix="genpipe-streamed-") as tmp:
        s3 = S3Server(log=Path(tmp) / "s3.log")
        s3.start()
        try:
            os.environ.update(s3.env())
            s3.create_bucket("genpipe-bench")
            t = time.perf_counter()
            manifest = write_dataset(Path(tmp) / "noise32", dataset_mb)
            published = publish_prepared(Path(tmp) / "noise32", location("s3://genpipe-bench/prepared"))
            size_mb = published.size() / 2**20
            print(f"dataset: {manifest['count']} images, {size_mb:.0f} MB at {published.uri} "
                  f"({time.perf_counter() - t:.0f} s to write and publish)", flush=True)
            group = CGROUP / f"genpipe-bench-{os.getpid()}"
            group.mkdir()
            try:
                (group / "memory.limit_in_bytes").write_text(str(a.cap_mb * 2**20))
                (group / "memory.memsw.limit_in_bytes").write_text(str(a.cap_mb * 2**20)) \
                    if (group / "memory.memsw.limit_in_bytes").exists() else None
                out = Path(tmp) / "worker.json"
                proc = subprocess.Popen([sys.executable, __file__, "--worker", published.uri, str(a.steps), str(out)],
                                        preexec_fn=lambda: (group / "cgroup.procs").write_text(str(os.getpid())))
                rc = proc.wait()
                peak_cgroup = int((group / "memory.max_usage_in_bytes").read_text()) / 2**20
                oom = "oom_kill 1" in (group / "memory.oom_control").read_text()
            finally:
                group.rmdir()
            if rc != 0 or oom:
                raise SystemExit(f"the streamed worker failed (exit {rc}, OOM killed: {oom}) under a {a.cap_mb} MB cap")
            result = json.loads(out.read_text())
        finally:
            s3.stop()
    figures = {"dataset_mb": round(size_mb, 1), "worker_mem_cap_mb": a.cap_mb,
               "peak_worker_rss_mb_streamed": round(result["peak_rss_mb"], 1),
               "peak_worker_cgroup_mb_streamed": round(peak_cgroup, 1),
               "streamed_steps": result["steps"], "streamed_images": result["images"], "streamed_wall_s": round(result["wall_s"], 1),
               "streamed_how": "python benchmarks/cluster_memory.py: one worker in a memory cgroup limited to the cap, "
                               "reading its share from S3 (moto) a window of 4096 rows at a time"}
    from cluster import merge_summary  # benchmarks/cluster.py

    merge_summary(figures)


if __name__ == "__main__":
    main()
