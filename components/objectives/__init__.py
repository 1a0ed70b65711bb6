"""GAN objectives by name (`train.objective`). Each maps discriminator logits to the D and G losses."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from components.registry import Registry

Tensor = torch.Tensor


@dataclass(frozen=True)
class Objective:
    d_loss: Callable[[Tensor, Tensor], Tensor]  # (logits on real, logits on fake) -> scalar
    g_loss: Callable[[Tensor], Tensor]  # logits on fake -> scalar
    # Maps a logit to "D's belief the input is real" for the D(x)/D(G(z)) diagnostics.
    belief: Callable[[Tensor], Tensor] = torch.sigmoid


OBJECTIVES: Registry[Objective] = Registry("objective")


# Goodfellow et al. 2014, the non-saturating variant: D maximises log D(x) + log(1 - D(G(z))),
# G maximises log D(G(z)). softplus(-l) = -log sigmoid(l), numerically stable.
OBJECTIVES.register("nonsaturating")(
    Objective(
        d_loss=lambda real, fake: F.softplus(-real).mean() + F.softplus(fake).mean(),
        g_loss=lambda fake: F.softplus(-fake).mean(),
    )
)
