import torch, numpy as np
from components.config import load_params
from components.training.loop import Worker, train_model
from components.training import checkpoint as ckpt
from components.data.shards import load_rank_inputs, load_split
from components.metrics.feature_nets import load_evaluator
from components.sampling import translate
p = load_params("params.yaml", ["preset=cyclegan", "scaling.num_workers=1", "train.batch_size=64", "train.checkpoint_every=100000", "train.sample_every=1000"])
class CB:
    state=None
    def log(s,*a): pass
    def samples(s,*a): pass
    def checkpoint(s, step, st, m): s.state=st
import time; t=time.time(); cb=CB(); dev=torch.device("cuda")
train_model(p, p.prepared_path("."), Worker(device=dev), cb); print("train", time.time()-t)
g = ckpt.generator_from_state(cb.state).to(dev)
prep = p.prepared_path(".")
f = lambda x: torch.from_numpy(x).float() / 127.5 - 1
a, la = load_rank_inputs(prep, "test"); b, lb = load_split(prep, "test")
ca, _ = load_evaluator("data/families/cyclegan/evaluator/input_domain"); cb_, _ = load_evaluator("data/families/cyclegan/evaluator")
pa = cb_.logits(translate(g, f(a))).argmax(1).numpy(); pb = ca.logits(translate(g, f(b), reverse=True)).argmax(1).numpy()
print("A->B acc", (pa == la).mean(), "B->A acc", (pb == lb).mean())
print("raw A under B clf", (cb_.logits(f(a)).argmax(1).numpy() == la).mean(), "raw B under A clf", (ca.logits(f(b)).argmax(1).numpy() == lb).mean())
for c in range(10):
    m = la == c; n = lb == c
    print(c, "A->B", round((pa[m] == c).mean(), 2), np.bincount(pa[m], minlength=10).tolist(), "| B->A", round((pb[n] == c).mean(), 2))
# more A test data: the whole mnist5k test split is not in this dataset; use A's train too (unseen by the B classifier)
at, lat = load_rank_inputs(prep, "train")
print("A->B on A train images", (cb_.logits(translate(g, f(at))).argmax(1).numpy() == lat).mean())
