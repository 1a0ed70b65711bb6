"""Data-parallel scaling on the CPU: the default DCGAN on mnist5k trained by Ray Train with 1 worker and
with 2 workers on one local Ray, and with 2 workers SPREAD over a simulated 2-node cluster
(`ray.cluster_utils.Cluster`, 1 CPU per node). Not part of the test suite.

    python benchmarks/cpu_scaling.py [--steps 400] [--out reports/benchmarks/cpu_scaling.json]

images/s is the loop's own meter (global images per second over windows that exclude logging,
sampling and checkpoints; the first windows are warm-up and dropped). Scaling efficiency =
images/s with 2 workers / (2 × images/s with 1 worker): 1.0 is perfect; on a 2-core machine the two
workers also share the cores with Ray's own processes, so expect less."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.config import load_params  # noqa: E402
from pipelines import prepare, train  # noqa: E402
from train_throughput import _steady_images_per_s  # noqa: E402  (beside this file)


def _setups(root: Path):
    """name → (start Ray, scaling overrides); each starts and stops its own Ray."""
    import ray
    from ray.cluster_utils import Cluster

    quiet = {"logging_config": ray.LoggingConfig(log_level="ERROR"), "runtime_env": {"env_vars": train.LOCAL_RAY_ENV}}

    def local():
        ray.init(address="local", num_cpus=2, include_dashboard=False, **quiet)
        return ray.shutdown

    def two_nodes():
        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        for _ in range(2):
            c.add_node(num_cpus=1, resources={"trainer": 1})
        ray.init(address=c.address, **quiet)
        return lambda: (ray.shutdown(), c.shutdown())

    return {"local_1_worker": (local, ["scaling.num_workers=1"]),
            "local_2_workers": (local, ["scaling.num_workers=2"]),
            "2_nodes_2_workers_spread": (two_nodes, ["scaling.num_workers=2", "scaling.placement_strategy=SPREAD",
                                                     "scaling.resources_per_worker={trainer: 1}"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--warmup-windows", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "reports" / "benchmarks" / "cpu_scaling.json"))
    args = ap.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = [f"data.prepared_dir={root / 'prepared'}", f"train.output_dir={root / 'train'}",
                f"scaling.storage_path={root / 'checkpoints'}", f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
                "train.epochs=1000", f"train.max_steps={args.steps}", f"train.log_every={args.log_every}",
                f"train.checkpoint_every={10 * args.steps}", "train.sample_every=1000"]
        prepare.run(load_params(REPO / "params.yaml", base), root)
        for name, (start, overrides) in _setups(root).items():
            params = load_params(REPO / "params.yaml", [*base, *overrides, f"train.run_name=scaling-{name}"])
            stop = start()
            t0 = time.perf_counter()
            try:
                summary = train.run(params, root, use_ray=True)
            finally:
                stop()
            results[name] = {"images_per_s": _steady_images_per_s(params.tracking.uri, summary["mlflow_run_id"],
                                                                   args.warmup_windows)[0],
                             "wall_s": time.perf_counter() - t0, "workers": params.scaling.num_workers}
            print(name, results[name], flush=True)
    one = results["local_1_worker"]["images_per_s"]
    for r in results.values():
        r["speedup_over_1_worker"] = r["images_per_s"] / one
        r["scaling_efficiency"] = r["images_per_s"] / (r["workers"] * one)
    report = {"steps": args.steps, "batch_size_per_worker": 32, "dataset": "mnist5k", "model": "dcgan (default)",
              "results": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
