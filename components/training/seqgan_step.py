"""SeqGAN's `Task` for the shared loop. One step counter runs three phases (components/families/seqgan.py):

1. MLE: one teacher-forced update of G on a real batch (Adam at seqgan.pretrain_lr, gradient clip);
2. D pre-training: seqgan.d_epochs passes of D updates over train.d_steps_per_g_step real batches and as
   many batches of fresh samples of G;
3. adversarial: one REINFORCE update of G, then the same D updates. G samples a batch; the reward Q_t of
   token t is D's belief that the sequence is real — for t < L the mean over seqgan.rollouts completions of
   y_1..y_t by the roll-out policy, at t = L of y itself — and G minimises -mean_{i,t} Q_t log G(y_t | y_<t).
   The roll-out policy then moves towards G (seqgan.rollout_update).

Every random draw comes from a stream seeded by (seed, purpose, rank, step, round), so a resumed run draws
what an uninterrupted one would; the roll-out policy is checkpointed with G and D."""
from __future__ import annotations

import copy

import torch

from components.config import Params
from components.objectives import OBJECTIVES
from components.training import checkpoint as ckpt
from components.training.loop import Batch, Worker, ddp, spec_meta, stream_seed

# stream purposes (distinct from the other tasks' numbers only within a run; each task owns its streams)
SAMPLES, ROLLOUTS, NOISE, PREVIEW, SHUFFLE = 21, 22, 23, 24, 25
PREVIEW_SENTENCES = 16


# what each phase measures (`measured`): the loop logs a stat only over the steps that measured it
MLE_STATS, D_STATS = ("mle_loss",), ("d_loss", "d_real", "d_fake")
ADVERSARIAL_STATS = (*D_STATS, "pg_loss", "reward")


class SeqganTask:
    stats = (*MLE_STATS, *ADVERSARIAL_STATS)  # mle_loss: G's NLL, nats per token
    preview_cols = None

    def __init__(self, params: Params, manifest: dict, worker: Worker, resume: dict | None, distributed: bool):
        from components.models.seqgan import Discriminator, Generator

        tc, sc, dev = params.train, params.seqgan, worker.device
        self.params, self.worker, self.dev = params, worker, dev
        self.batches_per_step = tc.d_steps_per_g_step
        vocab, seq_len = manifest["vocabulary"], manifest["seq_len"]
        g = Generator(len(vocab), seq_len, sc.g_embed, sc.g_hidden).to(dev)
        d = Discriminator(len(vocab), seq_len, sc.d_embed, sc.d_widths, sc.d_filters, sc.d_dropout).to(dev)
        g.vocabulary = vocab
        self.rollout = copy.deepcopy(g).requires_grad_(False)
        betas = (tc.beta1, tc.beta2)
        self.opt_mle = torch.optim.Adam(g.parameters(), lr=sc.pretrain_lr, betas=betas)
        self.opt_g = torch.optim.Adam(g.parameters(), lr=tc.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(d.parameters(), lr=tc.lr_d, betas=betas)
        self.nets = {"generator": g, "discriminator": d, "rollout": self.rollout}
        self.optimizers = {"opt_mle": self.opt_mle, "opt_g": self.opt_g, "opt_d": self.opt_d}
        self.ema = None
        if resume is not None:
            ckpt.restore(resume, nets=self.nets, optimizers=self.optimizers)
        self.g, self.d = g, d
        self.g_ddp, self.d_ddp = ddp(g, dev, distributed), ddp(d, dev, distributed)
        self.objective = OBJECTIVES.get(tc.objective)
        self.meta = spec_meta(params, manifest, vocabulary=vocab)
        self.pretrain_end = sc.pretrain_steps
        self.adversarial_start = sc.pretrain_steps + sc.d_pretrain_steps

    # ------------------------------------------------------------------------------------------ pieces
    def _rng(self, purpose: int, step: int, i: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(stream_seed(self.params.seed, purpose, self.worker.rank, step, i))

    def _clip_and_step(self, opt: torch.optim.Optimizer) -> None:
        if self.params.seqgan.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.g.parameters(), self.params.seqgan.grad_clip)
        opt.step()

    def mle(self, real: torch.Tensor) -> torch.Tensor:
        nll = -self.g_ddp(real).mean()
        self.opt_mle.zero_grad(set_to_none=True)
        nll.backward()
        self._clip_and_step(self.opt_mle)
        return nll.detach()

    def d_update(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """One D update on a real batch against generated ones; [loss, D(real), D(fake)] beliefs."""
        self.d.train()
        out = self.d_ddp(torch.cat([real, fake]))  # one forward for both halves (DDP: one reduction per backward)
        out_real, out_fake = out[: len(real)], out[len(real):]
        loss = self.objective.discriminator_loss(out_real, out_fake, self.params.train.label_smoothing)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        belief = self.objective.belief
        return torch.stack([loss.detach(), belief(out_real.detach()).mean(), belief(out_fake.detach()).mean()])

    def d_round(self, step: int, batch: Batch) -> torch.Tensor:
        """train.d_steps_per_g_step real batches against as many batches of fresh samples of G, seqgan.d_epochs
        passes over them (the reference's epochs over each set of fresh negatives: sampling a negative costs
        more than judging it; every pass after the first in a seeded shuffled order). The mean stats."""
        k = self.batches_per_step
        reals = [batch(i).x for i in range(k)]
        pairs = [(r, self.g.sample(len(r), self._rng(SAMPLES, step, 1 + i)).to(self.dev)) for i, r in enumerate(reals)]
        stats = []
        for epoch in range(self.params.seqgan.d_epochs):
            order = range(k) if epoch == 0 else torch.randperm(k, generator=self._rng(SHUFFLE, step, epoch)).tolist()
            stats += [self.d_update(*pairs[i]) for i in order]
        return torch.stack(stats).mean(0)

    @torch.no_grad()
    def rewards(self, tokens: torch.Tensor, step: int) -> torch.Tensor:
        """Q (N, L): the reward of each token under seqgan.reward (before the baseline)."""
        sc = self.params.seqgan
        n, length = tokens.shape
        if sc.reward == "constant":
            return torch.ones(n, length, device=tokens.device)
        if sc.reward == "random":
            return torch.rand(n, length, generator=self._rng(NOISE, step)).to(tokens.device)
        self.d.eval()  # D's verdict without dropout
        completions = self.rollout.rollouts(tokens, sc.rollouts, self._rng(ROLLOUTS, step))  # (L-1, M, N, L)
        judged = self.objective.belief(self.d(completions.reshape(-1, length))).view(length - 1, sc.rollouts, n)
        return torch.cat([judged.mean(1).T, self.objective.belief(self.d(tokens)).unsqueeze(1)], 1)

    def policy_gradient(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One REINFORCE update of G on its own samples: (loss, mean reward)."""
        sc = self.params.seqgan
        tokens = self.g.sample(self.params.train.batch_size, self._rng(SAMPLES, step, 0)).to(self.dev)
        q = self.rewards(tokens, step)
        advantage = q - q.mean(0, keepdim=True) if sc.baseline else q
        loss = -(self.g_ddp(tokens) * advantage).mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self._clip_and_step(self.opt_g)
        with torch.no_grad():  # the roll-out policy lags G
            for r, p in zip(self.rollout.parameters(), self.g.parameters()):
                r.mul_(sc.rollout_update).add_(p, alpha=1.0 - sc.rollout_update)
        return loss.detach(), q.mean()

    # ------------------------------------------------------------------------------------------ the step
    def measured(self, step: int) -> tuple[str, ...]:
        """The stats `step` measures: its phase's (the others are 0 in what `step` returns)."""
        if step < self.pretrain_end:
            return MLE_STATS
        return D_STATS if step < self.adversarial_start else ADVERSARIAL_STATS

    def step(self, step: int, total_steps: int, batch: Batch) -> torch.Tensor:
        zero = torch.zeros((), device=self.dev)
        mle = pg = reward = zero
        d_stats = torch.zeros(3, device=self.dev)
        if step < self.pretrain_end:
            mle = self.mle(batch(0).x)
        else:
            if step == self.adversarial_start:  # the roll-out policy starts as the pre-trained G
                self.rollout.load_state_dict(self.g.state_dict())
            if step >= self.adversarial_start:
                pg, reward = self.policy_gradient(step)
            d_stats = self.d_round(step, batch)
        return torch.stack([mle, *d_stats, pg, reward])

    def preview(self) -> str:
        """Sentences of G (seeded, so every preview of a run is drawn with the same noise)."""
        from components.families.text import TextFamily

        tokens = self.g.sample(PREVIEW_SENTENCES, self._rng(PREVIEW, 0)).cpu()
        return "\n".join(TextFamily.sentences(self.g, tokens)) + "\n"
