"""The diffusion-noised discriminator (train.diffusion_d, Diffusion-GAN): its draws of t, its schedule, the
adaptation of T from r_d, the decision threshold of each objective, the combinations it refuses, and
training with it (logged T and r_d, one more D input channel). Resume and DDP with it on are in
test_families (cgan_dd, pix2pix_dd, cyclegan_dd)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from components.config import ConfigError, ModelConfig, TrainConfig, load_params
from components.families import build_gan
from components.objectives import OBJECTIVES
from components.training import diffusion_d as dd
from components.training.gan_step import GanGame
from conftest import REPO, tiny_params, train_in_process


def test_t_is_clean_half_the_time_else_weighted_towards_the_noisy_end():
    g = torch.Generator().manual_seed(0)
    n, T = 400_000, torch.tensor(50.0)
    t = dd.timesteps(torch.rand(n, generator=g), torch.rand(n, generator=g), T)
    assert abs((t == 0).float().mean().item() - 0.5) < 0.005
    noisy = t[t > 0]
    assert noisy.min() == 2 and noisy.max() == 50  # P(1) ∝ 0
    counts = torch.bincount(noisy, minlength=51)[2:].double()
    expected = torch.arange(1, 50, dtype=torch.float64) / (49 * 50 / 2) * len(noisy)  # ∝ t - 1
    assert ((counts - expected).abs() / expected.sqrt()).max() < 5  # every t within 5 standard errors


def test_the_schedule_is_linear_over_the_current_t_and_clean_inputs_pass_unchanged():
    for T in (5, 50, 500):
        table = dd.abar_table(torch.tensor(float(T)), 500)[: T + 1].double().numpy()
        ref = np.concatenate([[1.0], np.cumprod(1 - np.linspace(1e-4, 0.02, T))])
        assert np.abs(table - ref).max() < 1e-6
    cfg = TrainConfig(diffusion_d=True, diffusion_d_t_min=500)
    d = dd.DiffusionD(cfg)
    x = torch.rand(4096, 1, 4, 4) * 2 - 1
    y, level = d.diffuse(x, torch.Generator().manual_seed(1))
    clean = level == 0
    assert 0.45 < clean.float().mean() < 0.55 and torch.equal(y[clean], x[clean])
    # y = √ᾱ x + level σ ε: the residual after removing the signal has std level·σ
    abar = (1 - level[~clean] ** 2).reshape(-1, 1, 1, 1)
    resid = (y[~clean] - abar.sqrt() * x[~clean]) / level[~clean].reshape(-1, 1, 1, 1)
    assert abs(resid.std().item() - cfg.diffusion_d_noise_std) < 0.002
    assert level.max() > 0.99  # T = 500 reaches ᾱ ≈ 0.007


def test_t_grows_while_d_is_too_sure_of_the_reals_and_shrinks_back():
    cfg = TrainConfig(diffusion_d=True, diffusion_d_t_min=10, diffusion_d_t_max=110, diffusion_d_kimg=1.0)
    d = dd.DiffusionD(cfg)
    for update in range(1, 9):  # r_d = 1 > 0.6: each INTERVAL updates of 50 images move p by 200/1000
        d.observe(torch.full((50,), 3.0), images=50)
        d.end_update()
        assert d.p.item() == pytest.approx(0.2 * (update // dd.INTERVAL))
    assert d.current_t().item() == 10 + round(0.4 * 100) and d.r_d.item() == 1.0
    for _ in range(dd.INTERVAL):  # 30 of 50 outputs above the threshold: r_d = 0.2 < 0.6, T shrinks
        d.observe(torch.cat([torch.full((30,), 1.0), torch.full((20,), -1.0)]), images=50)
        d.end_update()
    assert d.p.item() == pytest.approx(0.2) and d.r_d.item() == pytest.approx(0.2)
    for _ in range(3 * dd.INTERVAL):
        d.observe(torch.full((50,), -1.0), images=50)
        d.end_update()
    assert d.p.item() == 0.0 and d.current_t().item() == 10  # clamped at t_min
    state = d.state_dict()
    again = dd.DiffusionD(cfg)
    again.load_state_dict(state)
    assert again.updates_seen == 6 * dd.INTERVAL and again.p.item() == 0.0


def test_lsgan_votes_around_its_midpoint():
    cfg = TrainConfig(diffusion_d=True, objective="lsgan", diffusion_d_kimg=1.0)
    d = dd.build(cfg, OBJECTIVES.get("lsgan"))
    for _ in range(dd.INTERVAL):
        d.observe(torch.full((10,), 0.4), images=10)  # below LSGAN's 0.5: D calls these reals fake
        d.end_update()
    assert d.r_d.item() == -1.0


@pytest.mark.parametrize("name,f_prime_at_1", [("kl", 1.0), ("reverse_kl", -1.0), ("pearson_chi2", 0.0),
                                               ("squared_hellinger", 0.0), ("jensen_shannon", 0.0),
                                               ("total_variation", 0.0)])
def test_f_gan_decision_is_where_the_optimal_t_says_p_equals_q(name, f_prime_at_1):
    obj = OBJECTIVES.get(name)
    assert obj.belief(torch.tensor(obj.decision)).item() == pytest.approx(f_prime_at_1, abs=1e-6)


def test_what_diffusion_d_refuses():
    with pytest.raises(ConfigError, match="diffusion_d_t_min = 50 is above diffusion_d_t_max = 20"):
        load_params(REPO / "params.yaml", ["train.diffusion_d=true", "train.diffusion_d_t_min=50",
                                           "train.diffusion_d_t_max=20"])
    with pytest.raises(ConfigError, match="diffusion_d with gradient_penalty = 1.0"):
        load_params(REPO / "params.yaml", ["train.diffusion_d=true", "train.gradient_penalty=1.0"])
    with pytest.raises(ConfigError, match="ddgan's D already judges pairs from a diffusion"):
        load_params(REPO / "params.yaml", ["preset=ddgan", "train.diffusion_d=true"])
    with pytest.raises(ConfigError, match="train.diffusion_d = True is a GAN setting"):
        load_params(REPO / "params.yaml", ["preset=null", "model.family=vae", "train.diffusion_d=true"])


def test_a_points_gan_judges_noised_points_with_their_level():
    """mlp (the 2-D mixtures): D takes (x, y, level); one D update votes and diffuses every real point."""
    cfg = TrainConfig(diffusion_d=True, diffusion_d_t_min=200, batch_size=64)
    g, d = build_gan(ModelConfig(family="mlp", d_channels=16, g_channels=16), [2], noise_level=True)
    assert d.body[0].in_features == 3
    diffusion = dd.build(cfg, OBJECTIVES.get(cfg.objective))
    game = GanGame(g, d, torch.optim.Adam(g.parameters()), torch.optim.Adam(d.parameters()), cfg, diffusion=diffusion)
    real = torch.randn(64, 2)
    stats = game.d_step(real, g(torch.randn(64, 64)), 0.0, torch.Generator().manual_seed(0))
    assert torch.isfinite(stats).all() and diffusion.vote[1].item() == 64 and diffusion.updates_seen == 1


def test_training_logs_t_and_r_d_and_d_sees_the_level_channel(run_root):
    params = tiny_params(run_root, train={"diffusion_d": True, "diffusion_d_kimg": 0.2, "max_steps": 12,
                                          "log_every": 1, "checkpoint_every": 4})
    rec, out = train_in_process(params, run_root)
    state = rec.states[-1]
    assert state["discriminator"]["body.0.weight"].shape[1] == 2  # 1 image channel + the noise level
    t_logged = [m["diffusion_t_max"] for _, m in rec.logs]
    assert all(5 <= t <= 500 for t in t_logged)
    p = state["diffusion_d"]["p"].item()
    assert out["diffusion_t_max"] == 5 + round(p * 495)  # the last step's T, from the checkpointed p
    assert p > 0 and len(set(t_logged)) > 1  # 12 steps × 32 images against kimg 0.2: T moved
    assert -1 <= out["diffusion_r_d"] <= 1


def test_mlflow_gets_t_and_r_d_at_every_logged_step(run_root):
    from mlflow.tracking import MlflowClient

    from pipelines import train

    params = tiny_params(run_root, train={"diffusion_d": True, "max_steps": 8, "log_every": 2,
                                          "curves_dir": str(run_root / "curves")})
    summary = train.run(params, run_root, use_ray=False)
    client = MlflowClient(params.tracking.uri)
    for metric in dd.STATS:
        assert [m.step for m in client.get_metric_history(summary["mlflow_run_id"], metric)] == [2, 4, 6, 8]


def test_at_t_0_the_noised_game_is_the_plain_game(monkeypatch):
    """With every t drawn as 0 the inputs pass clean and the level channel is 0: a D whose weights on the
    image channels are the plain D's gives the same losses, and a D step leaves the same weights."""
    torch.manual_seed(0)
    model = ModelConfig(d_channels=8, g_channels=8, latent_dim=8)
    g, plain = build_gan(model, [1, 8, 8])
    _, noised = build_gan(model, [1, 8, 8], noise_level=True)
    state = {k: v.clone() for k, v in noised.state_dict().items()}
    for k, v in plain.state_dict().items():
        state[k] = torch.cat([v, state[k][:, 1:]], 1) if k == "body.0.weight" else v.clone()
    noised.load_state_dict(state)
    monkeypatch.setattr(dd, "timesteps", lambda clean, u, T: torch.zeros_like(clean, dtype=torch.long))
    real, fake = torch.rand(16, 1, 8, 8) * 2 - 1, torch.rand(16, 1, 8, 8) * 2 - 1
    stats = []
    for d, cfg in ((plain, TrainConfig()), (noised, TrainConfig(diffusion_d=True))):
        opt = torch.optim.SGD(d.parameters(), lr=0.1)
        game = GanGame(g, d, torch.optim.SGD(g.parameters(), lr=0.1), opt, cfg,
                       diffusion=dd.build(cfg, OBJECTIVES.get(cfg.objective)))
        stats.append(game.d_step(real, fake, 0.0, torch.Generator().manual_seed(3)))
    assert torch.allclose(stats[0], stats[1], atol=1e-6)
    after, before = noised.state_dict(), plain.state_dict()
    assert torch.allclose(after["body.0.weight"][:, :1], before["body.0.weight"], atol=1e-6)
    assert torch.equal(after["body.0.weight"][:, 1:], state["body.0.weight"][:, 1:])  # level 0: no gradient
