"""The GAN game's knobs inside the real training loop: D:G ratios (counted optimizer steps), EMA,
PacGAN packing, regularisers and instance noise, and exact resume with all of them on."""
from __future__ import annotations

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from components.families import build_gan
from components.models import pack_batch, packed_shape
from components.training import checkpoint as ckpt
from components.training.loop import Worker, train_model
from conftest import Recorder, tiny_params, train_in_process


def _count_optimizer_steps(params, root) -> list[int]:
    counts: dict[int, int] = {}

    def hook(opt, args, kwargs):
        counts[id(opt)] = counts.get(id(opt), 0) + 1

    handle = register_optimizer_step_post_hook(hook)
    try:
        train_model(params, params.prepared_path(root), Worker(), Recorder())
    finally:
        handle.remove()
    return sorted(counts.values())


@pytest.mark.parametrize("d_steps, g_steps", [(1, 1), (3, 1), (1, 2)])
def test_step_ratio_performs_exactly_k_updates_per_update_of_the_other(run_root, d_steps, g_steps):
    params = tiny_params(run_root, train={"max_steps": 4, "d_steps_per_g_step": d_steps, "g_steps_per_d_step": g_steps})
    counts = _count_optimizer_steps(params, run_root)
    # two optimizers; 4 game steps of d_steps D updates and g_steps G updates each
    assert counts == sorted([4 * d_steps, 4 * g_steps])


def test_each_d_step_of_a_ratio_sees_a_fresh_batch_and_the_epoch_shrinks(run_root):
    from components.training.loop import plan

    one = plan(tiny_params(run_root), run_root / "prepared" / "digits", 1)
    five = plan(tiny_params(run_root, train={"d_steps_per_g_step": 5}), run_root / "prepared" / "digits", 1)
    assert five.steps_per_epoch == one.steps_per_epoch // 5


def test_ema_weights_differ_from_raw_and_are_what_is_exported(run_root, tmp_path):
    params = tiny_params(run_root, train={"ema_decay": 0.9})
    rec, _ = train_in_process(params, run_root)
    state = rec.states[-1]
    raw, ema = state["generator"], state["generator_ema"]
    assert any(not torch.equal(raw[k], ema[k]) for k in raw if raw[k].is_floating_point())
    ckpt.write_generator(state, tmp_path)
    g, spec = ckpt.load_generator(tmp_path)
    assert spec["ema"] is True
    for k, v in g.state_dict().items():
        assert torch.equal(v, ema[k]), k


def test_resume_with_every_knob_on_reproduces_the_uninterrupted_run(run_root):
    # (instance noise is left out: its decay follows the planned length, which the truncated first run changes)
    knobs = {"ema_decay": 0.9, "pack": 2, "r1": 0.1, "label_smoothing": 0.1,
             "d_steps_per_g_step": 2}
    straight, _ = train_in_process(tiny_params(run_root, train=knobs), run_root)
    first, _ = train_in_process(tiny_params(run_root, train={**knobs, "max_steps": 3}), run_root)
    resumed, out = train_in_process(tiny_params(run_root, train=knobs), run_root, resume=first.states[-1])
    assert out["started_at"] == 3
    a, b = straight.states[-1], resumed.states[-1]
    for part in ("generator", "generator_ema", "discriminator"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)


def test_resuming_an_ema_checkpoint_without_ema_is_refused(run_root):
    rec, _ = train_in_process(tiny_params(run_root, train={"ema_decay": 0.9, "max_steps": 3}), run_root)
    with pytest.raises(ValueError, match="EMA generator"):
        train_in_process(tiny_params(run_root), run_root, resume=rec.states[-1])


@pytest.mark.parametrize("objective, extra", [
    ("wasserstein", {"gradient_penalty": 10.0, "d_steps_per_g_step": 2}),
    ("wasserstein", {"weight_clip": 0.01}),
    ("hinge", {"spectral_norm": True}),
    ("lsgan", {"label_smoothing": 0.1}),
    ("kl", {"r1": 1.0}),
])
def test_objectives_and_regularisers_train_end_to_end(run_root, objective, extra):
    rec, out = train_in_process(tiny_params(run_root, train={"objective": objective, **extra}), run_root)
    assert out["step"] == 6 and all(torch.isfinite(torch.tensor(m["d_loss"])) for _, m in rec.logs)
    if "weight_clip" in extra:
        d_state = rec.states[-1]["discriminator"]
        assert max(v.abs().max().item() for k, v in d_state.items() if "weight" in k or "bias" in k) <= 0.01
    if "gradient_penalty" in extra or "r1" in extra:
        assert all(m["d_penalty"] > 0 for _, m in rec.logs)


def test_pacgan_packs_consecutive_samples_into_one_d_input():
    x = torch.arange(12.0).reshape(6, 2)  # six 2-D points
    packed = pack_batch(x, 3)
    assert packed.shape == (2, 6) and packed[0].tolist() == [0, 1, 2, 3, 4, 5]
    assert packed_shape((1, 8, 8), 4) == (4, 8, 8)
    from components.config import ModelConfig

    _, d = build_gan(ModelConfig(family="mlp", latent_dim=2, g_channels=8, d_channels=8), (2,), pack=3)
    assert d(packed).shape == (2,)


def test_a_packed_d_takes_m_samples_per_input_through_a_first_layer_m_times_wider():
    """PacGAN as its authors' code: m samples concatenated along channels into one D input, D's first layer
    widened to m × channels, and one logit per packed input."""
    from components.config import ModelConfig

    cfg = ModelConfig(family="dcgan", latent_dim=8, g_channels=8, d_channels=8)
    for m in (1, 2, 3, 4):
        g, d = build_gan(cfg, (3, 28, 28), pack=m)
        first = next(layer for layer in d.modules() if isinstance(layer, torch.nn.Conv2d))
        assert first.in_channels == 3 * m and g(torch.zeros(2, 8)).shape == (2, 3, 28, 28)  # G is unchanged
        packed = pack_batch(torch.randn(5 * m, 3, 28, 28), m)
        assert packed.shape == (5, 3 * m, 28, 28) and d(packed).shape == (5,)


@pytest.mark.parametrize("pack", [1, 2, 3])
def test_a_packed_step_draws_pack_times_batch_samples_from_g_and_from_the_data(run_root, monkeypatch, pack):
    """D judges batch_size packed inputs: each step takes pack × batch_size real rows and as many fakes, and
    an epoch (one pass over the data) has pack times fewer steps."""
    from components.training import gan_step
    from components.training.loop import plan

    seen = []
    judge = gan_step.Adversary.judge

    def spy(self, d, x, *args, **kwargs):
        out = judge(self, d, x, *args, **kwargs)
        seen.append((x.shape[0], out[0].shape[0]))
        return out

    monkeypatch.setattr(gan_step.Adversary, "judge", spy)
    params = tiny_params(run_root, train={"pack": pack, "batch_size": 16, "max_steps": 2})
    train_in_process(params, run_root)
    # per step: D's real and fake forwards, then G's: each pack × 16 samples in, 16 packed judgements out
    assert seen == [(16 * pack, 16)] * 6
    one = plan(tiny_params(run_root, train={"batch_size": 16}), params.prepared_path(run_root), 1)
    assert plan(params, params.prepared_path(run_root), 1).steps_per_epoch == one.steps_per_epoch // pack


def test_instance_noise_decays_linearly_to_zero_and_reaches_d():
    from components.config import TrainConfig
    from components.training.gan_step import Adversary, instance_noise_std

    cfg = TrainConfig(instance_noise=0.2)
    assert [instance_noise_std(cfg, s, 100) for s in (0, 50, 100)] == pytest.approx([0.2, 0.1, 0.0])
    identity = torch.nn.Identity()
    adversary = Adversary(cfg)
    x = torch.zeros(10_000, 2)
    out, _ = adversary.judge(identity, x, 0.2, torch.Generator().manual_seed(0))
    assert out.std().item() == pytest.approx(0.2, rel=0.05)
    assert torch.equal(adversary.judge(identity, x, 0.0, torch.Generator())[0], x)


def test_linear_lr_schedule_decays_both_learning_rates_to_zero():
    from components.config import TrainConfig
    from components.training.loop import set_learning_rates

    cfg = TrainConfig(lr_g=1e-3, lr_d=4e-3, lr_schedule="linear")
    opt_g = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=9.0)
    opt_d = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=9.0)
    for step, (g, d) in {0: (1e-3, 4e-3), 75: (2.5e-4, 1e-3), 99: (1e-5, 4e-5)}.items():
        set_learning_rates(cfg, step, 100, (opt_g, cfg.lr_g), (opt_d, cfg.lr_d))
        assert (opt_g.param_groups[0]["lr"], opt_d.param_groups[0]["lr"]) == pytest.approx((g, d))
