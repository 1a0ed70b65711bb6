"""The GAN family's `Task` for the shared loop (components/training/loop.py): one step is
d_steps_per_g_step D updates, each on its own real batch, then g_steps_per_d_step G updates."""
from __future__ import annotations

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from components.config import Params
from components.models import build_gan
from components.training import checkpoint as ckpt
from components.training.ema import EMA
from components.training.gan_step import STATS, GanGame, instance_noise_std
from components.training.loop import Batch, Worker, sample, set_learning_rates, spec_meta, stream_seed


class GanTask:
    stats = STATS

    def __init__(self, params: Params, manifest: dict, worker: Worker, resume: dict | None, distributed: bool):
        tc, dev = params.train, worker.device
        self.params, self.worker = params, worker
        self.batches_per_step = tc.d_steps_per_g_step
        g, d = build_gan(params.model, manifest["image_shape"], pack=tc.pack, spectral_norm=tc.spectral_norm)
        g, d = g.to(dev), d.to(dev)
        opt_g = torch.optim.Adam(g.parameters(), lr=tc.lr_g, betas=(tc.beta1, tc.beta2))
        opt_d = torch.optim.Adam(d.parameters(), lr=tc.lr_d, betas=(tc.beta1, tc.beta2))
        self.ema = EMA(g, tc.ema_decay) if tc.ema_decay else None
        self.nets = {"generator": g, "discriminator": d}
        self.optimizers = {"opt_g": opt_g, "opt_d": opt_d}
        if resume is not None:
            ckpt.restore(resume, nets=self.nets, optimizers=self.optimizers, ema=self.ema)
        if distributed:
            # G and D wrapped separately; no buffer sync in forward because D runs several forwards
            # per step and BatchNorm buffers would otherwise be re-broadcast between them.
            ids = [dev.index] if dev.type == "cuda" else None
            g = DDP(g, device_ids=ids, forward_sync_buffers=False)
            d = DDP(d, device_ids=ids, forward_sync_buffers=False)
        self.g = g
        self.game = GanGame(g, d, opt_g, opt_d, tc, self.ema)
        self.noise = torch.Generator(device="cpu")
        self.fixed_z = torch.randn(tc.sample_grid, params.model.latent_dim,
                                   generator=torch.Generator().manual_seed(params.seed))
        self.meta = spec_meta(params, manifest, objective=tc.objective)

    def latents(self, stream: int, step: int, i: int) -> torch.Tensor:
        self.noise.manual_seed(stream_seed(self.params.seed, stream, self.worker.rank, step, i))
        z = torch.randn(self.params.train.batch_size, self.params.model.latent_dim, generator=self.noise)
        return z.to(self.worker.device, non_blocking=True)

    def step(self, step: int, total_steps: int, batch: Batch) -> torch.Tensor:
        tc, game = self.params.train, self.game
        noise_std = instance_noise_std(tc, step, total_steps)
        set_learning_rates(tc, step, total_steps, (game.opt_g, tc.lr_g), (game.opt_d, tc.lr_d))
        game.g.train(), game.d.train()
        k_d, k_g = tc.d_steps_per_g_step, tc.g_steps_per_d_step
        d_stats = torch.zeros(4, device=self.worker.device)
        for i in range(k_d):
            real, _ = batch(i)
            # The last D step keeps G's graph: the first G step reuses that fake batch.
            with torch.set_grad_enabled(i == k_d - 1):
                fake = game.g(self.latents(2, step, i))
            d_stats += game.d_step(real, fake, noise_std, self.noise) / k_d
        g_loss = torch.zeros((), device=self.worker.device)
        for j in range(k_g):
            g_loss += game.g_step(fake if j == 0 else game.g(self.latents(3, step, j)), noise_std, self.noise, step) / k_g
        return torch.cat([d_stats[:1], g_loss[None], d_stats[1:]])

    def preview(self) -> torch.Tensor:
        return sample(self.game.sampler, self.fixed_z, self.worker.device)
