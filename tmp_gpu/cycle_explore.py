"""Explore CycleGAN settings on the GPU: label preservation both ways + cycle L1 on the test split."""
import json, sys, time, torch
from concurrent.futures import ProcessPoolExecutor
from components.config import load_params

CANDIDATES = {
    "base": [],
    "id2": ["translation.lambda_identity=2.0"],
    "id1_cyc5": ["translation.lambda_identity=1.0", "translation.lambda_cycle=5.0"],
    "depth1": ["translation.g_depth=1"],
    "sn": ["train.spectral_norm=true"],
    "hinge_sn": ["train.objective=hinge", "train.spectral_norm=true"],
    "long": ["train.epochs=120"],
    "id2_long": ["translation.lambda_identity=2.0", "train.epochs=120"],
    "ns": ["train.objective=nonsaturating"],
    "lr1e-4": ["train.lr_g=0.0001", "train.lr_d=0.0001"],
    "d3": ["translation.d_layers=3"],
    "gch16": ["model.g_channels=16"],
    "cyc20": ["translation.lambda_cycle=20.0"],
    "id0": ["translation.lambda_identity=0.0"],
    "ema": ["train.ema_decay=0.999"],
    "pool0": ["translation.pool_size=0"],
    "cyc5": ["translation.lambda_cycle=5.0"],
    "d1": ["translation.d_layers=1"],
    "long2500": ["train.epochs=100"],
    "cyc20_long": ["translation.lambda_cycle=20.0", "train.epochs=100"],
}

def run(name):
    from components.training.loop import Worker, train_model
    from components.training import checkpoint as ckpt
    from components.data.shards import load_rank_inputs, load_split
    from components.metrics.feature_nets import load_evaluator
    from components.metrics.translation import cycle_scores
    from components.sampling import translate
    torch.set_num_threads(1)
    p = load_params("params.yaml", ["preset=cyclegan", "scaling.num_workers=1", "train.batch_size=64",
                                    "train.checkpoint_every=100000", "train.sample_every=1000"] + CANDIDATES[name])
    class CB:
        state = None
        def log(s, *a): pass
        def samples(s, *a): pass
        def checkpoint(s, step, st, m): s.state = st
    cb = CB(); t = time.time()
    dev = torch.device("cuda")
    train_model(p, p.prepared_path("."), Worker(device=dev), cb)
    g = ckpt.generator_from_state(cb.state).to(dev)
    prep = p.prepared_path(".")
    a, la = load_rank_inputs(prep, "test"); b, lb = load_split(prep, "test")
    f = lambda x: torch.from_numpy(x).float() / 127.5 - 1
    clf_b, _ = load_evaluator("data/families/cyclegan/evaluator"); clf_a, _ = load_evaluator("data/families/cyclegan/evaluator/input_domain")
    ab = float((clf_b.logits(translate(g, f(a))).argmax(1) == torch.from_numpy(la)).float().mean())
    s = cycle_scores(g, f(a), f(b), torch.from_numpy(lb), clf_a, ab)
    return name, {k: round(v, 4) for k, v in s.items()}, round(time.time() - t, 1), cb.state["step"]

if __name__ == "__main__":
    names = sys.argv[1:] or list(CANDIDATES)
    torch.multiprocessing.set_start_method("spawn")
    with ProcessPoolExecutor(len(names)) as ex:
        for r in ex.map(run, names):
            print(json.dumps(r), flush=True)
