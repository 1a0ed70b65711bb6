"""Samplers of one trained diffusion model side by side: FID (and the rest of the evaluate stage's
metrics, same evaluator, same real splits, same seed) and sampling time, e.g. DDIM 50 steps against
DDPM's 1,000 ancestral steps, at several guidance scales.

    python benchmarks/diffusion_samplers.py --model data/ddpm/train --device cuda \
        --sampler ddim:50 --sampler ddpm:1000 --guidance 1 --guidance 3

Needs the default pipeline's prepared data and evaluator (`dvc repro` once) and no MLflow."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.config import load_params  # noqa: E402
from components.data.shards import load_split  # noqa: E402
from components.evaluation import open_evaluator, score  # noqa: E402
from components.sampling import balanced_labels, sampler_samples  # noqa: E402
from components.training.checkpoint import load_generator  # noqa: E402
from components.training.loop import to_model_space  # noqa: E402
from diffusion_report import device_name, sync, write_report  # noqa: E402  (beside this file)

SHOWN = ("fid", "fid_floor", "kid_mean", "precision", "recall", "coverage", "cond_accuracy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="data/ddpm/train", help="exported model folder (train.output_dir)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sampler", action="append", default=None, help="ddim:STEPS[:ETA] or ddpm (repeatable)")
    ap.add_argument("--guidance", action="append", type=float, default=None)
    ap.add_argument("--num-samples", type=int, default=None, help="default evaluate.num_samples")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--out", default=None, help="JSON report (default reports/diffusion/samplers_<device>.json)")
    a = ap.parse_args()
    params = load_params(REPO / "params.yaml")
    n = a.num_samples or params.evaluate.num_samples
    device = torch.device(a.device)
    g, spec = load_generator(REPO / a.model)
    g = g.to(device)
    extractor, info = open_evaluator(params, REPO)
    prepared = params.prepared_path(REPO)
    test_x, _ = load_split(prepared, "test")
    train_x, _ = load_split(prepared, "train")
    real_test, real_train = to_model_space(torch.from_numpy(test_x)), to_model_space(torch.from_numpy(train_x))
    labels = balanced_labels(n, g.num_classes) if g.conditional else None
    rows = []
    for sampler in a.sampler or ["ddim:50", "ddpm"]:
        kind, *rest = sampler.split(":")
        steps = int(rest[0]) if rest else spec["diffusion"]["timesteps"]
        eta = float(rest[1]) if len(rest) > 1 else params.diffusion.eta
        for w in a.guidance or [spec["diffusion"]["guidance"]]:
            opts = {"sampler": kind, "sample_steps": steps, "eta": eta, "guidance": w}
            sync(device)
            started = time.perf_counter()
            fake = sampler_samples(g, n, params.evaluate.seed, labels, opts, batch=a.batch)
            sync(device)
            seconds = time.perf_counter() - started
            metrics = score(extractor, real_test, real_train, fake, params, labels)
            metrics.pop("class_histogram", None)
            row = {"sampler": kind, "steps": steps if kind == "ddim" else spec["diffusion"]["timesteps"], "eta": eta,
                   "guidance": w, "num_samples": n, "sampling_seconds": seconds, **metrics}
            rows.append(row)
            print(f"{kind} {row['steps']} steps, guidance {w}: sampled {n} in {seconds:.1f}s; "
                  + ", ".join(f"{k}={row[k]:.4g}" for k in SHOWN if k in row), flush=True)
    report = {"model": a.model, "model_step": spec["step"], "evaluator_hash": info["hash"],
              "device": device_name(device), "threads": torch.get_num_threads(), "rows": rows}
    print(f"→ {write_report(report, a.out, f'samplers_{device.type}.json')}")


if __name__ == "__main__":
    main()
