"""Diffusion-noised discriminator inputs (Diffusion-GAN, Wang et al., ICLR 2023), for every GAN family.

D's real and fake inputs both pass through a forward diffusion before D sees them:
    y = √ᾱ_t x + √(1 - ᾱ_t) σ ε,   ε ~ N(0, I),
with a linear β schedule from 1e-4 to 0.02 stretched over the current maximum T (the reference's
choice: the schedule always ends at the same noise level, and T sets how finely it is cut). Each
sample's t is 0 (the clean input) with probability ½, else drawn from 1…T with P(t) ∝ t - 1 (the
reference's "priority" draw, which favours the noisier end). D conditions on the noise level of its
input, √(1 - ᾱ_t), given as one extra input channel (one extra feature for points): t alone means a
different noise level each time T moves.

T adapts from D's overfitting signal r_d = E[sign(D(real) - decision)] (ADA's r_t; the decision
threshold is the objective's, 0 for logits, 0.5 for LSGAN's 0/1 targets). Every INTERVAL D updates,
p moves by sign(r_d - target) × (real images judged) / (kimg × 1000) within [0, 1], and
T = t_min + round(p (t_max - t_min)): a D too sure of the reals gets noisier inputs.

Everything is a device tensor (no host sync per step); the state (p, the running vote, the update
count) lives in buffers, so it is checkpointed with the networks and a resumed run continues bit-exactly.
Under DDP the vote is all-reduced at each adjustment, so every rank moves T alike."""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

BETA_START, BETA_END = 1e-4, 0.02
INTERVAL = 4  # D updates between adjustments of T (the reference's ada_interval)
STATS = ("diffusion_t_max", "diffusion_r_d")


def with_level(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """x with its per-sample noise level appended: one constant channel (images) or feature (points)."""
    shape = (-1, 1, *x.shape[2:])
    return torch.cat([x, level.to(x.dtype).reshape(-1, *[1] * (x.dim() - 1)).expand(shape)], 1)


def timesteps(clean: torch.Tensor, u: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """Each sample's t from two uniforms: 0 where clean < ½, else t ∈ 2…T with P(t) ∝ t - 1 (t = 1 has
    weight 0), by inverting the CDF t(t - 1) / (T(T - 1)) at u."""
    t = torch.ceil((1 + torch.sqrt(1 + 4 * u * T * (T - 1))) / 2).clamp(min=2)
    return torch.minimum(t, T).long() * (clean >= 0.5)


def abar_table(T: torch.Tensor, t_max: int) -> torch.Tensor:
    """ᾱ_0 = 1, ᾱ_1 … ᾱ_T of the linear schedule BETA_START…BETA_END over T steps (entries past T unused),
    from the device tensor T: no host sync."""
    s = torch.arange(t_max, device=T.device, dtype=torch.float32)
    betas = BETA_START + (BETA_END - BETA_START) * s / (T - 1)
    return torch.exp(torch.cat([torch.zeros(1, device=T.device), torch.cumsum(torch.log1p(-betas), 0)]))


class DiffusionD(nn.Module):
    """The adaptive forward diffusion in front of D; see the module docstring."""

    def __init__(self, cfg, decision: float = 0.0):
        super().__init__()
        self.target, self.kimg, self.sigma = cfg.diffusion_d_target, cfg.diffusion_d_kimg, cfg.diffusion_d_noise_std
        self.t_min, self.t_max, self.decision = cfg.diffusion_d_t_min, cfg.diffusion_d_t_max, decision
        self.register_buffer("p", torch.zeros(()))
        self.register_buffer("vote", torch.zeros(3))  # Σ sign, outputs counted, real images judged
        self.register_buffer("r_d", torch.zeros(()))  # the last adjustment's r_d
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.updates_seen = 0  # host mirror of `updates`, which decides when to adjust (no sync)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.updates_seen = int(self.updates)  # once, at resume

    def current_t(self) -> torch.Tensor:
        return (self.t_min + torch.round(self.p * (self.t_max - self.t_min))).clamp(self.t_min, self.t_max)

    def diffuse(self, x: torch.Tensor, rng: torch.Generator, to_device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(the diffused x, each sample's noise level √(1 - ᾱ_t)); the draws come from `rng` on the CPU."""
        to_device = to_device or (lambda t: t.to(x.device))
        n = x.shape[0]
        clean, u = torch.rand(n, generator=rng), torch.rand(n, generator=rng)
        eps = to_device(torch.randn(x.shape, generator=rng))
        T = self.current_t().to(x.device)
        t = timesteps(to_device(clean), to_device(u), T)
        abar = abar_table(T, self.t_max)[t].reshape(-1, *[1] * (x.dim() - 1))
        level = (1 - abar).sqrt()
        y = abar.sqrt() * x.float() + level * self.sigma * eps.float()
        return y.to(x.dtype), level.flatten()

    def observe(self, out_real: torch.Tensor, images: int) -> None:
        """D's outputs on a real batch of `images` images: votes towards r_d."""
        with torch.no_grad():
            out = out_real.detach().float()
            self.vote += torch.stack([torch.sign(out - self.decision).sum(), out.new_tensor(out.numel()),
                                      out.new_tensor(images)])

    def end_update(self) -> None:
        """After each D update: every INTERVAL updates, move p by the vote, then start a new vote."""
        self.updates_seen += 1
        self.updates.fill_(self.updates_seen)
        if self.updates_seen % INTERVAL:
            return
        with torch.no_grad():
            vote = self.vote.clone()
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(vote)
            r_d = vote[0] / vote[1].clamp(min=1)
            self.p.copy_((self.p + torch.sign(r_d - self.target) * vote[2] / (self.kimg * 1000)).clamp(0, 1))
            self.r_d.copy_(r_d)
            self.vote.zero_()

    def stats(self) -> torch.Tensor:
        """[T, r_d] for the step's logged numbers (diffusion_t_max, diffusion_r_d)."""
        return torch.stack([self.current_t(), self.r_d]).float()


def stats(diffusion: DiffusionD | None) -> list[torch.Tensor]:
    """What a task appends to its step's numbers: [T, r_d] when on, nothing when off."""
    return [] if diffusion is None else [diffusion.stats()]


def build(cfg, objective) -> DiffusionD | None:
    """The train config's DiffusionD (None when train.diffusion_d is off)."""
    return DiffusionD(cfg, objective.decision) if cfg.diffusion_d else None
