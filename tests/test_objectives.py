"""The objective zoo and its regularisers: the math, checked against closed forms."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, stats

from components.config import ConfigError, TrainConfig, load_params
from components.objectives import OBJECTIVES, Objective
from components.objectives.fgan import CONJUGATES, variational_bound
from components.objectives.regularizers import apply_spectral_norm, clip_weights, gradient_penalty, r1_penalty

P, Q = stats.norm(0, 1), stats.norm(1, 1)  # "real" p = N(0, 1), "fake" q = N(1, 1)


def _f_divergence(f) -> float:
    return integrate.quad(lambda x: Q.pdf(x) * f(P.pdf(x) / Q.pdf(x)), -12, 13)[0]


# Closed forms under the conventions documented in components/objectives/fgan.py (D_f(P‖Q) = ∫ q f(p/q)).
CLOSED_FORM = {
    "kl": 0.5,  # KL(P‖Q) = Δμ²/2
    "reverse_kl": 0.5,  # KL(Q‖P)
    "pearson_chi2": math.e - 1,  # exp(Δμ²) - 1
    "squared_hellinger": 2 * (1 - math.exp(-1 / 8)),  # ∫(√p-√q)² = 2(1 - Bhattacharyya coefficient)
    "jensen_shannon": _f_divergence(lambda u: -(u + 1) * np.log((1 + u) / 2) + u * np.log(u)),  # 2·JSD
    "total_variation": 2 * stats.norm.cdf(0.5) - 1,  # ½∫|p-q|
}


def _critic(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(1, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(),
                               torch.nn.Linear(64, 1))


def _draw(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, 1, generator=gen), torch.randn(n, 1, generator=gen) + 1.0


def _train_critic(loss_fn, steps: int = 1500, lr: float = 3e-3) -> torch.nn.Module:
    torch.set_num_threads(1)
    d, gen = _critic(), torch.Generator().manual_seed(1)
    opt = torch.optim.Adam(d.parameters(), lr=lr)
    for _ in range(steps):
        real, fake = _draw(1024, gen)
        loss = loss_fn(d, real, fake)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return d


def test_closed_forms_agree_with_numerical_integration():
    # Guards the reference values themselves.
    assert CLOSED_FORM["kl"] == pytest.approx(_f_divergence(lambda u: u * np.log(u)), rel=1e-6)
    assert CLOSED_FORM["pearson_chi2"] == pytest.approx(_f_divergence(lambda u: (u - 1) ** 2), rel=1e-6)
    assert CLOSED_FORM["total_variation"] == pytest.approx(_f_divergence(lambda u: 0.5 * np.abs(u - 1)), rel=1e-4)


@pytest.mark.parametrize("name", sorted(CONJUGATES))
def test_f_gan_critic_estimates_the_divergence(name):
    objective = OBJECTIVES.get(name)
    d = _train_critic(lambda d, real, fake: objective.discriminator_loss(d(real).squeeze(1), d(fake).squeeze(1)))
    real, fake = _draw(200_000, torch.Generator().manual_seed(2))
    with torch.no_grad():
        estimate = variational_bound(name, d(real).squeeze(1), d(fake).squeeze(1)).item()
    assert estimate == pytest.approx(CLOSED_FORM[name], rel=0.10), f"{name}: {estimate} vs {CLOSED_FORM[name]}"


def test_wgan_gp_critic_estimates_w1():
    objective = OBJECTIVES.get("wasserstein")

    def loss(d, real, fake):
        return objective.discriminator_loss(d(real).squeeze(1), d(fake).squeeze(1)) + gradient_penalty(d, real, fake, 10.0)

    d = _train_critic(loss, steps=1500, lr=1e-3)
    real, fake = _draw(200_000, torch.Generator().manual_seed(2))
    with torch.no_grad():
        w1 = (d(real).mean() - d(fake).mean()).item()
    assert w1 == pytest.approx(1.0, rel=0.10)  # W1(N(0,1), N(1,1)) = |Δμ| = 1


def test_minimax_value_at_the_optimal_d_is_2_jsd_minus_log_4():
    # V(D) = E_p log D(x) + E_q log(1 - D(x)), and D minimises -V. By hand, for D = 3/4 on every real sample
    # and 1/4 on every fake one (logits ±log 3): V = 2·log(3/4); the same D with real and fake swapped: 2·log(1/4).
    d_loss = OBJECTIVES.get("minimax").discriminator_loss
    sure = torch.full((1000,), math.log(3.0))
    assert -d_loss(sure, -sure).item() == pytest.approx(2 * math.log(3 / 4), abs=1e-6)
    assert -d_loss(-sure, sure).item() == pytest.approx(2 * math.log(1 / 4), abs=1e-6)
    # The optimal D is p/(p + q) (Goodfellow et al. 2014, Prop. 1), where V = 2·JSD(p, q) - log 4. For
    # p = N(0, 1), q = N(1, 1) its logit is log p(x)/q(x) = 1/2 - x; 2·JSD is CLOSED_FORM's (the integral).
    real, fake = _draw(400_000, torch.Generator().manual_seed(4))
    value = -d_loss(0.5 - real.squeeze(1), 0.5 - fake.squeeze(1)).item()
    assert value == pytest.approx(CLOSED_FORM["jensen_shannon"] - math.log(4), abs=5e-3)
    zeros = torch.zeros(1000)  # when p = q the optimal D is 1/2 everywhere (logit 0) and JSD = 0: V = -log 4
    assert -d_loss(zeros, zeros).item() == pytest.approx(-math.log(4), abs=1e-6)
    # …and a D trained on p = q finds it.
    d = _train_critic(lambda d, real, fake: d_loss(d(real).squeeze(1), d(real.flip(0) + 0 * fake).squeeze(1)), steps=300)
    x = torch.randn(100_000, 1, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert -d_loss(d(x).squeeze(1), d(x).squeeze(1)).item() == pytest.approx(-math.log(4), abs=0.01)


def test_gradient_penalty_of_a_linear_critic():
    w = torch.tensor([[3.0, 4.0]])  # ‖w‖ = 5
    critic = torch.nn.Linear(2, 1, bias=False)
    critic.weight.data.copy_(w)
    real, fake = torch.randn(64, 2), torch.randn(64, 2)
    assert gradient_penalty(critic, real, fake, weight=10.0).item() == pytest.approx(10.0 * (5.0 - 1.0) ** 2)


def test_r1_matches_the_analytic_gradient_norm():
    # D(x) = c/2 ‖x‖²  →  ∇D = c x  →  R1 = γ/2 E[c² ‖x‖²]
    c, gamma = 3.0, 0.5
    x = torch.randn(128, 2).requires_grad_(True)
    out = 0.5 * c * (x**2).sum(1)
    expected = 0.5 * gamma * (c**2 * (x.detach() ** 2).sum(1)).mean()
    assert r1_penalty(out, x, gamma).item() == pytest.approx(expected.item(), rel=1e-6)


def test_weight_clipping_bounds_every_parameter():
    d = _critic()
    for p in d.parameters():
        p.data.mul_(100)
    clip_weights(d, 0.01)
    assert max(p.abs().max().item() for p in d.parameters()) <= 0.01


def test_spectral_norm_keeps_the_largest_singular_value_at_most_one():
    torch.manual_seed(0)
    d = apply_spectral_norm(torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.LeakyReLU(0.2), torch.nn.Linear(64, 1)))
    for layer in (d[0], d[2]):
        layer.parametrizations.weight.original.data.mul_(10)  # far from 1-Lipschitz before normalisation
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    for _ in range(50):  # weights move; the parametrization keeps rescaling them
        loss = -d(torch.randn(32, 8)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    d(torch.randn(4, 8))  # one more power iteration after the last update
    for layer in (d[0], d[2]):
        assert torch.linalg.matrix_norm(layer.weight.detach(), ord=2).item() <= 1.0 + 0.02
        assert torch.linalg.matrix_norm(layer.parametrizations.weight.original.detach(), ord=2).item() > 1.1


@pytest.mark.parametrize("name", ["minimax", "nonsaturating"])
def test_label_smoothing_moves_the_real_target_of_cross_entropy(name):
    real, fake = torch.randn(256), torch.randn(256)
    eps = 0.2
    expected = (F.binary_cross_entropy_with_logits(real, torch.full_like(real, 1 - eps))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    assert OBJECTIVES.get(name).discriminator_loss(real, fake, eps).item() == pytest.approx(expected.item(), rel=1e-6)


def test_label_smoothing_moves_the_real_target_of_least_squares():
    real, fake = torch.randn(256), torch.randn(256)
    expected = 0.5 * ((real - 0.9) ** 2).mean() + 0.5 * (fake**2).mean()
    assert OBJECTIVES.get("lsgan").discriminator_loss(real, fake, 0.1).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("name", ["hinge", "wasserstein", "kl", "total_variation"])
def test_label_smoothing_without_targets_is_refused(name):
    with pytest.raises(ValueError, match="no real/fake targets"):
        OBJECTIVES.get(name).discriminator_loss(torch.zeros(4), torch.zeros(4), 0.1)
    extra = {"gradient_penalty": 10.0} if name == "wasserstein" else {}
    with pytest.raises(ConfigError, match=f"label_smoothing = 0.1 cannot be used with objective = '{name}'"):
        load_params(None, [f"train.objective={name}", "train.label_smoothing=0.1",
                           *(f"train.{k}={v}" for k, v in extra.items())])


@pytest.mark.parametrize("overrides, message", [
    (["train.objective=wasserstein", "train.weight_clip=0.01", "train.gradient_penalty=10"], "weight_clip = 0.01 with gradient_penalty"),
    (["train.objective=wasserstein"], "needs a Lipschitz constraint"),
    (["train.pack=2", "model.conditioning=projection"], "PacGAN packing is for unconditional GANs"),
    (["model.clusters=10", "model.conditioning=projection"], "clusters replace the labels"),
    (["model.clusters=10", "train.pack=2"], "PacGAN packing is for unconditional GANs"),
    (["model.clusters=10", "model.family=vae"], "model.clusters = 10 is for the GAN families dcgan and mlp"),
    (["train.d_steps_per_g_step=5", "train.g_steps_per_d_step=2"], "set at most one of them above 1"),
    (["train.objective=softmax_gan"], "unknown objective 'softmax_gan'"),
])
def test_nonsense_combinations_are_refused_with_the_reason(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_params(None, overrides)


def test_every_registered_objective_is_valid_config(register_entry):
    # One registered now, long after the config was imported: the config must read the registry, not a list.
    late = register_entry(OBJECTIVES, "test_registered_late",
                          Objective(d_loss=lambda real, fake, _: fake.mean() - real.mean(), g_loss=lambda f: -f.mean()))
    assert late in OBJECTIVES.names()
    for name in OBJECTIVES.names():
        extra = {"gradient_penalty": 10.0} if OBJECTIVES.get(name).critic else {}
        TrainConfig(objective=name, **extra)  # raises (pydantic's ValidationError) if the name is refused
        load_params(None, [f"train.objective={name}", *(f"train.{k}={v}" for k, v in extra.items())])  # ConfigError
