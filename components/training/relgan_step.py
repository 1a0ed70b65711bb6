"""RelGAN's `Task` for the shared loop. One step counter runs two phases (components/families/relgan.py):

1. MLE: one teacher-forced update of G on a real batch (Adam at relgan.pretrain_lr, gradient clip);
2. adversarial: one update of G, then train.d_steps_per_g_step updates of D (the reference's order: its
   `gsteps` then `dsteps`). G emits, for Gumbel noise g, the tokens y_t = argmax(o_t + g_t) fed back as its
   next inputs and their relaxation softmax(β·(o_t + g_t)), which D judges; the loss is the relativistic
   standard GAN's (Jolicoeur-Martineau 2019) on D's logits of a real batch r and a relaxed fake batch f,
   paired row by row and representation by representation:
       D: mean softplus(−(r − f)),   G: mean softplus(−(f − r)).
   β is the inverse temperature of the relaxation, annealed by `inverse_temperature`. A step draws
   train.d_steps_per_g_step real batches: G's update judges the first, D's i-th update the i-th.

Every random draw (Gumbel noise, previews) comes from a stream seeded by (seed, purpose, rank, step, round),
so a resumed run draws what an uninterrupted one would; D's dropout uses the global generator, which the
checkpoint keeps."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from components.config import Params
from components.training import checkpoint as ckpt
from components.training.loop import Batch, Worker, ddp, spec_meta, stream_seed

# stream purposes (each task owns its streams)
NOISE, PREVIEW = 31, 32
PREVIEW_SENTENCES = 16

MLE_STATS = ("mle_loss",)
ADVERSARIAL_STATS = ("d_loss", "g_loss", "d_margin", "beta")


def inverse_temperature(i: int, n: int, beta_max: float) -> float:
    """β after i of n adversarial steps: the paper's exponential schedule β_max^(i/n) (the reference's
    `adapt = 'exp'`), 1 at the first step, rising to β_max at the n-th."""
    return float(beta_max ** (i / n)) if n else 1.0


def relativistic_losses(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(D's loss, G's loss) of the relativistic standard GAN on D's logits of paired real and fake rows."""
    return F.softplus(fake - real).mean(), F.softplus(real - fake).mean()


class RelganTask:
    stats = (*MLE_STATS, *ADVERSARIAL_STATS)  # mle_loss: G's NLL (nats per token); d_margin: mean r − f
    preview_cols = None

    def __init__(self, params: Params, manifest: dict, worker: Worker, resume: dict | None, distributed: bool):
        from components.models.relgan import Discriminator, Generator

        tc, rc, dev = params.train, params.relgan, worker.device
        self.params, self.worker, self.dev = params, worker, dev
        self.batches_per_step = tc.d_steps_per_g_step
        vocab, seq_len = manifest["vocabulary"], manifest["seq_len"]
        g = Generator(len(vocab), seq_len, rc.g_embed, rc.mem_slots, rc.heads, rc.head_size).to(dev)
        d = Discriminator(len(vocab), seq_len, rc.d_embed, rc.num_rep, rc.d_widths, rc.d_filters, rc.d_dropout).to(dev)
        g.vocabulary = vocab
        betas = (tc.beta1, tc.beta2)
        self.opt_mle = torch.optim.Adam(g.parameters(), lr=rc.pretrain_lr, betas=betas)
        self.opt_g = torch.optim.Adam(g.parameters(), lr=tc.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(d.parameters(), lr=tc.lr_d, betas=betas)
        self.nets = {"generator": g, "discriminator": d}
        self.optimizers = {"opt_mle": self.opt_mle, "opt_g": self.opt_g, "opt_d": self.opt_d}
        self.ema = None
        if resume is not None:
            ckpt.restore(resume, nets=self.nets, optimizers=self.optimizers)
        self.g, self.d = g, d
        self.g_ddp, self.d_ddp = ddp(g, dev, distributed), ddp(d, dev, distributed)
        self.meta = spec_meta(params, manifest, vocabulary=vocab)
        self.pretrain_end = rc.pretrain_steps

    # ------------------------------------------------------------------------------------------ pieces
    def _rng(self, purpose: int, step: int, i: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(stream_seed(self.params.seed, purpose, self.worker.rank, step, i))

    def _noise(self, n: int, step: int, i: int) -> torch.Tensor:
        from components.models.relgan import gumbel

        return gumbel((n, self.g.seq_len, self.g.vocab_size), self._rng(NOISE, step, i)).to(self.dev)

    def _clip_and_step(self, net: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        if self.params.relgan.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(net.parameters(), self.params.relgan.grad_clip)
        opt.step()

    def beta(self, step: int) -> float:
        """β of adversarial step `step` (a step of the run's counter)."""
        rc = self.params.relgan
        return inverse_temperature(step - self.pretrain_end, rc.adversarial_steps, rc.beta_max)

    def mle(self, real: torch.Tensor) -> torch.Tensor:
        nll = -self.g_ddp(real).mean()
        self.opt_mle.zero_grad(set_to_none=True)
        nll.backward()
        self._clip_and_step(self.g, self.opt_mle)
        return nll.detach()

    def g_update(self, real: torch.Tensor, step: int, beta: float) -> torch.Tensor:
        """One adversarial update of G through D (frozen: its weights get no gradient); G's loss."""
        _, soft = self.g_ddp(noise=self._noise(len(real), step, 0), beta=beta)
        self.d.train()
        self.d.requires_grad_(False)
        try:
            out = self.d(real, soft)  # the plain module: D has no gradient here for DDP to reduce
        finally:
            self.d.requires_grad_(True)
        _, loss = relativistic_losses(out[: len(real)], out[len(real):])
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self._clip_and_step(self.g, self.opt_g)
        return loss.detach()

    @torch.no_grad()
    def fakes(self, n: int, step: int, beta: float) -> tuple[torch.Tensor, ...]:
        """Fresh relaxed samples of G, n for each D update of this step: drawn in one pass (one noise stream
        per update, so the rows are what separate passes would draw)."""
        noise = torch.cat([self._noise(n, step, 1 + i) for i in range(self.batches_per_step)])
        return self.g(noise=noise, beta=beta)[1].split(n)

    def d_update(self, real: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        """One D update on a real batch against as many relaxed samples of G: [loss, mean r − f]."""
        self.d.train()
        out = self.d_ddp(real, soft)  # one forward for both halves (DDP: one reduction per backward)
        r, f = out[: len(real)], out[len(real):]
        loss, _ = relativistic_losses(r, f)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self._clip_and_step(self.d, self.opt_d)
        return torch.stack([loss.detach(), (r - f).detach().mean()])

    # ------------------------------------------------------------------------------------------ the step
    def measured(self, step: int) -> tuple[str, ...]:
        return MLE_STATS if step < self.pretrain_end else ADVERSARIAL_STATS

    def step(self, step: int, total_steps: int, batch: Batch) -> torch.Tensor:
        zero = torch.zeros((), device=self.dev)
        if step < self.pretrain_end:
            return torch.stack([self.mle(batch(0).x), zero, zero, zero, zero])
        beta = self.beta(step)
        real = batch(0).x
        g_loss = self.g_update(real, step, beta)
        fakes = self.fakes(len(real), step, beta)
        d_stats = torch.stack([self.d_update(batch(i).x, soft) for i, soft in enumerate(fakes)]).mean(0)
        return torch.stack([zero, d_stats[0], g_loss, d_stats[1], torch.tensor(beta, device=self.dev)])

    def preview(self) -> str:
        """Sentences of G (seeded, so every preview of a run is drawn with the same noise)."""
        from components.families.text import TextFamily

        tokens = self.g.sample(PREVIEW_SENTENCES, self._rng(PREVIEW, 0)).cpu()
        return "\n".join(TextFamily.sentences(self.g, tokens)) + "\n"
