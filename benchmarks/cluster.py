"""The cluster figures of issue 32 (docs/cluster.md#figures), measured on the test cluster (tests/cluster_lab.py:
Ray nodes in their own network and mount namespaces, the lab's S3 and team MLflow server; run as root):

- the default model (params.yaml: dcgan on mnist5k) trained by 1 worker on one node and by 2 DDP workers on
  two nodes, the same settings (batch per worker, steps): wall time and images/s;
- S3 bytes per epoch (what the lab's S3 sent and received during the 2-node run, over its epochs);
- a worker node killed mid-training: steps lost against the checkpoint interval;
- S3 unplugged for 30 s while checkpointing: metric points lost, checkpoints that fail their hash;
- an in-process sweep's trials per hour (2 trials side by side, one per worker node).

    python benchmarks/cluster.py [--steps 150]     # ~15 min on 2 CPU cores

Merges its keys into reports/cluster/summary.json (benchmarks/cluster_memory.py writes the streamed-memory
keys; tests/test_dvc_remote.py's figure is dvc_pull_stages_rerun)."""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
SUMMARY = REPO / "reports" / "cluster" / "summary.json"


def net_bytes(lab, ns: str) -> int:
    """Bytes received + sent on a namespace's eth0 (the S3 service's link: every S3 request and answer)."""
    import subprocess

    out = subprocess.run(["ip", "-n", ns, "-s", "-j", "link", "show", "eth0"], capture_output=True, text=True,
                         check=True).stdout
    stats = json.loads(out)[0]["stats64"]
    return int(stats["rx"]["bytes"]) + int(stats["tx"]["bytes"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=150)
    a = ap.parse_args()
    from cluster_lab import Lab
    from cluster_runs import AtStep, ok, runs_of, stage, steps_of

    from components.training import checkpoint as ckpt

    work = Path(tempfile.mkdtemp(prefix="genpipe-cluster-bench-"))
    root = work / "driver"
    root.mkdir()
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    figures: dict = {"shared_disk": False}
    lab = Lab(work / "lab").start(600)
    try:
        figures["nodes"] = {"head": 1, "workers": len(lab.worker_ips), "cpus_per_worker_node": lab.worker_cpus}
        s3 = f"s3://{lab.bucket}/bench"
        params = root / "params.yaml"
        common = ["--set", f"data.remote={s3}/prepared", "--set", "train.log_every=5", "--set", "train.sample_every=1000"]

        def train(name: str, *sets: str, timeout: float = 1800):
            t = time.perf_counter()
            out = stage(lab, root, "train", params, *common, "--set", f"tracking.experiment={name}",
                        "--set", f"scaling.storage_path={s3}/{name}", "--set", f"train.output_dir=data/{name}", *sets,
                        timeout=timeout)
            return out, time.perf_counter() - t

        for name in ("prepare", "evaluator"):
            ok(stage(lab, root, name, params, timeout=1800))
        steps = [f"train.max_steps={a.steps}", f"train.checkpoint_every={a.steps}"]
        speed = {}
        for nodes in (1, 2):
            before = net_bytes(lab, lab.ns["s3"])
            out, wall = train(f"nodes{nodes}", "--set", f"scaling.num_workers={nodes}",
                              "--set", "scaling.placement_strategy=STRICT_SPREAD", *[x for s in steps for x in ("--set", s)])
            ok(out)
            moved = net_bytes(lab, lab.ns["s3"]) - before
            (run,) = runs_of(lab, f"nodes{nodes}")
            from cluster_runs import as_pipeline

            with as_pipeline(lab) as client:
                ips = [m.value for m in client.get_metric_history(run.info.run_id, "images_per_s")]
                epochs = max(m.value for m in client.get_metric_history(run.info.run_id, "epoch"))
            speed[nodes] = statistics.median(ips[1:] or ips)  # the first window includes start-up
            figures[f"train_wall_s_{'one_node' if nodes == 1 else 'two_nodes'}"] = round(wall, 1)
            figures[f"images_per_s_{'one_node' if nodes == 1 else 'two_nodes'}"] = round(speed[nodes], 1)
            if nodes == 2:
                figures["s3_bytes_per_epoch"] = int(moved / epochs)
                figures["s3_epochs_measured"] = round(epochs, 2)
            print(f"{nodes} node(s): {wall:.0f} s, {speed[nodes]:.0f} images/s, S3 {moved / 2**20:.1f} MB", flush=True)
        figures["speedup_two_nodes"] = round(speed[2] / speed[1], 2)

        interval = 10
        faults = [f"train.max_steps={6 * interval}", f"train.checkpoint_every={interval}", "train.log_every=1",
                  "train.keep_checkpoints=100", "scaling.num_workers=2", "scaling.placement_strategy=SPREAD",
                  "scaling.max_failures=1"]
        watch = AtStep(lab, "kill", 2 * interval + 3, lambda: lab.kill_worker(1), metric="d_loss", timeout=1200)
        watch.start()
        ok(train("kill", *[x for s in faults for x in ("--set", s)])[0])
        watch.join(5)
        lab.restart_worker(1)
        (run,) = runs_of(lab, "kill")
        resumed = steps_of(lab, run.info.run_id, "resumed_at_step")
        figures["node_kill_steps_lost"] = watch.at_step - min(resumed)
        figures["checkpoint_interval_steps"] = interval

        outage = {}

        def down():
            t = time.monotonic()
            lab.s3_down()
            time.sleep(30)
            lab.s3_up()
            outage["s"] = time.monotonic() - t

        watch = AtStep(lab, "s3down", interval + 2, down, metric="d_loss", timeout=1200)
        watch.start()
        ok(train("s3down", *[x for s in faults[:-1] for x in ("--set", s)])[0])
        watch.join(120)
        (run,) = runs_of(lab, "s3down")
        logged = steps_of(lab, run.info.run_id, "d_loss")
        figures["s3_outage_s"] = round(outage["s"], 1)
        figures["points_lost"] = len(set(range(1, 6 * interval + 1)) - set(logged))
        import os

        from components.storage import location

        with lab.driver_net():
            os.environ.update(lab.s3_env())
            folders = [c for r in location(f"{s3}/s3down").children() for c in r.children("checkpoint_") if c.is_dir()]
            figures["corrupt_checkpoints"] = sum(not ckpt.is_whole_at(c) for c in folders)
            figures["checkpoints_after_outage"] = len(folders)

        sweep = ["tune.enabled=true", "tune.search=random", "tune.num_samples=4", "tune.max_concurrent_trials=2",
                 "tune.trial_steps=100", "tune.eval_every=50", "tune.register_best=false",
                 f"tune.storage_path={s3}/tune", "scaling.placement_strategy=SPREAD"]
        t = time.perf_counter()
        ok(stage(lab, root, "tune", params, *common, *[x for s in sweep for x in ("--set", s)], timeout=3000))
        hours = (time.perf_counter() - t) / 3600
        report = json.loads((root / "reports" / "tune.json").read_text())
        figures["sweep_trials_per_hour"] = round(report["trials_completed"] / hours, 1)
        figures["sweep_trial_steps"] = 100
        figures["sweep_trial_nodes"] = len({r["worker_nodes"].split()[0] for r in report["trials"]})
    finally:
        lab.stop()
        shutil.rmtree(work, ignore_errors=True)
    figures["how"] = (f"sudo python benchmarks/cluster.py --steps {a.steps}: tests/cluster_lab.py (2 worker nodes of "
                      f"{lab.worker_cpus} CPUs on one 2-core machine), default params.yaml with the keys it sets")
    merge_summary(figures)


def merge_summary(figures: dict) -> None:
    """These figures into reports/cluster/summary.json, keeping the keys the other cluster benchmarks wrote."""
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    summary = json.loads(SUMMARY.read_text()) if SUMMARY.is_file() else {}
    SUMMARY.write_text(json.dumps({**summary, **figures}, indent=2, sort_keys=True) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
