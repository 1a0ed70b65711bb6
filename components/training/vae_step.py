"""The VAE's `Task` for the shared loop: one step minimises E_q[-log p(x|z)] + β_t·KL on one real
batch, β_t ramping from 0 to vae.beta over the first vae.kl_warmup of the run (KL annealing,
Bowman et al. 2016); ε of the reparameterisation comes from a (seed, rank, step) stream."""
from __future__ import annotations

import torch

from components.config import Params
from components.families.vae import Vae
from components.training import checkpoint as ckpt
from components.training.ema import EMA
from components.training.fast import FastPath
from components.training.images import side_by_side
from components.training.loop import Batch, Worker, ddp, set_learning_rates, spec_meta, stream_seed

NOISE_STREAM = 7


def kl_weight(beta: float, warmup: float, step: int, total_steps: int) -> float:
    if warmup <= 0:
        return beta
    return beta * min(1.0, step / (warmup * total_steps))


class VaeTask:
    stats = ("loss", "nll", "kl", "nelbo")
    batches_per_step = 1
    preview_cols = 8  # 4 (image, reconstruction) pairs per row, then prior samples

    def __init__(self, params: Params, manifest: dict, worker: Worker, resume: dict | None, distributed: bool):
        tc, dev = params.train, worker.device
        self.params, self.worker = params, worker
        self.fast = FastPath.resolve(tc, dev)
        model = self.fast.prepare(Vae.network(params.model, manifest["image_shape"]))
        self.opt = torch.optim.Adam(model.parameters(), lr=tc.lr_g, betas=(tc.beta1, tc.beta2))
        self.ema = EMA(model, tc.ema_decay) if tc.ema_decay else None
        self.nets, self.optimizers = {"generator": model}, {"opt_g": self.opt}
        if resume is not None:
            ckpt.restore(resume, nets=self.nets, optimizers=self.optimizers, ema=self.ema)
        self.local, self.net = model, self.fast.compiled(ddp(model, dev, distributed))
        self.rng = torch.Generator(device="cpu")
        self.meta = spec_meta(params, manifest)
        self.shown: torch.Tensor | None = None

    def step(self, step: int, total_steps: int, batch: Batch) -> torch.Tensor:
        tc, vc = self.params.train, self.params.vae
        set_learning_rates(tc, step, total_steps, (self.opt, tc.lr_g))
        x = batch(0).x
        if self.shown is None:
            self.shown = x[:16].cpu()
        self.rng.manual_seed(stream_seed(self.params.seed, NOISE_STREAM, self.worker.rank, step))
        eps = self.fast.to_device(torch.randn(len(x), self.local.latent_dim, generator=self.rng))
        self.net.train()
        with self.fast.autocast():
            out = self.net(x, eps)
            nll, kl = out["nll"].float().mean(), out["kl"].float().mean()
        loss = nll + kl_weight(vc.beta, vc.kl_warmup, step, total_steps) * kl
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.ema is not None:
            self.ema.update(self.local, step)
        return torch.stack([loss, nll, kl, nll + kl]).detach()

    @property
    def sampler(self) -> torch.nn.Module:
        return self.ema.model if self.ema is not None else self.local

    def preview(self) -> torch.Tensor:
        model, dev = self.sampler, self.worker.device
        recon = model.reconstruct(self.shown.to(dev)).cpu()
        prior = model.sample(32, torch.Generator().manual_seed(self.params.seed)).cpu()
        return torch.cat([side_by_side(self.shown, recon), prior])
