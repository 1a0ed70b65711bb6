"""GPU smoke: every new family trains on CUDA in process (the Ray worker's code path), then samples."""
import time, sys, torch
from pathlib import Path
from components.config import load_params
from components.training.loop import Worker, train_model
from components.training import checkpoint as ckpt
from components.sampling import translate, draw_samples, requested_labels
from components.data.shards import load_rank_inputs
class CB:
    def __init__(s): s.state = None; s.m = None
    def log(s, step, m): s.m = m
    def samples(s, *a): pass
    def checkpoint(s, step, st, m): s.state = st
dev = torch.device("cuda")
for preset in ["cgan", "pix2pix_sr", "cyclegan", "vae"]:
    p = load_params("params.yaml", [f"preset={preset}", "train.max_steps=200", "train.log_every=100", "train.checkpoint_every=200",
                                    "scaling.num_workers=1", "train.sample_every=1"])
    cb = CB(); t = time.time()
    train_model(p, p.prepared_path("."), Worker(device=dev), cb)
    torch.cuda.synchronize()
    g = ckpt.generator_from_state(cb.state).to(dev)
    if p.model.kind == "translation":
        x = load_rank_inputs(p.prepared_path("."), "test")[0][:64]
        out = translate(g, torch.from_numpy(x).float().div(127.5).sub(1).to(dev))
        back = translate(g, out, reverse=True) if preset == "cyclegan" else None
    else:
        out = draw_samples(g, p.model.latent_dim, 64, 0, labels=requested_labels(g, 64))
    print(preset, f"{time.time()-t:.1f}s", f"{cb.m['images_per_s']:.0f} img/s", tuple(out.shape), out.device, flush=True)
