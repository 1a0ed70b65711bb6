"""The diffusion family (model.family: ddpm): the forward process against its closed form, training,
samplers, classifier-free guidance, EMA, resume, and the pyfunc model."""
from __future__ import annotations

import math

import mlflow
import numpy as np
import pytest
import torch

from components.config import ConfigError, load_params
from components.diffusion import process
from components.diffusion.reverse import guided_prediction
from components.diffusion.settings import DiffusionConfig
from components.families import build_diffusion
from components.metrics.scores import conditional_accuracy
from components.training import checkpoint as ckpt
from conftest import REPO, tiny_params, train_in_process

TINY = {"channels": [8, 16], "timesteps": 100, "sample_steps": 5}


def ddpm_params(root, diffusion=None, **train):
    return tiny_params(root, model={"family": "ddpm"}, diffusion={**TINY, **(diffusion or {})},
                       train={"ema_decay": 0.9, "sample_grid": 4, "lr_g": 2e-3, **train})


def _closed_form_alpha_bar(cfg: DiffusionConfig) -> np.ndarray:
    """ᾱ_t written out from the papers, independently of diffusers."""
    T = cfg.timesteps
    if cfg.beta_schedule == "linear":  # Ho et al. 2020
        betas = np.linspace(cfg.beta_start, cfg.beta_end, T, dtype=np.float64)
    else:  # Nichol & Dhariwal 2021, s = 0.008, β ≤ 0.999
        f = lambda t: math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = np.array([min(1 - f(i + 1) / f(i), 0.999) for i in range(T)])
    return np.cumprod(1.0 - betas)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_forward_process_matches_the_closed_form_mean_and_variance(schedule):
    cfg = DiffusionConfig(beta_schedule=schedule)
    sched = process.noise_scheduler(cfg)
    abar = _closed_form_alpha_bar(cfg)
    assert np.allclose(process.alphas_cumprod(cfg).double().numpy(), abar, rtol=1e-4, atol=1e-6)
    x0 = torch.linspace(-1, 1, 16).reshape(1, 1, 4, 4)
    n = 20_000
    gen = torch.Generator().manual_seed(0)
    for t in (0, 250, 600, 999):
        noise = torch.randn((n, 1, 4, 4), generator=gen)
        xt = process.q_sample(sched, x0.expand(n, -1, -1, -1), torch.full((n,), t), noise).double()
        mean, var = xt.mean(0), xt.var(0)
        assert torch.allclose(mean, math.sqrt(abar[t]) * x0.double()[0], atol=0.03), t
        assert torch.allclose(var, torch.full_like(var, 1 - abar[t]), rtol=0.05, atol=2e-4), t


def test_v_target_is_the_velocity_of_salimans_and_ho():
    cfg = DiffusionConfig(prediction="v")
    sched = process.noise_scheduler(cfg)
    x0, eps = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    t = torch.tensor([5, 400, 990])
    abar = process.alphas_cumprod(cfg)[t].reshape(-1, 1, 1, 1)
    expected = abar.sqrt() * eps - (1 - abar).sqrt() * x0
    assert torch.allclose(process.target(sched, x0, t, eps), expected, atol=1e-5)
    assert torch.equal(process.target(process.noise_scheduler(DiffusionConfig()), x0, t, eps), eps)


def test_training_loss_decreases_and_ema_is_what_samples(run_root):
    params = ddpm_params(run_root, max_steps=40, log_every=5)
    rec, out = train_in_process(params, run_root)
    losses = [m["loss"] for _, m in rec.logs]
    assert len(losses) == 8 and all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < 0.7 * np.mean(losses[:2]), losses
    state = rec.states[-1]
    raw, ema = state["generator"], state["generator_ema"]
    assert any(not torch.equal(raw[k], ema[k]) for k in raw), "EMA weights must differ from the raw weights"
    sampler = ckpt.generator_from_state(state)  # what export, evaluate and pyfunc use
    for k, v in sampler.state_dict().items():
        assert torch.equal(v, ema[k]), k
    assert rec.grids and rec.grids[-1][1].dtype.name == "uint8"


def test_resume_keeps_the_ema_and_reproduces_the_uninterrupted_run(run_root):
    straight, _ = train_in_process(ddpm_params(run_root), run_root)
    first, _ = train_in_process(ddpm_params(run_root, max_steps=3), run_root)
    resumed, out = train_in_process(ddpm_params(run_root), run_root, resume=first.states[-1])
    assert out["started_at"] == 3
    a, b = straight.states[-1], resumed.states[-1]
    for part in ("generator", "generator_ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)


@pytest.fixture(scope="module")
def conditional_model():
    torch.manual_seed(0)
    model = build_diffusion(DiffusionConfig(**TINY), (1, 8, 8), num_classes=10)
    with torch.no_grad():  # a non-trivial class embedding, so conditional and unconditional differ
        model.unet.class_embedding.weight.normal_(0, 1)
    return model.eval()


def test_guidance_zero_is_the_unconditional_model_and_one_the_conditional(conditional_model):
    m = conditional_model
    x, t = torch.randn(4, 1, 8, 8), torch.tensor(37)
    labels = torch.tensor([0, 3, 7, 9])
    with torch.no_grad():
        uncond = m(x, t, torch.full((4,), m.null_label))
        cond = m(x, t, labels)
        assert not torch.allclose(uncond, cond)
        assert torch.equal(guided_prediction(m, x, t, labels, 0.0), uncond)
        assert torch.equal(guided_prediction(m, x, t, labels, 1.0), cond)
        assert torch.allclose(guided_prediction(m, x, t, labels, 3.0), uncond + 3 * (cond - uncond), atol=1e-5)


def test_ddim_eta_zero_is_deterministic_and_ddpm_is_stochastic(conditional_model):
    m = conditional_model

    def draw(seed, **kw):
        return m.sample(6, torch.Generator().manual_seed(seed), **kw)

    a, b, c = draw(1, eta=0.0), draw(1, eta=0.0), draw(2, eta=0.0)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (6, 1, 8, 8) and a.min() >= -1 and a.max() <= 1
    # the same x_T: DDIM η = 0 adds no noise, η = 1 and DDPM do (and follow their own draws)
    rng = torch.Generator().manual_seed(1)
    torch.randn((6, 1, 8, 8), generator=rng)
    assert not torch.equal(draw(1, eta=1.0), a)
    assert torch.equal(draw(1, sampler="ddpm"), draw(1, sampler="ddpm"))
    with pytest.raises(ValueError, match=r"labels must be 6 class indices in \[0, 9\]"):
        m.sample(6, torch.Generator(), labels=torch.full((6,), 10))


def test_conditional_accuracy_counts_agreement_with_the_requested_labels():
    logits = torch.eye(4)[[0, 1, 2, 3, 0]]
    assert conditional_accuracy(logits, torch.tensor([0, 1, 2, 0, 0])) == pytest.approx(0.8)


def test_gan_only_settings_are_refused_for_a_diffusion_model(tmp_path):
    import yaml

    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump({"model": {"family": "ddpm"}, "train": {"gradient_penalty": 10.0}}))
    with pytest.raises(ConfigError, match="train.gradient_penalty = 10.0 is a GAN setting"):
        load_params(p)
    p.write_text(yaml.safe_dump({"diffusion": {"channels": [12, 32]}}))
    with pytest.raises(ConfigError, match="multiple of 8"):
        load_params(p)
    params = load_params(REPO / "params.yaml", ["preset=ddpm"])
    assert params.model.family == "ddpm" and params.train.ema_decay == 0.999


def test_tune_space_takes_diffusion_keys(tmp_path):
    params = load_params(REPO / "params.yaml", [
        "preset=ddpm", "tune.space={train.lr_g: {loguniform: [1.0e-4, 1.0e-3]}, train.ema_decay: {choice: [0.99, 0.999]},"
        " diffusion.guidance: {choice: [1.0, 3.0]}, diffusion.sample_steps: {choice: [20, 50]}}"])
    assert set(params.tune.space) == {"train.lr_g", "train.ema_decay", "diffusion.guidance", "diffusion.sample_steps"}
    with pytest.raises(ConfigError, match="diffusion has no key 'guidanse'"):
        load_params(REPO / "params.yaml", ["tune.space={diffusion.guidanse: {choice: [1.0]}}"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits_root):
    """The train stage in process (a diffusion model on Ray Train: the diffusion sweep of test_tune_sweep.py;
    2-worker DDP: `bash benchmarks/diffusion_mnist5k.sh`): class-conditional, EMA, tracked and logged."""
    root = tmp_path_factory.mktemp("ddpm")
    (root / "prepared").symlink_to(digits_root / "prepared")
    params = ddpm_params(root, max_steps=4, checkpoint_every=2)
    params = params.with_overrides({
        "evaluator.epochs": 6, "evaluator.output_dir": str(root / "evaluator"),
        "evaluate.num_samples": 300, "evaluate.report": str(root / "reports/metrics.json"),
        "evaluate.grid": str(root / "reports/samples.png"), "promote.report": str(root / "reports/promotion.json")})
    from pipelines import train

    return params, train.run(params, root, use_ray=False), root


def test_train_stage_exports_the_ema_model_and_tracks_it(trained):
    params, summary, _ = trained
    assert summary["steps"] == 4
    run = mlflow.tracking.MlflowClient(params.tracking.uri).get_run(summary["mlflow_run_id"])
    assert run.data.params["model.family"] == "ddpm" and run.data.params["diffusion.guidance"] == "1.0"
    assert {"loss", "images_per_s"} <= set(run.data.metrics)
    g, spec = ckpt.load_generator(params.train.output_dir)
    assert spec["ema"] and spec["diffusion"]["channels"] == [8, 16] and g.conditional


def test_pyfunc_samples_with_labels_steps_and_guidance(trained):
    params, summary, _ = trained
    mlflow.set_tracking_uri(params.tracking.uri)
    model = mlflow.pyfunc.load_model(summary["model_uri"])
    a = model.predict({"num_samples": 5, "seed": 3, "labels": [1, 2, 3, 4, 5], "steps": 4, "guidance": 2.0})
    assert a.shape == (5, 1, 8, 8) and a.dtype == np.float32 and a.min() >= -1 and a.max() <= 1
    assert np.array_equal(a, model.predict({"num_samples": 5, "seed": 3, "labels": [1, 2, 3, 4, 5], "steps": 4,
                                            "guidance": 2.0}))
    assert model.predict({"labels": [7, 7, 7], "steps": 3}).shape == (3, 1, 8, 8)
    assert model.predict({"num_samples": 4, "labels": 7, "steps": 3}).shape == (4, 1, 8, 8)
    assert not np.array_equal(a, model.predict({"num_samples": 5, "seed": 3, "labels": [1, 2, 3, 4, 5], "steps": 4,
                                                "guidance": 0.0}))
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="^labels: 2 labels for num_samples = 5"):  # a 400 when served
        model.predict({"num_samples": 5, "labels": [1, 2]})


def test_evaluate_scores_the_requested_labels_and_promote_registers_it(trained):
    from pipelines import evaluate, evaluator, promote
    from components.evaluation import QuickScorer

    params, summary, root = trained
    evaluator.run(params, root)
    report = evaluate.run(params, root)
    assert 0.0 <= report["cond_accuracy"] <= 1.0 and report["fid"] > 0 and report["sampling_seconds"] > 0
    assert report["sampling"] == {"sampler": "ddim", "sample_steps": 5, "eta": 1.0, "guidance": 1.0}
    # the same model, sampled with guidance 0 (unconditional): different samples, same evaluator
    other = evaluate.run(params.with_overrides({"diffusion.guidance": 0.0}), root)
    assert other["fid"] != report["fid"] and other["evaluator_hash"] == report["evaluator_hash"]
    # an architecture change after training is refused, a sampling change is not
    with pytest.raises(evaluate.EvaluateError, match=r"diffusion.timesteps trained with 100 but configured 200"):
        evaluate.run(params.with_overrides({"diffusion.timesteps": 200}), root)
    quick = QuickScorer(params, root, 300)(ckpt.load_generator(params.train.output_dir)[0])
    assert "cond_accuracy" in quick and quick["fid"] > 0  # what a sweep trial reports
    pr = promote.run(params, root)
    assert pr["promoted"] and pr["model_name"] == "digits-ddpm"
