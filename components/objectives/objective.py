"""`Objective`, what every GAN loss is, and the `OBJECTIVES` registry the loss modules register in."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from components.registry import Registry

Tensor = "torch.Tensor"  # no torch import here: config validation reads this registry


def _sigmoid(x: Tensor) -> Tensor:
    return x.sigmoid()


@dataclass(frozen=True)
class Objective:
    # (D outputs on real, D outputs on fake, real target) -> scalar loss D minimises; objectives
    # without targets ignore the third argument. Call `discriminator_loss`, which checks smoothing.
    d_loss: Callable[[Tensor, Tensor, float], Tensor]
    # D outputs on fake -> scalar loss G minimises
    g_loss: Callable[[Tensor], Tensor]
    # Maps a raw D output to the "D(x)" diagnostic logged as d_real / d_fake (a probability for
    # classifier objectives, the critic value itself otherwise).
    belief: Callable[[Tensor], Tensor] = _sigmoid
    # True when D regresses towards real/fake targets, so one-sided label smoothing is defined.
    has_targets: bool = False
    # True when D is an unbounded critic whose objective is only meaningful under a Lipschitz
    # constraint (weight clipping, gradient penalty or spectral norm).
    critic: bool = False
    # The raw D output between a "real" and a "fake" verdict: r_d = E[sign(D(real) - decision)] steers
    # the diffusion-noised D (components/training/diffusion_d.py). 0 for logits, hinge and critics.
    decision: float = 0.0
    summary: str = ""

    def discriminator_loss(self, real: Tensor, fake: Tensor, smoothing: float = 0.0) -> Tensor:
        """D's loss with one-sided label smoothing ε: the real target becomes 1 - ε."""
        if smoothing and not self.has_targets:
            raise ValueError(f"label smoothing is not defined for {self.summary}: it has no real/fake targets")
        return self.d_loss(real, fake, 1.0 - smoothing)


OBJECTIVES: Registry[Objective] = Registry("objective")
