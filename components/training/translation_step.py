"""The translation families' `Task`s for the shared loop (components/training/loop.py).

pix2pix: one step is one D update on (input, target) vs (input, G(input)) pairs, then one G update
on the adversarial loss + λ·‖G(x) - y‖₁ — the GAN game of gan_step with the input as D's condition.
CycleGAN: one step updates both generators on adversarial + λ_cyc·cycle (+ identity) losses, then
both discriminators on real images vs fakes drawn from a pool of past fakes (FakePool).
The adversarial terms use train.objective and D's regularisers (gan_step.Adversary)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from components.config import Params
from components.families import build_translation
from components.objectives import OBJECTIVES
from components.training import checkpoint as ckpt
from components.training import diffusion_d
from components.training.ema import EMA
from components.training.fast import FastPath, double_backprop
from components.training.gan_step import Adversary, GanGame, instance_noise_std
from components.training.images import side_by_side
from components.training.loop import (PREVIEW_ROWS, Batch, RealBatch, Worker, ddp, first_examples, sample,
                                      set_learning_rates, spec_meta, stream_seed)
from components.objectives.regularizers import clip_weights

POOL_STREAM, NOISE_STREAM = 5, 6


def paired_l1(fake: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """pix2pix's reconstruction term ‖G(x) - y‖₁ (mean per pixel, model units)."""
    return F.l1_loss(fake, target)


def cycle_l1(g_ab: nn.Module, g_ba: nn.Module, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """CycleGAN's cycle-consistency term ‖F(G(a)) - a‖₁ + ‖G(F(b)) - b‖₁, and the fakes G(a), F(b)."""
    fake_b, fake_a = g_ab(a), g_ba(b)
    return F.l1_loss(g_ba(fake_b), a) + F.l1_loss(g_ab(fake_a), b), fake_b, fake_a


class FakePool(nn.Module):
    """The image buffer of Shrivastava et al. 2017 / CycleGAN: D is shown, for each new fake, with
    probability ½ a random past fake (which the new one replaces), else the new fake; while the pool
    fills, new fakes are stored and shown. A batch's swaps happen at once (vectorised, no host sync: the
    fill level is mirrored on the host; two fakes drawing the same slot both see its old content, the
    later one is kept). Its contents are buffers, so they are checkpointed."""

    def __init__(self, size: int, image_shape):
        super().__init__()
        self.size = size
        self.register_buffer("images", torch.zeros(size, *image_shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.filled: int | None = None  # `count` on the host, read once (after a resume restored it)

    @torch.no_grad()
    def query(self, fakes: torch.Tensor, rng: torch.Generator,
              to_device: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        if self.size == 0:
            return fakes
        fakes = fakes.detach()
        to_device = to_device or (lambda t: t.to(fakes.device))
        swap = torch.rand(len(fakes), generator=rng) < 0.5
        pick = torch.randint(0, self.size, (len(fakes),), generator=rng)
        if self.filled is None:
            self.filled = int(self.count)
        count = self.filled
        fill = min(len(fakes), self.size - count)  # still filling: store and show these as they are
        self.images[count : count + fill] = fakes[:fill]
        self.count += fill
        self.filled += fill
        swap[:fill] = False
        swap, pick = to_device(swap), to_device(pick)
        out = torch.where(swap.view(-1, *[1] * (fakes.dim() - 1)), self.images[pick], fakes)
        # swapped fakes take their slots; the others go to a scratch row past the end (no boolean-mask sync)
        slots = torch.where(swap, pick, self.size)
        with_scratch = torch.cat([self.images, self.images[:1]])
        with_scratch[slots] = fakes.to(self.images.dtype)
        self.images.copy_(with_scratch[: self.size])
        return out


class _TranslationTask:
    """What both families share: networks, optimizers, EMA, resume, per-step seeded noise, previews."""

    preview_cols = 3
    batches_per_step = 1

    def __init__(self, params: Params, manifest: dict, worker: Worker, resume: dict | None, extra_nets: dict):
        tc, dev = params.train, worker.device
        self.params, self.worker = params, worker
        g, d = build_translation(params.translation, params.model, manifest["input_shape"], manifest["image_shape"],
                                 spectral_norm=tc.spectral_norm, noise_level=tc.diffusion_d)
        self.fast = fast = FastPath.resolve(tc, dev)
        g, d = fast.prepare(g), fast.prepare(d)
        self.opt_g = torch.optim.Adam(g.parameters(), lr=tc.lr_g, betas=(tc.beta1, tc.beta2))
        self.opt_d = torch.optim.Adam(d.parameters(), lr=tc.lr_d, betas=(tc.beta1, tc.beta2))
        self.ema = EMA(g, tc.ema_decay) if tc.ema_decay else None
        self.diffusion = diffusion_d.build(tc, OBJECTIVES.get(tc.objective))
        if self.diffusion is not None:
            extra_nets = {**extra_nets, "diffusion_d": self.diffusion}
        self.stats = self.stats + (diffusion_d.STATS if self.diffusion is not None else ())
        self.nets = {"generator": g, "discriminator": d, **{k: m.to(dev) for k, m in extra_nets.items()}}
        self.optimizers = {"opt_g": self.opt_g, "opt_d": self.opt_d}
        if resume is not None:
            ckpt.restore(resume, nets=self.nets, optimizers=self.optimizers, ema=self.ema)
        self.g_local, self.d_local = g, d
        self.adversary = Adversary(tc, fast.to_device, self.diffusion)
        self.rng = torch.Generator(device="cpu")
        self.meta = spec_meta(params, manifest, objective=tc.objective)
        self.shown: RealBatch | None = None  # the first batch this process trained on: the preview's examples

    def begin(self, step: int, total_steps: int, batch: Batch) -> tuple[RealBatch, float]:
        tc = self.params.train
        set_learning_rates(tc, step, total_steps, (self.opt_g, tc.lr_g), (self.opt_d, tc.lr_d))
        self.rng.manual_seed(stream_seed(self.params.seed, NOISE_STREAM, self.worker.rank, step))
        real = batch(0)
        self.shown = first_examples(self.shown, real)
        return real, instance_noise_std(tc, step, total_steps)

    @property
    def sampler(self) -> nn.Module:
        return self.ema.model if self.ema is not None else self.g_local


class Pix2PixTask(_TranslationTask):
    stats = ("d_loss", "g_loss", "d_real", "d_fake", "d_penalty", "l1")

    def __init__(self, params: Params, manifest: dict, worker: Worker, resume: dict | None, distributed: bool):
        super().__init__(params, manifest, worker, resume, {})
        fast = self.fast
        g = fast.compiled(ddp(self.g_local, worker.device, distributed, forward_sync_buffers=False))
        d = ddp(self.d_local, worker.device, distributed, forward_sync_buffers=False)
        d = d if double_backprop(params.train) else fast.compiled(d)
        self.game = GanGame(g, d, self.opt_g, self.opt_d, params.train, self.ema, fast.autocast, fast.to_device,
                            self.diffusion)

    def step(self, step: int, total_steps: int, batch: Batch) -> torch.Tensor:
        real, noise_std = self.begin(step, total_steps, batch)
        game = self.game
        game.g.train(), game.d.train()
        with self.fast.autocast():
            fake = game.g(real.inputs)
        d_stats = game.d_step(real.x, fake, noise_std, self.rng, cond=real.inputs)
        with self.fast.autocast():
            l1 = paired_l1(fake, real.x).float()
        g_loss = game.g_step(fake, noise_std, self.rng, step, cond=real.inputs,
                             extra=self.params.translation.lambda_l1 * l1)
        return torch.cat([d_stats[:1], g_loss[None], d_stats[1:], l1.detach()[None], *diffusion_d.stats(self.diffusion)])

    def preview(self) -> torch.Tensor:
        """input | output | target, one example per row."""
        return side_by_side(self.shown.inputs, sample(self.sampler, self.worker.device, self.shown.inputs), self.shown.x)


class CycleGanTask(_TranslationTask):
    stats = ("d_loss", "g_loss", "d_real", "d_fake", "d_penalty", "cycle_l1", "identity_l1")

    def __init__(self, params: Params, manifest: dict, worker: Worker, resume: dict | None, distributed: bool):
        tr = params.translation
        shape = manifest["image_shape"]
        pools = nn.ModuleDict({"a": FakePool(tr.pool_size, shape), "b": FakePool(tr.pool_size, shape)})
        super().__init__(params, manifest, worker, resume, {"fake_pool": pools})
        self.pools = pools
        # every network wrapped on its own: each is called several times per step before one backward
        wrap = lambda m: self.fast.compiled(ddp(m, worker.device, distributed))  # noqa: E731
        self.g_ab, self.g_ba = wrap(self.g_local.a2b), wrap(self.g_local.b2a)
        wrap_d = (lambda m: ddp(m, worker.device, distributed)) if double_backprop(params.train) else wrap
        self.d_a, self.d_b = wrap_d(self.d_local.d_a), wrap_d(self.d_local.d_b)

    def step(self, step: int, total_steps: int, batch: Batch) -> torch.Tensor:
        tc, tr = self.params.train, self.params.translation
        real, noise_std = self.begin(step, total_steps, batch)
        a, b = real.inputs, real.x
        for m in (self.g_ab, self.g_ba, self.d_a, self.d_b):
            m.train()
        # generators: fool both discriminators, and come back (F(G(a)) ≈ a, G(F(b)) ≈ b)
        with self.fast.autocast():
            cycle, fake_b, fake_a = cycle_l1(self.g_ab, self.g_ba, a, b)
            identity = torch.zeros((), device=a.device)
            if tr.lambda_identity:
                identity = F.l1_loss(self.g_ab(b), b) + F.l1_loss(self.g_ba(a), a)
            # D's local copy (no gradient all-reduce for G's update; compiled when D is)
            d_a, d_b = (getattr(d, "module", d) for d in (self.d_a, self.d_b))
            adv = (self.adversary.g_loss(d_b, fake_b, noise_std, self.rng)
                   + self.adversary.g_loss(d_a, fake_a, noise_std, self.rng))
            cycle, identity, adv = cycle.float(), identity.float(), adv.float()
        self.opt_g.zero_grad(set_to_none=True)
        (adv + tr.lambda_cycle * (cycle + tr.lambda_identity * identity)).backward()
        self.opt_g.step()
        if self.ema is not None:
            self.ema.update(self.g_local, step)
        # discriminators: real images of their domain vs fakes from the pool
        pool_rng = torch.Generator().manual_seed(stream_seed(self.params.seed, POOL_STREAM, self.worker.rank, step))
        to_device = self.fast.to_device
        with self.fast.autocast():
            loss_a, st_a = self.adversary.d_loss(self.d_a, a, self.pools["a"].query(fake_a, pool_rng, to_device),
                                                 noise_std, self.rng)
            loss_b, st_b = self.adversary.d_loss(self.d_b, b, self.pools["b"].query(fake_b, pool_rng, to_device),
                                                 noise_std, self.rng)
        self.opt_d.zero_grad(set_to_none=True)
        (0.5 * (loss_a + loss_b)).backward()  # halved, as CycleGAN: D learns slower than G
        self.opt_d.step()
        if tc.weight_clip is not None:
            clip_weights(self.d_local, tc.weight_clip)
        if self.diffusion is not None:  # one T for both discriminators, steered by their joint vote
            self.diffusion.end_update()
        d_stats = (st_a + st_b) / 2
        return torch.cat([d_stats[:1], adv.detach()[None] / 2, d_stats[1:], cycle.detach()[None] / 2,
                          identity.detach()[None] / 2, *diffusion_d.stats(self.diffusion)])

    def preview(self) -> torch.Tensor:
        """a | G(a) | F(G(a)) rows, then b | F(b) | G(F(b)) rows."""
        g, dev = self.sampler, self.worker.device
        a, b = self.shown.inputs[: PREVIEW_ROWS // 2], self.shown.x[: PREVIEW_ROWS // 2]
        fake_b, fake_a = sample(g.a2b, dev, a), sample(g.b2a, dev, b)
        return torch.cat([side_by_side(a, fake_b, sample(g.b2a, dev, fake_b)),
                          side_by_side(b, fake_a, sample(g.a2b, dev, fake_a))])
