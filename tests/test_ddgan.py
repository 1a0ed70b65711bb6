"""The Denoising Diffusion GAN (family ddgan): the shared noise process (schedule, posterior), sampling in
exactly T generator passes, what D is shown, lazy R1, and the family's place in the config. Its resume,
two-rank DDP and stage chain (evaluate → promote → pyfunc with labels) run with the other families in
tests/test_families.py."""
from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDPMScheduler

from components.config import ConfigError, load_params
from components.diffusion import process
from components.diffusion.settings import DiffusionConfig
from components.families.ddgan import FAMILY, DdganConfig
from conftest import REPO, tiny_params
from pipelines import prepare

TINY = {"channels": [8, 16], "r1_every": 3}


@pytest.mark.parametrize("cfg", [DiffusionConfig(), DiffusionConfig(beta_schedule="cosine", timesteps=50),
                                 DdganConfig(), DdganConfig(timesteps=8), DdganConfig(beta_schedule="linear",
                                                                                      timesteps=20, beta_end=0.3)],
                         ids=["ddpm-linear", "ddpm-cosine", "ddgan-vp4", "ddgan-vp8", "ddgan-linear"])
def test_the_posterior_has_its_closed_form_mean_and_variance(cfg):
    """μ and σ² of q(x_{t-1} | x_t, x_0) computed by hand in float64 from β and ᾱ, and equal to what
    diffusers' DDPM step draws from the x_0 estimate (variance fixed_small) with the same noise."""
    sched = process.noise_scheduler(cfg)
    g = torch.Generator().manual_seed(0)
    x0, xt = torch.rand(6, 1, 4, 4, generator=g) * 2 - 1, torch.randn(6, 1, 4, 4, generator=g)
    for step in sorted({0, 1, cfg.timesteps // 2, cfg.timesteps - 1}):
        t = torch.full((6,), step)
        mean, var = process.posterior(sched, x0, xt, t)
        ac = sched.alphas_cumprod.double()  # ᾱ as the scheduler holds it (float32 products over 1000 steps)
        ac_prev = ac[step - 1] if step else torch.tensor(1.0, dtype=torch.float64)
        b = 1 - ac[step] / ac_prev
        want_mean = (ac_prev.sqrt() * b / (1 - ac[step])) * x0.double() + ((1 - b).sqrt() * (1 - ac_prev)
                                                                            / (1 - ac[step])) * xt.double()
        want_var = b * (1 - ac_prev) / (1 - ac[step])
        assert torch.allclose(mean.double(), want_mean, atol=3e-4)  # float32 β = 1 - ᾱ_t/ᾱ_{t-1} near 1e-4
        assert torch.allclose(var.double(), want_var.expand_as(var), rtol=1e-3, atol=1e-9)
        noise = torch.randn(xt.shape, generator=torch.Generator().manual_seed(step))
        ours = process.posterior_sample(sched, x0, xt, t, noise)
        x0_stepper = DDPMScheduler.from_config(sched.config, prediction_type="sample")  # the model output is x̂_0
        theirs = x0_stepper.step(x0, step, xt, generator=torch.Generator().manual_seed(step)).prev_sample
        assert torch.allclose(ours, theirs, atol=1e-5), step
    assert process.posterior(sched, x0, xt, torch.zeros(6, dtype=torch.long))[1].abs().max() == 0  # t = 0: x̂_0 itself


@pytest.mark.parametrize("timesteps", [1, 2, 4, 8])
def test_the_vp_schedule_ends_near_noise_for_any_number_of_steps(timesteps):
    sched = process.noise_scheduler(DdganConfig(timesteps=timesteps))
    assert sched.alphas_cumprod[-1].item() == pytest.approx(math.exp(-(0.1 + 20.0) / 2), rel=1e-3)
    x_prev = torch.full((200_000,), 0.7)
    step = process.forward_step(sched, x_prev, torch.zeros(200_000, dtype=torch.long), torch.randn(200_000))
    b = sched.betas[0].item()  # q(x_0 | x_{-1}) = N(√(1-β) x, β)
    assert step.mean().item() == pytest.approx(math.sqrt(1 - b) * 0.7, abs=0.01)
    assert step.var().item() == pytest.approx(b, rel=0.03)


@pytest.mark.parametrize("timesteps", [1, 2, 4])
def test_sampling_takes_exactly_t_generator_passes(timesteps):
    g = FAMILY.network(DdganConfig(timesteps=timesteps, **TINY), 8, (1, 8, 8), 10)
    passes = []
    g.register_forward_hook(lambda module, args, out: passes.append(args[1].tolist()))
    out = FAMILY.draw(g, 5, 0, None, {}, 8)
    assert out.shape == (5, 1, 8, 8) and -1 <= out.min() and out.max() <= 1
    assert passes == [[t] * 5 for t in reversed(range(timesteps))]  # T-1, …, 0: one pass each
    assert FAMILY.network_passes(g, {}) == timesteps
    assert torch.equal(out, FAMILY.draw(g, 5, 0, None, {}, 8)) and not torch.equal(out, FAMILY.draw(g, 5, 1, None, {}, 8))


def test_a_translating_ddgan_sees_its_input_and_translates_in_t_passes():
    """On pairs G takes (x_t, the input resized to x_t's size) on channels; translate() is the sampler."""
    from components.families.ddgan import DDGAN_TRANSLATOR

    g = DDGAN_TRANSLATOR.network(DdganConfig(timesteps=3, **TINY), 8, (1, 8, 8), 10, (1, 4, 4))
    seen = []
    g.unet.register_forward_hook(lambda module, args, out: seen.append(args[0].detach().clone()))
    x = torch.rand(5, 1, 4, 4) * 2 - 1
    out = g.translate(x)
    assert out.shape == (5, 1, 8, 8) and len(seen) == 3 == DDGAN_TRANSLATOR.network_passes(g, {})
    for view in seen:  # channel 0: x_t; channel 1: the bicubic-resized input, the same at every pass
        assert view.shape == (5, 2, 8, 8) and torch.equal(view[:, 1:], g.condition(x))
    assert torch.equal(out, g.translate(x)) and not torch.equal(out, g.translate(-x))
    # each input's noise is its own: the same output alone, reordered, or beside a copy of itself
    assert torch.allclose(g.translate(x[3:4]), out[3:4], atol=1e-5)
    assert torch.allclose(g.translate(x.flip(0)), out.flip(0), atol=1e-5)
    twice = g.translate(torch.cat([x[:1], x[:1]]))
    assert torch.allclose(twice[0], twice[1], atol=1e-5) and not torch.allclose(out[0], out[1], atol=1e-3)
    with pytest.raises(ValueError, match="4 generators for 5 samples"):
        g.sample(5, [torch.Generator()] * 4, inputs=x)
    with pytest.raises(ValueError, match="this ddgan translates: give one input image per sample"):
        g.sample(5, torch.Generator())
    with pytest.raises(ValueError, match="reverse: a ddgan translates one way"):
        g.translate(x, reverse=True)
    with pytest.raises(ValueError, match="inputs given, but this ddgan samples from noise"):
        FAMILY.network(DdganConfig(**TINY), 8, (1, 8, 8), 10).sample(5, torch.Generator(), inputs=x)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddgan")
    prepare.run(tiny_params(root), root)
    return root


def _task(root, conditional=False, **ddgan):
    from components.data.shards import read_manifest
    from components.training.loop import Worker, build_task

    params = tiny_params(root, model={"family": "ddgan", "latent_dim": 8, "d_channels": 8},
                         ddgan={**TINY, "class_conditional": conditional, **ddgan},
                         train={"r1": 0.5, "batch_size": 16})
    return params, build_task(params, read_manifest(params.prepared_path(root)), Worker(), None)


def _batch(root, params):
    from components.data.shards import load_split
    from components.training.loop import RealBatch

    x, y = load_split(params.prepared_path(root), "train")[:2]
    x = torch.from_numpy(x[:16]).float() / 127.5 - 1
    return lambda i: RealBatch(x, torch.from_numpy(y[:16]).long())


@pytest.mark.parametrize("conditional", [False, True], ids=["unconditional", "class-conditional"])
def test_d_judges_the_pair_at_its_timestep_and_r1_is_lazy(digits, conditional):
    params, task = _task(digits, conditional)
    batch = _batch(digits, params)
    seen = []
    d = task.game.d_local
    d.register_forward_hook(lambda module, args, out: seen.append((args[0].detach().clone(), args[1].clone())))
    penalties = []
    for step in range(6):
        seen.clear()
        stats = task.step(step, 6, batch)
        penalties.append(stats[4].item())
        (real, cond_r), (fake, cond_f), (g_view, cond_g) = seen  # D on real, on fake, then G's update
        assert real.shape == fake.shape == (16, 2, 8, 8)  # (x_{t-1}, x_t) on channels
        assert torch.equal(real[:, 1:], fake[:, 1:]) and torch.equal(cond_r, cond_f) and torch.equal(cond_f, cond_g)
        assert not torch.equal(real[:, :1], fake[:, :1])  # real x_{t-1} vs G's
        t = cond_r % task.cfg.timesteps
        if conditional:
            assert torch.equal(cond_r // task.cfg.timesteps, batch(0).labels)
        else:
            assert cond_r.max() < task.cfg.timesteps
        at0 = t == 0  # at t = 0 the real x_{t-1} is the image itself
        assert torch.equal(real[at0, :1], batch(0).x[at0]) and len(set(t.tolist())) > 1
    assert [p > 0 for p in penalties] == [True, False, False, True, False, False]  # every r1_every = 3 D updates


def test_on_pairs_d_judges_the_pair_beside_its_input(tmp_path):
    from components.data.shards import load_rank_inputs, load_split, read_manifest
    from components.models.translation import to_size
    from components.training.loop import RealBatch, Worker, build_task

    params = tiny_params(tmp_path, data={"source": "digits", "pairs": "downsample", "pair_size": 4},
                         model={"family": "ddgan", "latent_dim": 8, "d_channels": 8}, ddgan=TINY,
                         train={"batch_size": 16})
    prepare.run(params, tmp_path)
    path = params.prepared_path(tmp_path)
    task = build_task(params, read_manifest(path), Worker(), None)
    x, y = (torch.from_numpy(a[:16]) for a in load_split(path, "train")[:2])
    inputs = torch.from_numpy(load_rank_inputs(path, "train", 0, 1)[0][:16])
    real = RealBatch(x.float() / 127.5 - 1, y.long(), inputs.float() / 127.5 - 1, y.long())
    seen = []
    task.game.d_local.register_forward_hook(lambda module, args, out: seen.append(args[0].detach().clone()))
    task.step(0, 1, lambda i: real)
    resized = to_size(real.inputs, (8, 8))
    for view in seen:  # D on real, on fake, then G's update: (x_{t-1}, x_t, input) on channels
        assert view.shape == (16, 3, 8, 8) and torch.equal(view[:, 2:], resized)
    assert task.preview().shape == (48, 1, 8, 8)  # input | output | target rows


def test_with_t_equal_to_one_the_pair_is_the_image_and_pure_noise(digits):
    """T = 1: a plain GAN on x_0 (the paper's degenerate case): every pair is (x_0, x_0 noised to ≈ N(0, I))."""
    params, task = _task(digits, timesteps=1)
    x0 = _batch(digits, params)(0).x
    t, x_prev, x_t, z, eps = task._draw(x0, 0, 0)
    assert t.eq(0).all() and torch.equal(x_prev, x0)
    assert abs(torch.corrcoef(torch.stack([x0.flatten(), x_t.flatten()]))[0, 1]) < 0.05


def test_ddgan_config_is_validated_and_its_preset_loads():
    params = load_params(REPO / "params.yaml", ["preset=ddgan"])
    assert params.model.family == "ddgan" and params.ddgan.timesteps == 4 and params.ddgan.r1_every == 15
    with pytest.raises(ConfigError, match="PacGAN packing is for unconditional GANs"):
        load_params(REPO / "params.yaml", ["preset=ddgan", "train.pack=2"])
    with pytest.raises(ConfigError, match="train.gradient_penalty: ddgan's D judges a pair at a timestep"):
        load_params(REPO / "params.yaml", ["preset=ddgan", "train.gradient_penalty=10"])
    with pytest.raises(ConfigError, match="beta_min = 20.0 must be below beta_max = 1.0"):
        load_params(REPO / "params.yaml", ["preset=ddgan", "ddgan.beta_min=20", "ddgan.beta_max=1"])
    with pytest.raises(ConfigError, match="ddgan.timesteps"):
        load_params(REPO / "params.yaml", ["preset=ddgan", "ddgan.timesteps=0"])


def test_every_family_reports_its_network_passes_per_sample():
    """evaluate's `nfe` (issue: sampling cost beside quality): one pass for a GAN, a decoder or a translator;
    ddgan its T; ddpm its steps, twice under classifier-free guidance other than 0 and 1."""
    from components.families import FAMILIES
    from conftest import exported, family_params

    for name in FAMILIES.names():
        family, g, spec = exported(name)
        options = family.sampling_options(family_params(name))
        want = {"ddgan": 4, "ddpm": 50 * 2}.get(name, 1)  # the ddpm preset: DDIM 50 at guidance 3, conditional
        assert family.network_passes(g, options) == want, name
    family, g, _ = exported("ddpm")
    assert family.network_passes(g, {"sampler": "ddim", "sample_steps": 20, "guidance": 1.0}) == 20
    assert family.network_passes(g, {"sampler": "ddpm", "sample_steps": 20, "guidance": 0.0}) == g.cfg.timesteps

