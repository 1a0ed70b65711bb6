"""Why two worker nodes do not reach 1.6× one node's images/s on the test cluster (issue 32): the same pair of
runs (1 worker on one node, 2 DDP workers on two nodes; default model, same batch per worker) under variants,
on the test cluster and, for comparison, on a plain local Ray on this machine (no namespaces, no S3).

    sudo python benchmarks/cluster_scaling.py [--steps 150]     # ~10 min on 2 CPU cores

Writes reports/cluster/scaling.json: images/s per variant and the 2-node / 1-node ratio."""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
VARIANTS = {
    "default (log_every 25, batch 32/worker)": ["train.log_every=25"],
    "batch 128/worker": ["train.log_every=25", "train.batch_size=128"],
    "log_every 5": ["train.log_every=5"],
}


def images_per_s(client, experiment: str) -> float:
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    points = [m.value for m in client.get_metric_history(run.info.run_id, "images_per_s")]
    return statistics.median(points[1:] or points)  # the first window includes start-up


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--only", choices=["local", "lab"], help="one half; the other's figures are kept from the file")
    a = ap.parse_args()
    from cluster_lab import Lab
    from cluster_runs import as_pipeline, ok, stage

    work = Path(tempfile.mkdtemp(prefix="genpipe-scaling-"))
    root = work / "driver"
    root.mkdir()
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    params = root / "params.yaml"
    path = REPO / "reports" / "cluster" / "scaling.json"
    out: dict = {"how": f"sudo python benchmarks/cluster_scaling.py --steps {a.steps} (2-core CPU)", "lab": {},
                 "local_ray": {}}
    if a.only and path.is_file():
        out = {**out, **json.loads(path.read_text())}
    steps = ["--set", f"train.max_steps={a.steps}", "--set", f"train.checkpoint_every={a.steps}",
             "--set", "train.sample_every=1000"]
    # the same pairs on a local Ray, sharing this machine's disk: the ceiling on 2 cores without a network
    local = work / "local"
    local.mkdir()
    shutil.copy(params, local / "params.yaml")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("RAY_", "MLFLOW_", "AWS_"))}
    for cmd in (["prepare"], ["evaluator"]):
        subprocess.run([sys.executable, "-m", "pipelines.cli", *cmd], cwd=local, env=env, check=True,
                       capture_output=True)
    from mlflow.tracking import MlflowClient

    for name, sets in VARIANTS.items() if a.only != "lab" else ():
        speed = {}
        for n in (1, 2):
            exp = f"local-{len(out['local_ray'])}-{n}"
            subprocess.run([sys.executable, "-m", "pipelines.cli", "train", *steps, "--set", f"scaling.num_workers={n}",
                            "--set", f"tracking.experiment={exp}", "--set", f"train.output_dir=data/{exp}",
                            "--set", f"scaling.storage_path=data/ckpt-{exp}",  # log_every names no new run
                            *[x for s in sets for x in ("--set", s)]], cwd=local, env=env, check=True,
                           capture_output=True)
            speed[n] = images_per_s(MlflowClient(f"sqlite:///{local}/mlflow/mlflow.db"), exp)
        out["local_ray"][name] = {"one": round(speed[1], 1), "two": round(speed[2], 1),
                                  "ratio": round(speed[2] / speed[1], 2)}
        print("local", name, out["local_ray"][name], flush=True)
    lab = Lab(work / "lab").start(600) if a.only != "local" else None
    try:
        for name in ("prepare", "evaluator") if lab else ():
            ok(stage(lab, root, name, params, timeout=1800))
        s3 = f"s3://{lab.bucket}/scaling" if lab else ""
        for name, sets in VARIANTS.items() if lab else ():
            speed = {}
            for n in (1, 2):
                exp = f"lab-{len(out['lab'])}-{n}"
                ok(stage(lab, root, "train", params, *steps, "--set", f"data.remote={s3}/prepared",
                         "--set", f"scaling.storage_path={s3}/{exp}", "--set", f"scaling.num_workers={n}",
                         "--set", "scaling.placement_strategy=STRICT_SPREAD", "--set", f"tracking.experiment={exp}",
                         "--set", f"train.output_dir=data/{exp}", *[x for s in sets for x in ("--set", s)],
                         timeout=1800))
                with as_pipeline(lab) as client:
                    speed[n] = images_per_s(client, exp)
            out["lab"][name] = {"one": round(speed[1], 1), "two": round(speed[2], 1), "ratio": round(speed[2] / speed[1], 2)}
            print("lab", name, out["lab"][name], flush=True)
    finally:
        if lab:
            lab.stop()
        shutil.rmtree(work, ignore_errors=True)
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
