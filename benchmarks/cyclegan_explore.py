"""CycleGAN label preservation under settings (README "Measured: every family"): trains the `cyclegan`
preset in process on one device, once per named variant, each in its own process, and prints label
preservation A → B and B → A (per class with --per-class), the cycle L1 and the domain gap (the
classifiers on untranslated images). Needs the preset's prepared data and evaluators
(`bash benchmarks/families_mnist5k.sh cyclegan` once). Batch 64 on one worker = the preset's 2 × 32.

    python benchmarks/cyclegan_explore.py --device cuda base id2 cyc20 long2500
"""
from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

VARIANTS = {
    "base": [],
    "id0": ["translation.lambda_identity=0.0"],
    "id2": ["translation.lambda_identity=2.0"],
    "cyc5": ["translation.lambda_cycle=5.0"],
    "cyc20": ["translation.lambda_cycle=20.0"],
    "depth1": ["translation.g_depth=1"],
    "d1": ["translation.d_layers=1"],
    "d3": ["translation.d_layers=3"],
    "gch16": ["model.g_channels=16"],
    "sn": ["train.spectral_norm=true"],
    "hinge_sn": ["train.objective=hinge", "train.spectral_norm=true"],
    "ns": ["train.objective=nonsaturating"],
    "lr1e-4": ["train.lr_g=0.0001", "train.lr_d=0.0001"],
    "ema": ["train.ema_decay=0.999"],
    "pool0": ["translation.pool_size=0"],
    "long2500": ["train.epochs=100"],
    "full_frame": ["data.domain_b_box=null"],  # needs its own prepare + evaluator
}
EVALUATOR = "data/families/cyclegan/evaluator"


def run(name: str, device: str, per_class: bool) -> dict:
    from components.config import load_params
    from components.data.shards import load_rank_inputs, load_split
    from components.metrics.feature_nets import load_evaluator
    from components.metrics.translation import cycle_scores
    from components.sampling import translate
    from components.training import checkpoint as ckpt
    from components.training.loop import Worker, train_model

    torch.set_num_threads(1)
    p = load_params("params.yaml", ["preset=cyclegan", "scaling.num_workers=1", "train.batch_size=64",
                                    "train.checkpoint_every=100000", "train.sample_every=100000"] + VARIANTS[name])

    class Keep:
        state = None

        def log(self, *a): ...
        def samples(self, *a): ...
        def checkpoint(self, step, state, metrics): self.state = state

    keep, t0 = Keep(), time.perf_counter()
    train_model(p, p.prepared_path("."), Worker(device=torch.device(device)), keep)
    g = ckpt.generator_from_state(keep.state).to(device)
    prepared = p.prepared_path(".")
    a, la = load_rank_inputs(prepared, "test")
    b, lb = load_split(prepared, "test")
    f = lambda x: torch.from_numpy(x).float() / 127.5 - 1  # noqa: E731
    clf_b, _ = load_evaluator(EVALUATOR)
    clf_a, _ = load_evaluator(f"{EVALUATOR}/input_domain")
    fake_b = translate(g, f(a))
    pred_ab = clf_b.logits(fake_b).argmax(1).numpy()
    out = cycle_scores(g, f(a), f(b), fake_b, torch.from_numpy(lb), clf_a, float((pred_ab == la).mean()))
    out.update(gap_ab=float((clf_b.logits(f(a)).argmax(1).numpy() == la).mean()),
               gap_ba=float((clf_a.logits(f(b)).argmax(1).numpy() == lb).mean()))
    if per_class:
        out["ab_per_class"] = {c: np.bincount(pred_ab[la == c], minlength=10).tolist() for c in range(10)}
    return {"variant": name, "seconds": round(time.perf_counter() - t0, 1), "steps": keep.state["step"],
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="*", default=["base"], choices=sorted(VARIANTS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--per-class", action="store_true", help="A → B predictions per source class")
    args = ap.parse_args()
    torch.multiprocessing.set_start_method("spawn")
    with ProcessPoolExecutor(len(args.variants)) as ex:
        for result in ex.map(run, args.variants, [args.device] * len(args.variants),
                             [args.per_class] * len(args.variants)):
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
