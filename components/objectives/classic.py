"""The classic GAN objectives: minimax, non-saturating, least squares, hinge, Wasserstein.

All take raw D outputs (logits). softplus(-l) = -log sigmoid(l) and softplus(l) = -log(1 - sigmoid(l)),
the numerically stable forms of the cross-entropy terms."""
from __future__ import annotations

from components.lazy import LazyModule

from components.objectives.objective import OBJECTIVES, Objective

torch, F = LazyModule("torch"), LazyModule("torch.nn.functional")  # loaded when a loss runs
Tensor = "torch.Tensor"


def _bce_d_loss(real: Tensor, fake: Tensor, target: float) -> Tensor:
    # Binary cross-entropy with real target t (1 - ε under one-sided smoothing, Salimans et al. 2016); fake target 0.
    real_term = target * F.softplus(-real) + (1.0 - target) * F.softplus(real)
    return real_term.mean() + F.softplus(fake).mean()


def _identity(x: Tensor) -> Tensor:
    return x


# Goodfellow et al. 2014: min_G max_D E log D(x) + E log(1 - D(G(z))). At the optimal D the value is
# 2·JSD(p, q) - log 4 (so -log 4 when p = q). G minimises E log(1 - D(G(z))), which saturates early on.
OBJECTIVES.register("minimax")(Objective(
    d_loss=_bce_d_loss, g_loss=lambda fake: -F.softplus(fake).mean(), has_targets=True,
    summary="original saturating GAN; optimum minimises the Jensen-Shannon divergence"))

# Same D; G maximises log D(G(z)) instead, with strong gradients where D rejects its samples.
OBJECTIVES.register("nonsaturating")(Objective(
    d_loss=_bce_d_loss, g_loss=lambda fake: F.softplus(-fake).mean(), has_targets=True,
    summary="Goodfellow et al.'s non-saturating G loss -log D(G(z))"))

# Mao et al. 2017 (a=0, b=1, c=1): least squares towards targets; minimises a Pearson χ² divergence.
OBJECTIVES.register("lsgan")(Objective(
    d_loss=lambda real, fake, target: 0.5 * ((real - target) ** 2).mean() + 0.5 * (fake**2).mean(),
    g_loss=lambda fake: 0.5 * ((fake - 1.0) ** 2).mean(), belief=_identity, has_targets=True, decision=0.5,
    summary="least squares GAN (targets fake 0, real 1)"))

# Lim & Ye 2017 / Miyato et al. 2018: margin loss on D, linear G loss. No targets: label smoothing undefined.
OBJECTIVES.register("hinge")(Objective(
    d_loss=lambda real, fake, _: F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean(),
    g_loss=lambda fake: -fake.mean(), belief=_identity, summary="hinge loss (SAGAN / SN-GAN)"))

# Arjovsky et al. 2017: the critic maximises E f(x) - E f(G(z)), an estimate of W1 when f is 1-Lipschitz.
OBJECTIVES.register("wasserstein")(Objective(
    d_loss=lambda real, fake, _: fake.mean() - real.mean(), g_loss=lambda fake: -fake.mean(), belief=_identity,
    critic=True,
    summary="Wasserstein critic; needs weight_clip (WGAN), gradient_penalty (WGAN-GP) or spectral_norm"))
