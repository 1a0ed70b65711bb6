"""f-GAN (Nowozin, Cseke & Tomioka 2016): variational divergence minimisation.

D outputs an unconstrained v; the output activation g_f maps it into the domain of the conjugate
f*, T = g_f(v). D maximises F(T) = E_p[T(x)] - E_q[f*(T(x))], a lower bound on D_f(p ‖ q) that is
tight at the optimal T; G uses the paper's alternative update, maximising E_q[g_f(v(G(z)))].

Activations and conjugates follow the paper's Table 2; divergences follow its Table 1, i.e.
D_f(P‖Q) = ∫ q f(p/q) with P the data (real) and Q the generator (fake):
    kl                 f(u) = u log u                       KL(P‖Q)
    reverse_kl         f(u) = -log u                        KL(Q‖P)
    pearson_chi2       f(u) = (u - 1)²                      χ²(P‖Q) = ∫ (p - q)² / q
    squared_hellinger  f(u) = (√u - 1)²                     ∫ (√p - √q)²  (no ½)
    jensen_shannon     f(u) = -(u+1) log((1+u)/2) + u log u  2·JSD(P, Q)
    total_variation    f(u) = ½ |u - 1|                     ½ ∫ |p - q|
f*(g_f(v)) is written directly in v where that avoids log/exp round trips."""
from __future__ import annotations

import math
from typing import Callable

from components.lazy import LazyModule

from components.objectives.objective import OBJECTIVES, Objective

torch, F = LazyModule("torch"), LazyModule("torch.nn.functional")  # loaded when a loss runs
Tensor = "torch.Tensor"
_LOG2 = math.log(2.0)

# name -> (g_f(v), f*(g_f(v)))
CONJUGATES: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "kl": (lambda v: v, lambda v: torch.exp(v - 1.0)),
    "reverse_kl": (lambda v: -torch.exp(-v), lambda v: v - 1.0),  # f*(t) = -1 - log(-t), t = -e^{-v}
    "pearson_chi2": (lambda v: v, lambda v: 0.25 * v**2 + v),
    "squared_hellinger": (lambda v: 1.0 - torch.exp(-v), lambda v: torch.expm1(v)),  # f*(t) = t/(1-t)
    # g_f(v) = log 2 - log(1 + e^{-v}); f*(t) = -log(2 - e^t) = softplus(v) - log 2
    "jensen_shannon": (lambda v: _LOG2 - F.softplus(-v), lambda v: F.softplus(v) - _LOG2),
    "total_variation": (lambda v: 0.5 * torch.tanh(v), lambda v: 0.5 * torch.tanh(v)),  # f*(t) = t on |t| ≤ ½
}


def variational_bound(name: str, real: Tensor, fake: Tensor) -> Tensor:
    """F(T) = E_p[T] - E_q[f*(T)]: at the optimal D this is the divergence itself."""
    activation, conjugate = CONJUGATES[name]
    return activation(real).mean() - conjugate(fake).mean()


# The raw v at which D cannot tell: the optimal T is f'(p/q), so T = f'(1) where p = q, i.e. v = g_f⁻¹(f'(1)).
# That is v = 0 for every divergence here (reverse KL: g_f(0) = -1 = f'(1)) but KL (f'(1) = 1, g_f(v) = v).
_DECISION = {"kl": 1.0}


def _objective(name: str) -> Objective:
    activation, _ = CONJUGATES[name]

    return Objective(d_loss=lambda real, fake, _: -variational_bound(name, real, fake), g_loss=lambda fake: -activation(fake).mean(), belief=activation,
                     decision=_DECISION.get(name, 0.0), summary=f"f-GAN, {name} divergence")


for _name in CONJUGATES:
    OBJECTIVES.register(_name)(_objective(_name))
