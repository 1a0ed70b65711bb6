"""The ddgan family's `Task` for the shared loop. One step is d_steps_per_g_step D updates, then
g_steps_per_d_step G updates, as in the GAN game (components/training/gan_step.py supplies the objective,
smoothing, R1, instance noise and EMA). Each update draws, per sample, a timestep t ~ U{0…T-1}:
- the real pair: x_{t-1} ~ q(x_{t-1} | x_0) (x_0 itself at t = 0), x_t ~ q(x_t | x_{t-1});
- G's pair: x̂_0 = G(x_t, t, z), x̂_{t-1} ~ q(x_{t-1} | x_t, x̂_0), beside the same x_t;
and D judges (x_{t-1}, x_t) at t. R1 is lazy: γ·r1_every on every r1_every-th D update, none between.
On translation pairs x_0 is the target and both G and D also see the input image (resized to x_0's size)."""
from __future__ import annotations

import torch

from components.config import Params
from components.diffusion import process
from components.families.ddgan import Ddgan
from components.models import with_spectral_norm
from components.models.ddgan import build_discriminator, pair_condition
from components.sampling import balanced_labels
from components.training.gan_loop import start_game
from components.training.gan_step import STATS, instance_noise_std
from components.training.images import side_by_side
from components.training.loop import Batch, RealBatch, Worker, first_examples, set_learning_rates, spec_meta, stream_seed

PAIR_STREAM = 5  # (seed, stream, rank, step, update) → that update's t, forward noise, z and posterior noise


class DdganTask:
    stats = STATS
    preview_cols = None

    def __init__(self, params: Params, manifest: dict, worker: Worker, resume: dict | None, distributed: bool):
        tc, cfg = params.train, params.ddgan
        self.params, self.worker, self.cfg = params, worker, cfg
        self.batches_per_step = tc.d_steps_per_g_step
        image_shape = tuple(manifest["image_shape"])
        self.num_classes = len(manifest["class_names"]) if cfg.class_conditional else 0
        input_shape = manifest.get("input_shape")  # translation pairs: G and D also see the input image
        self.preview_cols = 3 if input_shape else None
        self.shown: RealBatch | None = None
        g = Ddgan.network(cfg, params.model.latent_dim, image_shape, len(manifest["class_names"]), input_shape)
        self.condition = g.condition  # the input image as G and D see it
        d = build_discriminator(cfg, params.model.d_channels, image_shape, self.num_classes,
                                input_shape[0] if input_shape else 0)
        d = with_spectral_norm(d, tc.spectral_norm)
        self.game, self.fast, self.nets, self.optimizers = start_game(g, d, tc, worker, resume, distributed)
        self.ema = self.game.ema
        self.schedule = process.noise_scheduler(cfg)
        self.rng = torch.Generator(device="cpu")
        self.meta = spec_meta(params, manifest, objective=tc.objective)

    def _draw(self, x0: torch.Tensor, step: int, update: int):
        """This update's t, real pair (x_{t-1}, x_t), z and posterior noise; drawn on the CPU from the
        (seed, rank, step, update) stream, so a resumed run draws what an uninterrupted one would."""
        self.rng.manual_seed(stream_seed(self.params.seed, PAIR_STREAM, self.worker.rank, step, update))
        dev, n = self.fast.to_device, x0.shape[0]
        t = dev(torch.randint(0, self.cfg.timesteps, (n,), generator=self.rng))
        gauss = [self.fast.images(dev(torch.randn(x0.shape, generator=self.rng))) for _ in range(3)]
        z = dev(torch.randn(n, self.params.model.latent_dim, generator=self.rng))
        noisy = process.q_sample(self.schedule, x0, (t - 1).clamp(min=0), gauss[0])
        x_prev = torch.where((t == 0).reshape(-1, 1, 1, 1), x0, noisy)
        x_t = process.forward_step(self.schedule, x_prev, t, gauss[1])
        return t, x_prev, x_t, z, gauss[2]

    def _fake_prev(self, x_t, t, z, labels, cond, posterior_noise):
        x0_hat = self.game.g(x_t, t, z, labels, cond)
        return process.posterior_sample(self.schedule, x0_hat, x_t, t, posterior_noise)

    def _real(self, batch: Batch, i: int):
        """The i-th real batch: (x_0, labels for a class-conditional G, the resized input image or None)."""
        real = batch(i)
        if real.inputs is None:
            return real.x, real.labels if self.num_classes else None, None
        self.shown = first_examples(self.shown, real)
        return real.x, None, self.condition(real.inputs)

    @staticmethod
    def _pair(x_prev, x_t, cond):
        """What D judges: the pair stacked on channels, the input image after it when translating."""
        return torch.cat([x_prev, x_t] + ([] if cond is None else [cond]), 1)

    def step(self, step: int, total_steps: int, batch: Batch) -> torch.Tensor:
        tc, game, T = self.params.train, self.game, self.cfg.timesteps
        noise_std = instance_noise_std(tc, step, total_steps)
        set_learning_rates(tc, step, total_steps, (game.opt_g, tc.lr_g), (game.opt_d, tc.lr_d))
        game.g.train(), game.d.train()
        k_d, k_g = tc.d_steps_per_g_step, tc.g_steps_per_d_step
        d_stats = torch.zeros(4, device=self.worker.device)
        for i in range(k_d):
            x0, y, image = self._real(batch, i)
            t, x_prev, x_t, z, eps = self._draw(x0, step, i)
            cond = pair_condition(t, y, T)
            # the last D update keeps G's graph: the first G update reuses that fake pair
            with torch.set_grad_enabled(i == k_d - 1), self.fast.autocast():
                fake_prev = self._fake_prev(x_t, t, z, y, image, eps)
            d_update = step * k_d + i  # lazy R1 counts D updates
            game.adversary.r1 = tc.r1 * self.cfg.r1_every if d_update % self.cfg.r1_every == 0 else 0.0
            d_stats += game.d_step(self._pair(x_prev, x_t, image), self._pair(fake_prev, x_t, image), noise_std,
                                   self.rng, cond) / k_d
        g_loss = torch.zeros((), device=self.worker.device)
        for j in range(k_g):
            if j > 0:  # a fresh pair from the last real batch
                t, _, x_t, z, eps = self._draw(x0, step, k_d + j)
                cond = pair_condition(t, y, T)
                with self.fast.autocast():
                    fake_prev = self._fake_prev(x_t, t, z, y, image, eps)
            g_loss += game.g_step(self._pair(fake_prev, x_t, image), noise_std, self.rng, step, cond) / k_g
        return torch.cat([d_stats[:1], g_loss[None], d_stats[1:]])

    def preview(self) -> torch.Tensor:
        """The same seed's samples every epoch (EMA weights when kept), every class in turn if conditional;
        translating: input | output | target for the first examples trained on."""
        if self.preview_cols:
            shown = self.shown
            out = self.game.sampler.sample(len(shown.x), torch.Generator().manual_seed(self.params.seed),
                                           inputs=shown.inputs.to(self.worker.device)).cpu()
            return side_by_side(shown.inputs, out, shown.x)
        n = self.params.train.sample_grid
        labels = balanced_labels(n, self.num_classes) if self.num_classes else None
        return self.game.sampler.sample(n, torch.Generator().manual_seed(self.params.seed), labels).cpu()
