"""The GAN family's `Task` for the shared loop (components/training/loop.py): one step is
d_steps_per_g_step D updates, each on its own real batch, then g_steps_per_d_step G updates.
A class-conditional GAN generates for the real batch's labels, so fakes follow the data's class mix;
a matching-aware D also sees the real batch under wrong labels (each shifted by 1..K-1)."""
from __future__ import annotations

import torch
from components.config import Params
from components.families import build_gan
from components.objectives import OBJECTIVES
from components.training import checkpoint as ckpt
from components.training import diffusion_d
from components.training.ema import EMA
from components.training.fast import FastPath, double_backprop
from components.training.gan_step import STATS, GanGame, instance_noise_std
from components.sampling import balanced_labels
from components.training.loop import (Batch, Worker, ddp, rows_per_batch, sample, set_learning_rates, spec_meta,
                                      stream_seed, to_model_space)


def start_game(g: torch.nn.Module, d: torch.nn.Module, tc, worker: Worker, resume: dict | None,
               distributed: bool) -> tuple[GanGame, FastPath, dict, dict]:
    """G and D on the fast path with their Adam optimizers, G's EMA and the diffusion-noised D's state,
    restored from `resume`, DDP-wrapped and compiled: (the game, the fast path, nets, optimizers), as the GAN
    tasks (GanTask, DdganTask) keep them."""
    fast = FastPath.resolve(tc, worker.device)
    g, d = fast.prepare(g), fast.prepare(d)
    opt_g = torch.optim.Adam(g.parameters(), lr=tc.lr_g, betas=(tc.beta1, tc.beta2))
    opt_d = torch.optim.Adam(d.parameters(), lr=tc.lr_d, betas=(tc.beta1, tc.beta2))
    ema = EMA(g, tc.ema_decay) if tc.ema_decay else None
    nets, optimizers = {"generator": g, "discriminator": d}, {"opt_g": opt_g, "opt_d": opt_d}
    diffusion = diffusion_d.build(tc, OBJECTIVES.get(tc.objective))
    if diffusion is not None:
        nets["diffusion_d"] = diffusion.to(worker.device)
    if resume is not None:
        ckpt.restore(resume, nets=nets, optimizers=optimizers, ema=ema)
    # G and D wrapped separately; no buffer sync in forward because D runs several forwards
    # per step and BatchNorm buffers would otherwise be re-broadcast between them.
    g = fast.compiled(ddp(g, worker.device, distributed, forward_sync_buffers=False))
    d = ddp(d, worker.device, distributed, forward_sync_buffers=False)
    d = d if double_backprop(tc) else fast.compiled(d)
    return GanGame(g, d, opt_g, opt_d, tc, ema, fast.autocast, fast.to_device, diffusion), fast, nets, optimizers


class GanTask:
    preview_cols = None  # a near-square grid
    reads_train_split = True  # model.clusters: the k-means fit reads the whole train split

    def __init__(self, params: Params, manifest: dict, worker: Worker, resume: dict | None, distributed: bool,
                 prepared_dir=None):
        tc = params.train
        self.params, self.worker = params, worker
        self.batches_per_step = tc.d_steps_per_g_step
        self.num_classes = len(manifest["class_names"]) if params.model.conditional else 0
        g, d = build_gan(params.model, manifest["image_shape"], pack=tc.pack, spectral_norm=tc.spectral_norm,
                         num_classes=self.num_classes, noise_level=tc.diffusion_d)
        self.clusters = None
        if params.model.clusters:  # fitted before G is copied (EMA, DDP): its prior is part of every copy
            from components.data.shards import read_share
            from components.training.clusters import Clusters

            train = to_model_space(torch.from_numpy(read_share(prepared_dir, "train")[0]))
            self.clusters = Clusters(train, params.model.clusters, params.seed, params.model.cluster_dims)
            g.label_prior.copy_(self.clusters.prior)
        self.game, self.fast, self.nets, self.optimizers = start_game(g, d, tc, worker, resume, distributed)
        self.ema, self.g = self.game.ema, self.game.g
        self.stats = STATS + (diffusion_d.STATS if tc.diffusion_d else ())
        self.noise = torch.Generator(device="cpu")
        self.fixed_z = torch.randn(tc.sample_grid, params.model.latent_dim,
                                   generator=torch.Generator().manual_seed(params.seed))
        self.fixed_labels = balanced_labels(tc.sample_grid, self.num_classes) if self.num_classes else None
        self.meta = spec_meta(params, manifest, objective=tc.objective)

    def latents(self, stream: int, step: int, i: int) -> torch.Tensor:
        self.noise.manual_seed(stream_seed(self.params.seed, stream, self.worker.rank, step, i))
        # as many fakes as the real batch holds rows (PacGAN: pack × batch_size, packed into batch_size D inputs)
        z = torch.randn(rows_per_batch(self.params.train), self.params.model.latent_dim, generator=self.noise)
        return self.fast.to_device(z)

    def step(self, step: int, total_steps: int, batch: Batch) -> torch.Tensor:
        tc, game = self.params.train, self.game
        noise_std = instance_noise_std(tc, step, total_steps)
        set_learning_rates(tc, step, total_steps, (game.opt_g, tc.lr_g), (game.opt_d, tc.lr_d))
        game.g.train(), game.d.train()
        k_d, k_g = tc.d_steps_per_g_step, tc.g_steps_per_d_step
        d_stats = torch.zeros(4, device=self.worker.device)
        cond = None
        for i in range(k_d):
            real, labels = batch(i)[:2]
            cond = labels if self.num_classes else (self.clusters.assign(real) if self.clusters else None)
            # The last D step keeps G's graph: the first G step reuses that fake batch.
            with torch.set_grad_enabled(i == k_d - 1), self.fast.autocast():
                fake = self.generate(self.latents(2, step, i), cond)
            d_stats += game.d_step(real, fake, noise_std, self.noise, cond, self.mismatched(cond)) / k_d
        g_loss = torch.zeros((), device=self.worker.device)
        for j in range(k_g):
            if j > 0:
                with self.fast.autocast():
                    fake = self.generate(self.latents(3, step, j), cond)
            g_loss += game.g_step(fake, noise_std, self.noise, step, cond) / k_g
        return torch.cat([d_stats[:1], g_loss[None], d_stats[1:], *diffusion_d.stats(game.diffusion)])

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return self.game.g(z) if labels is None else self.game.g(z, labels)

    def mismatched(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """Matching-aware D: every label moved to another class, uniformly (from this step's noise stream)."""
        if labels is None or not self.params.train.matching_aware:
            return None
        shift = self.fast.to_device(torch.randint(1, self.num_classes, labels.shape, generator=self.noise))
        return (labels + shift) % self.num_classes

    def preview(self) -> torch.Tensor:
        inputs = (self.fixed_z,) if self.fixed_labels is None else (self.fixed_z, self.fixed_labels)
        return sample(self.game.sampler, self.worker.device, *inputs)
