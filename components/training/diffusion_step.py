"""The diffusion family's `Task` for the shared loop: one step is the denoising regression
‖f(x_t, t, y) - target‖² (target ε or v) on one real batch, with t ~ U{0..T-1}, label dropout to the
null class (classifier-free guidance), gradient clipping and EMA of the weights."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from components.config import Params
from components.diffusion import process
from components.families import build_diffusion
from components.training import checkpoint as ckpt
from components.training.ema import EMA
from components.training.fast import FastPath
from components.training.loop import Batch, Worker, ddp, set_learning_rates, spec_meta, stream_seed

NOISE_STREAM = 4  # (seed, stream, rank, step) → this step's t, ε and label dropout


class DiffusionTask:
    stats = ("loss",)
    batches_per_step = 1
    preview_cols = None

    def __init__(self, params: Params, manifest: dict, worker: Worker, resume: dict | None, distributed: bool):
        tc, dc, dev = params.train, params.diffusion, worker.device
        self.params, self.worker = params, worker
        self.fast = FastPath.resolve(tc, dev)
        model = self.fast.prepare(build_diffusion(dc, manifest["image_shape"],
                                                  len(manifest["class_names"])))
        opt = torch.optim.Adam(model.parameters(), lr=tc.lr_g, betas=(tc.beta1, tc.beta2))
        self.ema = EMA(model, tc.ema_decay) if tc.ema_decay else None
        self.nets, self.optimizers = {"generator": model}, {"opt_g": opt}
        if resume is not None:
            ckpt.restore(resume, nets=self.nets, optimizers=self.optimizers, ema=self.ema)
        self.local = model
        self.net = self.fast.compiled(ddp(model, dev, distributed))
        self.opt = opt
        self.scheduler = process.noise_scheduler(dc)
        self.rng = torch.Generator(device="cpu")
        self.meta = spec_meta(params, manifest)

    def step(self, step: int, total_steps: int, batch: Batch) -> torch.Tensor:
        tc, dc, fast = self.params.train, self.params.diffusion, self.fast
        set_learning_rates(tc, step, total_steps, (self.opt, tc.lr_g))
        x0, labels = batch(0)[:2]
        self.rng.manual_seed(stream_seed(self.params.seed, NOISE_STREAM, self.worker.rank, step))
        n = x0.shape[0]
        # drawn on the CPU: the same seed stream on every device
        t = fast.to_device(torch.randint(0, dc.timesteps, (n,), generator=self.rng))
        noise = fast.images(fast.to_device(torch.randn(x0.shape, generator=self.rng)))
        if self.local.conditional:
            dropped = fast.to_device(torch.rand(n, generator=self.rng)) < dc.cond_drop_prob
            labels = torch.where(dropped, torch.full_like(labels, self.local.null_label), labels)
        else:
            labels = None
        self.net.train()
        with fast.autocast():
            pred = self.net(process.q_sample(self.scheduler, x0, t, noise), t, labels)
            loss = F.mse_loss(pred.float(), process.target(self.scheduler, x0, t, noise))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if dc.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), dc.grad_clip)
        self.opt.step()
        if self.ema is not None:
            self.ema.update(self.local, step)
        return loss.detach()[None]

    @property
    def sampler(self) -> torch.nn.Module:
        """What previews, exports and evaluation use: the EMA weights when kept."""
        return self.ema.model if self.ema is not None else self.local

    def preview(self) -> torch.Tensor:
        rng = torch.Generator().manual_seed(self.params.seed)  # the same x_T and labels every epoch
        return self.sampler.sample(self.params.train.sample_grid, rng).cpu()
