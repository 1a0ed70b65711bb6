"""Exponential moving average of the generator's weights (Karras et al. 2018; Yazıcı et al. 2019).

A warm-up, decay_t = min(decay, (1 + t) / (10 + t)), keeps short runs from being dominated by the
random initial weights. Buffers (BatchNorm statistics) are copied, not averaged."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, g: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(getattr(g, "module", g)).requires_grad_(False)

    @torch.no_grad()
    def update(self, g: nn.Module, step: int) -> None:
        src = getattr(g, "module", g)
        decay = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(list(self.model.parameters()), list(src.parameters()), 1.0 - decay)
        for b_ema, b in zip(self.model.buffers(), src.buffers()):
            b_ema.copy_(b)
