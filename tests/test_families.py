"""The class-conditional GAN, the translation families (pix2pix, CycleGAN) and the VAE: their losses,
datasets, resume, DDP and the stages they go through (prepare → evaluator → train → evaluate →
promote → pyfunc), on scikit-learn's 8×8 digits."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from components.config import ConfigError, load_params
from components.data.pairings import sobel_edges
from components.data.shards import load_rank_inputs, load_split, read_manifest
from components.families import build_gan
from components.metrics.translation import cycle_scores, image_quality, paired_scores
from components.models.vae import kl_to_standard_normal
from components.training.loop import Worker
from components.training.translation_step import FakePool, cycle_l1, paired_l1
from conftest import REPO, Recorder, free_port, tiny_params, train_in_process
from pipelines import prepare

FAMILIES = {  # name → params sections on the digits (and, for CycleGAN, mnist5k at 8×8)
    "cgan": {"model": {"conditioning": "projection"}, "train": {"matching_aware": True}},
    "cgan_concat": {"model": {"conditioning": "concat"}, "train": {"gradient_penalty": 1.0}},
    "pix2pix": {"data": {"pairs": "downsample", "pair_size": 4}, "model": {"family": "pix2pix"},
                "train": {"ema_decay": 0.9}},
    "edges": {"data": {"pairs": "edges"}, "model": {"family": "pix2pix"}, "train": {"r1": 0.5}},
    "cyclegan": {"data": {"pairs": "unpaired", "domain_b": "mnist5k"}, "model": {"family": "cyclegan"},
                 "train": {"objective": "lsgan"}, "translation": {"pool_size": 8}},
    "vae": {"model": {"family": "vae"}, "train": {"ema_decay": 0.9}},
    "ddgan": {"model": {"family": "ddgan"}, "ddgan": {"channels": [8, 16], "r1_every": 2},
              "train": {"r1": 0.5, "ema_decay": 0.9, "d_steps_per_g_step": 2}},
    "ddgan_cond": {"model": {"family": "ddgan"}, "ddgan": {"channels": [8, 16], "class_conditional": True},
                   "train": {"label_smoothing": 0.1}},
    "ddgan_sr": {"data": {"pairs": "downsample", "pair_size": 4}, "model": {"family": "ddgan"},
                 "ddgan": {"channels": [8, 16], "r1_every": 2}, "train": {"r1": 0.5, "ema_decay": 0.9}},
}
# the diffusion-noised D on each kind of GAN game; kimg small enough that T moves within a few steps
_DIFFUSION_D = {"diffusion_d": True, "diffusion_d_kimg": 0.05, "diffusion_d_t_min": 20}
FAMILIES.update({f"{name}_dd": {**FAMILIES[name], "train": {**FAMILIES[name].get("train", {}), **_DIFFUSION_D}}
                 for name in ("cgan", "pix2pix", "cyclegan")})
FAMILIES["cgan_dd"]["train"]["d_steps_per_g_step"] = 2  # 3 DDP steps = 6 D updates: T adjusts once


def family_params(root, name, **train):
    sections = {k: dict(v) for k, v in FAMILIES[name].items()}
    sections["data"] = {"source": "digits", "prepared_dir": str(root / "prepared"), "row_group_rows": 64,
                        **sections.get("data", {})}
    sections["train"] = {**sections.get("train", {}), **train}
    return tiny_params(root, **sections)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Every dataset the families train on, prepared once."""
    root = tmp_path_factory.mktemp("families")
    for name in ("cgan", "pix2pix", "edges", "cyclegan"):
        prepare.run(family_params(root, name), root)
    return root


# ------------------------------------------------------------------------------------------ config

def test_families_refuse_what_they_cannot_use():
    # the label-free params (preset=null): params.yaml's default preset, cgan, conditions D on the labels
    with pytest.raises(ConfigError, match=r"preset 'cgan' is applied over it: pick another family by its preset"):
        load_params(REPO / "params.yaml", ["model.family=vae"])
    with pytest.raises(ConfigError) as e:  # the hint is for a family set by hand, not for every error
        load_params(REPO / "params.yaml", ["train.batch_size=0"])
    assert "batch_size" in str(e.value) and "applied over it" not in str(e.value)
    with pytest.raises(ConfigError, match="pix2pix needs data.pairs: downsample or edges"):
        load_params(REPO / "params.yaml", ["preset=null", "model.family=pix2pix"])
    with pytest.raises(ConfigError, match="cyclegan needs data.pairs: unpaired"):
        load_params(REPO / "params.yaml", ["preset=null", "model.family=cyclegan", "data.pairs=edges"])
    with pytest.raises(ConfigError, match="dcgan needs data.pairs: null"):
        load_params(REPO / "params.yaml", ["preset=null", "data.pairs=edges"])
    with pytest.raises(ConfigError, match="matching_aware = true needs a class-conditional D"):
        load_params(REPO / "params.yaml", ["preset=null", "train.matching_aware=true"])
    with pytest.raises(ConfigError, match="conditioning = 'concat' is for family dcgan"):
        load_params(REPO / "params.yaml", ["preset=null", "model.family=vae", "model.conditioning=concat"])
    with pytest.raises(ConfigError, match="train.r1 = 1.0 is a GAN setting"):
        load_params(REPO / "params.yaml", ["preset=null", "model.family=vae", "train.r1=1.0"])
    with pytest.raises(ConfigError, match="label preservation needs the classifier evaluator"):
        load_params(REPO / "params.yaml", ["preset=cyclegan", "evaluator.kind=inception", "evaluator.inception_weights=w.pt"])
    with pytest.raises(ConfigError, match="unknown pairing 'blur'"):
        load_params(REPO / "params.yaml", ["preset=null", "data.pairs=blur"])
    for preset, family in [("cgan", "dcgan"), ("pix2pix_sr", "pix2pix"), ("pix2pix_edges", "pix2pix"),
                           ("cyclegan", "cyclegan"), ("vae", "vae")]:
        assert load_params(REPO / "params.yaml", [f"preset={preset}"]).model.family == family


# ------------------------------------------------------------------------------------------ data

def test_pairings_derive_inputs_from_the_targets(root):
    p = family_params(root, "pix2pix")
    prepared = p.prepared_path(root)
    manifest = read_manifest(prepared)
    assert manifest["kind"] == "pairs" and manifest["input_shape"] == [1, 4, 4] and prepared.name == "digits-downsample4"
    x, y = load_split(prepared, "train")
    small, small_y = load_rank_inputs(prepared, "train")
    assert np.array_equal(y, small_y)
    box = x.reshape(len(x), 1, 4, 2, 4, 2).astype(np.float64).mean((3, 5))  # 2×2 box average of each target
    assert np.abs(small - box).max() <= 1.0  # PIL's BOX filter, rounded to uint8

    edges = load_rank_inputs(family_params(root, "edges").prepared_path(root), "test")[0]
    assert set(np.unique(edges)) == {0, 255} and 0.05 < (edges == 255).mean() < 0.7
    assert not sobel_edges(np.full((1, 1, 8, 8), 200, np.uint8)).any()  # no gradient, no edge


def test_unpaired_domains_use_each_image_once_and_keep_their_labels(root):
    prepared = family_params(root, "cyclegan").prepared_path(root)
    manifest = read_manifest(prepared)
    assert manifest["pairing"] == "unpaired" and manifest["count"] == 1797  # the smaller domain: digits
    a = np.concatenate([load_rank_inputs(prepared, s)[0] for s in ("train", "test")])
    b = np.concatenate([load_split(prepared, s)[0] for s in ("train", "test")])
    assert a.shape[1:] == b.shape[1:] == (1, 8, 8)
    from sklearn.datasets import load_digits

    digits = np.rint(load_digits().images * (255 / 16)).astype(np.uint8).reshape(-1, 64)
    assert sorted(r.tobytes() for r in a.reshape(len(a), -1)) == sorted(r.tobytes() for r in digits)  # A: every digit once
    assert len(np.unique(b.reshape(len(b), -1), axis=0)) > 0.99 * len(b)  # B: mnist images, none drawn twice
    # the rows pair nothing: a row's two labels agree no more often than chance
    a_labels = np.concatenate([load_rank_inputs(prepared, s)[1] for s in ("train", "test")])
    b_labels = np.concatenate([load_split(prepared, s)[1] for s in ("train", "test")])
    assert (a_labels == b_labels).mean() < 0.2


# ------------------------------------------------------------------------------------------ losses

def test_matching_aware_d_ranks_the_right_label_above_a_wrong_one(root):
    params = family_params(root, "cgan", max_steps=150, epochs=10, log_every=50, checkpoint_every=150)
    rec, _ = train_in_process(params, root)
    _, d = build_gan(params.model, (1, 8, 8), num_classes=10)
    d.load_state_dict(rec.states[-1]["discriminator"])
    d.eval()
    x, y = load_split(params.prepared_path(root), "test")
    x = torch.from_numpy(x).float() / 127.5 - 1
    y = torch.from_numpy(y)
    wrong = (y + torch.randint(1, 10, y.shape, generator=torch.Generator().manual_seed(0))) % 10
    with torch.no_grad():
        right_score, wrong_score = d(x, y), d(x, wrong)
    assert (right_score > wrong_score).float().mean() > 0.8, (right_score - wrong_score).mean()


def test_pix2pix_l1_is_zero_exactly_when_g_outputs_the_target():
    y = torch.rand(4, 1, 8, 8) * 2 - 1
    assert paired_l1(y.clone(), y) == 0
    assert paired_l1(y + 0.1, y) == pytest.approx(0.1, rel=1e-5)


def test_cycle_loss_is_zero_for_identity_generators_and_positive_otherwise():
    a, b = torch.rand(4, 1, 8, 8) * 2 - 1, torch.rand(4, 1, 8, 8) * 2 - 1
    loss, fake_b, fake_a = cycle_l1(nn.Identity(), nn.Identity(), a, b)
    assert loss == 0 and torch.equal(fake_b, a) and torch.equal(fake_a, b)
    shift = lambda x: (x + 0.25).clamp(-1, 1)  # noqa: E731
    assert cycle_l1(shift, nn.Identity(), a, b)[0] > 0.1


def test_fake_pool_fills_then_returns_a_past_fake_half_of_the_time():
    pool = FakePool(10, (1,))
    rng = torch.Generator().manual_seed(0)
    first = torch.arange(10.0)[:, None]
    assert torch.equal(pool.query(first, rng), first)  # filling: the new fakes themselves, all stored
    assert torch.equal(pool.images, first)
    past = 0
    for i in range(400):
        new = torch.full((1, 1), 100.0 + i)
        past += int(pool.query(new, rng).item() != new.item())
    assert 0.43 < past / 400 < 0.57  # documented: ½
    assert (pool.images >= 100).all()  # swapped-out entries were replaced by newer fakes
    assert FakePool(0, (1,)).query(first, rng) is first  # pool_size 0: off


def test_vae_kl_matches_the_closed_form():
    mu = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    logvar = torch.tensor([[0.0, 0.0], [np.log(4.0), np.log(0.25)]])
    # KL(N(μ, σ²) ‖ N(0, 1)) = log(1/σ) + (σ² + μ²)/2 - 1/2, summed over dimensions
    expected = [0.0, (np.log(1 / 2) + (4 + 1) / 2 - 0.5) + (np.log(1 / 0.5) + (0.25 + 4) / 2 - 0.5)]
    assert torch.allclose(kl_to_standard_normal(mu, logvar), torch.tensor(expected), atol=1e-6)


def test_vae_negative_elbo_of_a_model_with_a_known_answer():
    from components.models.vae import VAE

    vae = VAE(latent_dim=6, enc_channels=8, dec_channels=8, image_shape=(1, 8, 8))
    with torch.no_grad():
        for p in vae.decoder.parameters():
            p.zero_()  # logits 0: every pixel is Bernoulli(1/2), -log p(x|z) = 64·log 2 per 8×8 image, whatever x
        vae.to_stats.weight.zero_()
        vae.to_stats.bias.copy_(torch.cat([torch.ones(6), torch.zeros(6)]))  # q(z|x) = N(1, I): KL = ½·Σ 1² = 3
    x = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert vae.negative_elbo(x, torch.Generator().manual_seed(0)) == pytest.approx(64 * np.log(2) + 3, rel=1e-6)


def test_image_quality_and_the_bicubic_baseline():
    y = torch.rand(6, 1, 8, 8) * 2 - 1
    same = image_quality(y, y)
    assert same["psnr"] == 100.0 and same["ssim"] == pytest.approx(1.0) and same["l1"] == 0
    noisy = image_quality((y + 0.2 * torch.randn(y.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1), y)
    assert noisy["psnr"] == pytest.approx(20.0, abs=1.0) and noisy["ssim"] < 0.99  # σ = 0.1 in [0, 1]: 20 dB
    small = torch.nn.functional.avg_pool2d(y, 2)
    scores = paired_scores(y, y, small)
    assert scores["psnr_gain"] == pytest.approx(100.0 - scores["bicubic_psnr"]) and scores["bicubic_psnr"] < 40


# ------------------------------------------------------------------------------------------ training

@pytest.mark.parametrize("name", ["cgan", "cgan_concat", "pix2pix", "edges", "cyclegan", "vae", "ddgan", "ddgan_cond",
                                  "ddgan_sr", "cgan_dd", "pix2pix_dd", "cyclegan_dd"])
def test_each_family_resumes_to_the_uninterrupted_run(root, name):
    straight, _ = train_in_process(family_params(root, name), root)
    first, _ = train_in_process(family_params(root, name, max_steps=3), root)
    resumed, out = train_in_process(family_params(root, name), root, resume=first.states[-1])
    assert out["started_at"] == 3 and out["step"] == 6
    a, b = straight.states[-1], resumed.states[-1]
    parts = [k for k in ("generator", "generator_ema", "discriminator", "fake_pool", "diffusion_d") if k in a]
    assert "generator" in parts and (name != "cyclegan" or "fake_pool" in parts)
    assert ("diffusion_d" in parts) == name.endswith("_dd")
    for part in parts:
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert straight.logs[-1][1] == {**resumed.logs[-1][1], "images_per_s": straight.logs[-1][1]["images_per_s"]}


# ------------------------------------------------------------------------------------------ stages

@pytest.fixture(scope="module")
def staged(root, tmp_path_factory):
    """prepare → evaluator → train (in process; Ray Train DDP: test_ddp_* below and the benchmarks) →
    evaluate → promote, once per family, each with its own store and outputs."""
    from pipelines import evaluate, evaluator, promote, train

    def run(name):
        base = tmp_path_factory.mktemp(name)
        # the VAE trains until its -ELBO is well away from an untrained one's (64·log 2) and its KL counts
        longer = {"vae": {"max_steps": 300, "epochs": 10, "lr_g": 2e-3, "log_every": 100, "checkpoint_every": 150}}
        knobs = {"max_steps": 4, "checkpoint_every": 2, **longer.get(name, {})}
        params = family_params(root, name, **knobs).with_overrides({
            "evaluator.epochs": 3, "evaluator.output_dir": str(base / "evaluator"), "train.output_dir": str(base / "train"),
            "tracking.uri": f"sqlite:///{base / 'mlflow.db'}", "scaling.storage_path": str(base / "checkpoints"),
            "evaluate.num_samples": 300, "evaluate.report": str(base / "metrics.json"),
            "evaluate.grid": str(base / "samples.png"), "promote.report": str(base / "promotion.json")})
        evaluator.run(params, root)
        summary = train.run(params, root, use_ray=False)
        return params, summary, evaluate.run(params, root), promote.run(params, root)

    cache = {}

    def once(name):  # (not cache.setdefault(name, run(name)): that would run the stages on every call)
        if name not in cache:
            cache[name] = run(name)
        return cache[name]

    return once


def _pyfunc(params, summary):
    import mlflow

    mlflow.set_tracking_uri(params.tracking.uri)
    return mlflow.pyfunc.load_model(summary["model_uri"])


def test_cgan_stages_and_pyfunc_with_labels(staged):
    params, summary, report, promoted = staged("cgan")
    assert 0 <= report["cond_accuracy"] <= 1 and report["fid"] > 0 and promoted["model_name"] == "digits-dcgan"
    model = _pyfunc(params, summary)
    out = model.predict({"labels": [3, 1, 4], "seed": 1})
    assert out.shape == (3, 1, 8, 8) and out.dtype == np.float32 and -1 <= out.min() and out.max() <= 1
    assert np.array_equal(out, model.predict({"labels": [3, 1, 4], "seed": 1}))
    assert not np.array_equal(out, model.predict({"labels": [5, 9, 2], "seed": 1}))  # the label changes the image
    assert model.predict({"num_samples": 4, "labels": 7}).shape == (4, 1, 8, 8)
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="^labels: 2 labels for num_samples = 5"):  # a 400 when served
        model.predict({"num_samples": 5, "labels": [1, 2]})


def test_ddgan_stages_report_its_cost_and_pyfunc_samples_with_labels(staged):
    params, summary, report, promoted = staged("ddgan_cond")
    assert report["nfe"] == 4 and report["seconds_per_1k_samples"] > 0 and 0 <= report["cond_accuracy"] <= 1
    assert report["fid"] > 0 and promoted["model_name"] == "digits-ddgan"
    model = _pyfunc(params, summary)
    out = model.predict({"labels": [3, 1, 4], "seed": 1})
    assert out.shape == (3, 1, 8, 8) and out.dtype == np.float32 and -1 <= out.min() and out.max() <= 1
    assert np.array_equal(out, model.predict({"labels": [3, 1, 4], "seed": 1}))
    assert not np.array_equal(out, model.predict({"labels": [5, 9, 2], "seed": 1}))
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="^steps: ddpm's sampling options; a ddgan samples in exactly the "
                                              "ddgan.timesteps steps .*; a ddgan model takes num_samples, seed, labels$"):
        model.predict({"num_samples": 2, "steps": 8})


def test_ddgan_on_pairs_translates_in_t_passes_scored_like_pix2pix(staged):
    params, summary, report, promoted = staged("ddgan_sr")
    assert report["num_samples"] == read_manifest(params.prepared_path(params.data.prepared_dir))["splits"]["test"]["count"]
    assert report["nfe"] == 4 and {"psnr", "ssim", "l1", "bicubic_psnr", "psnr_gain", "cond_accuracy"} <= set(report)
    assert report["psnr_gain"] == pytest.approx(report["psnr"] - report["bicubic_psnr"])
    assert promoted["model_name"] == "digits-downsample4-ddgan" and promoted["metric"] == "psnr"
    model = _pyfunc(params, summary)
    x = np.random.default_rng(0).uniform(-1, 1, (5, 1, 4, 4)).astype(np.float32)
    out = model.predict({"images": x})
    assert out.shape == (5, 1, 8, 8) and out.dtype == np.float32 and -1 <= out.min() and out.max() <= 1
    assert np.array_equal(out, model.predict({"images": x}))  # a translation's noise is seeded
    assert not np.array_equal(out[:1], model.predict({"images": -x[:1]}))  # the input conditions the output
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="^num_samples: not an input of this model; a ddgan model takes images$"):
        model.predict({"images": x, "num_samples": 2})
    with pytest.raises(MlflowException, match="^steps: ddpm's sampling options; .*; a ddgan model takes images$"):
        model.predict({"images": x, "steps": 8})


def test_pix2pix_stages_report_psnr_against_bicubic_and_pyfunc_translates(staged, root):
    params, summary, report, promoted = staged("pix2pix")
    assert report["num_samples"] == read_manifest(params.prepared_path(params.data.prepared_dir))["splits"]["test"]["count"]  # all test pairs
    assert {"psnr", "ssim", "l1", "bicubic_psnr", "bicubic_ssim", "psnr_gain", "cond_accuracy", "fid"} <= set(report)
    assert report["psnr_gain"] == pytest.approx(report["psnr"] - report["bicubic_psnr"])
    assert promoted["model_name"] == "digits-downsample4-pix2pix"
    model = _pyfunc(params, summary)
    x = np.random.default_rng(0).uniform(-1, 1, (5, 1, 4, 4)).astype(np.float32)
    out = model.predict({"images": x})
    assert out.shape == (5, 1, 8, 8) and out.dtype == np.float32 and -1 <= out.min() and out.max() <= 1
    u8 = np.rint((x + 1) * 127.5).astype(np.uint8)
    assert np.abs(model.predict({"images": u8}) - out).max() < 0.1  # uint8 0..255 is read as images too
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match=r"^images: expected N×1×4×4 \(the inputs\), got shape \(5, 1, 8, 8\)"):
        model.predict({"images": np.zeros((5, 1, 8, 8), np.float32)})
    with pytest.raises(MlflowException, match="^reverse: not an input of this model; a pix2pix model takes images"):
        model.predict({"images": x, "reverse": True})
    from PIL import Image

    from pipelines import sample

    png = sample.run(params, root, summary["model_uri"], 4, 0, Path(params.evaluate.grid).with_name("cli.png"))
    assert Image.open(png).size == (2 * (8 + 2) + 2, 4 * (8 + 2) + 2)  # 4 rows of input | output


class _Translator(nn.Module):
    """A stand-in CycleGAN: G (A → B) and F (B → A) as given functions."""

    def __init__(self, g, f):
        super().__init__()
        self.g, self.f, self.anchor = g, f, nn.Parameter(torch.zeros(1))  # translate() reads the device from it

    def translate(self, x, reverse=False):
        return self.f(x) if reverse else self.g(x)


class _ReadsTheLabel:
    """A classifier of images that show their class k as a flat grey level -1 + 2k/9."""

    levels = torch.linspace(-1, 1, 10)

    def logits(self, x):
        return -(x.mean((1, 2, 3))[:, None] - self.levels[None, :]).abs()


def test_label_preservation_and_cycle_error_of_known_translators():
    labels = torch.arange(10).repeat(4)  # every class 4 times
    flat = _ReadsTheLabel.levels[labels][:, None, None, None].expand(-1, 1, 8, 8).clone()
    a, b = flat, flat.flip(0)  # domain B's test images: the same classes in another order
    # a perfect translator both ways: every label kept, every cycle exact
    perfect = cycle_scores(_Translator(nn.Identity(), nn.Identity()), a, b, a.clone(), labels.flip(0), _ReadsTheLabel(), 0.9)
    assert perfect == {"label_preservation_ab": 0.9, "label_preservation_ba": 1.0, "label_preservation": 0.9,
                       "cycle_l1": 0.0}
    # G perfect, F constant (every image becomes class 0's): B → A keeps the label of class 0 only (1 in 10), and
    # both cycles end in F's constant image: |unit(-1) - unit(x)| = k/9, whose mean over the classes is 1/2
    to_zero = lambda x: torch.full_like(x, -1.0)  # noqa: E731
    collapsed = cycle_scores(_Translator(nn.Identity(), to_zero), a, b, a.clone(), labels.flip(0), _ReadsTheLabel(), 0.9)
    assert collapsed["label_preservation_ba"] == pytest.approx(0.1)
    assert collapsed["label_preservation"] == pytest.approx(0.1) and collapsed["label_preservation_ab"] == 0.9
    assert collapsed["cycle_l1"] == pytest.approx(0.5)


def test_cyclegan_stages_report_label_preservation_both_ways_and_pyfunc_translates_back(staged, root):
    from components.evaluation import open_evaluator, open_input_evaluator

    params, summary, report, _ = staged("cyclegan")
    model = _pyfunc(params, summary)
    # The report against the same quantities recomputed here from the logged model: translate the test split
    # each way and classify every output with the classifier of the domain it was translated into.
    prepared = params.prepared_path(root)
    (a, a_labels), (b, b_labels) = load_rank_inputs(prepared, "test"), load_split(prepared, "test")
    a, b = (x.astype(np.float32) / 127.5 - 1 for x in (a, b))
    classifier_b, classifier_a = open_evaluator(params, root).extractor, open_input_evaluator(params, root)[0]

    def agreement(classifier, images, labels) -> float:
        return float((classifier.logits(torch.from_numpy(images)).argmax(1).numpy() == labels).mean())

    fake_b, fake_a = model.predict({"images": a}), model.predict({"images": b, "reverse": True})
    ab, ba = agreement(classifier_b, fake_b, a_labels), agreement(classifier_a, fake_a, b_labels)
    rec_a, rec_b = model.predict({"images": fake_b, "reverse": True}), model.predict({"images": fake_a})
    cycle = 0.25 * (np.abs(rec_a - a).mean() + np.abs(rec_b - b).mean())  # mean L1 in [0, 1] units: half of [-1, 1]'s
    one = 1.5 / min(len(a), len(b))  # one image classified differently (float noise at a tie), at most
    assert report["label_preservation_ab"] == pytest.approx(ab, abs=one) and report["cond_accuracy"] == report["label_preservation_ab"]
    assert report["label_preservation_ba"] == pytest.approx(ba, abs=one)
    assert report["label_preservation"] == min(report["label_preservation_ab"], report["label_preservation_ba"])
    assert report["cycle_l1"] == pytest.approx(cycle, rel=1e-4)
    x = np.zeros((2, 1, 8, 8), np.float32) - 1
    forward, back = model.predict({"images": x}), model.predict({"images": x, "reverse": True})
    assert forward.shape == back.shape == (2, 1, 8, 8) and not np.array_equal(forward, back)  # G and F differ


def test_vae_stages_report_the_negative_elbo_and_pyfunc_samples(staged, root):
    from components.training.checkpoint import load_generator

    params, summary, report, _ = staged("vae")
    # -ELBO = E_q(z|x)[-log p(x|z)] + KL(q(z|x) ‖ N(0, I)) in nats per image, averaged over the test split, written
    # out here from the exported encoder and decoder: Bernoulli pixels with logits l, targets y = (x + 1)/2:
    # -log p(y|l) = softplus(l) - y·l; KL of N(μ, σ²) to N(0, 1) = ½(μ² + σ² - 1 - log σ²). The report draws one z
    # per image; here 64 per image give the expectation, and the spread of one draw the tolerance.
    vae = load_generator(params.train.output_dir)[0].eval()
    x, _ = load_split(params.prepared_path(root), "test")
    x = torch.from_numpy(x).float() / 127.5 - 1
    y = (x + 1) / 2
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        mu, logvar = vae.encode(x)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
        nll = torch.stack([(F.softplus(l) - y * l).sum((1, 2, 3)) for l in (
            vae.decoder(mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=gen)) for _ in range(64))])
    expected = float((nll.mean(0) + kl).mean())
    tolerance = 5 * float(nll.double().var(0).sum().sqrt()) / len(x) + 1e-3  # 5 std errors of the one-draw mean
    # the model is trained enough to tell: far from the untrained 64·log 2, and the KL alone beyond the tolerance
    assert expected < 64 * np.log(2) - 5 and kl.mean() > 3 * tolerance, (expected, float(kl.mean()), tolerance)
    assert report["nelbo"] == pytest.approx(expected, abs=tolerance), (report["nelbo"], expected, tolerance)
    assert report["fid"] > 0
    model = _pyfunc(params, summary)
    out = model.predict({"num_samples": 6, "seed": 2})
    assert out.shape == (6, 1, 8, 8) and np.array_equal(out, model.predict({"num_samples": 6, "seed": 2}))
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="unconditional"):  # a 400 when served
        model.predict({"num_samples": 2, "labels": [1, 2]})
    with pytest.raises(MlflowException, match="only translators"):
        model.predict({"images": np.zeros((1, 1, 8, 8), np.float32)})


# ------------------------------------------------------------------------------------------ DDP

def _ddp_rank(rank: int, port: int, runs: list[tuple[str, str, str]], out: str) -> None:
    """One DDP rank (gloo), as a Ray Train worker runs it; trains each (name, params, prepared dir) in
    turn and saves its networks."""
    import torch.distributed as dist

    from components.config import Params
    from components.training import loop

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    build = loop.build_task
    try:
        for name, params_json, prepared in runs:
            built = {}
            loop.build_task = lambda *a: built.setdefault("task", build(*a))  # noqa: B023
            loop.train_model(Params.model_validate_json(params_json), Path(prepared), Worker(rank, 2), Recorder())
            nets = built["task"].nets
            torch.save({k: getattr(m, "module", m).state_dict() for k, m in nets.items() if k != "fake_pool"},
                       f"{out}/{name}-rank{rank}.pt")
    finally:
        loop.build_task = build
        dist.destroy_process_group()


DDP_FAMILIES = ["cgan", "pix2pix", "cyclegan", "vae", "ddpm", "ddgan", "ddgan_sr", "cgan_dd"]


def test_ddp_keeps_both_ranks_identical_for_every_family(root, tmp_path):
    """Each rank trains on its own half of the data; only DDP's gradient all-reduce keeps the weights
    equal. (Ray Train runs the same code in its workers: benchmarks/families_mnist5k.sh, 2 workers.)"""
    import torch.multiprocessing as mp

    runs = {}
    for name in DDP_FAMILIES:
        params = (family_params(root, name) if name != "ddpm" else tiny_params(
            root, model={"family": "ddpm"}, diffusion={"channels": [8, 16], "timesteps": 50}))
        runs[name] = params.with_overrides({"train.max_steps": 3, "train.batch_size": 16})
    port = free_port()
    jobs = [(n, p.model_dump_json(), str(p.prepared_path(root))) for n, p in runs.items()]
    mp.start_processes(_ddp_rank, args=(port, jobs, str(tmp_path)), nprocs=2, start_method="spawn")
    for name, params in runs.items():
        r0, r1 = (torch.load(tmp_path / f"{name}-rank{r}.pt", weights_only=True) for r in (0, 1))
        for net in r0:
            for key, value in r0[net].items():
                # BatchNorm statistics are per rank, and so is the diffusion-noised D's vote between adjustments
                if value.is_floating_point() and "running" not in key and key != "vote":
                    assert torch.equal(value, r1[net][key]), (name, net, key)
        if "diffusion_d" in r0:  # the adjustment used the vote of both ranks: same r_d, same T
            assert r0["diffusion_d"]["updates"].item() == 6 and r0["diffusion_d"]["r_d"].item() != 0
        initial = build_initial(params, root)
        moved = [k for k, v in r0["generator"].items() if v.is_floating_point() and not torch.equal(v, initial[k])]
        assert moved, f"{name}: the generator did not train"


def build_initial(params, root) -> dict:
    from components.data.shards import read_manifest
    from components.training.loop import build_task

    return build_task(params, read_manifest(params.prepared_path(root)), Worker(), None).nets["generator"].state_dict()


def test_sweeps_take_each_familys_keys_and_metrics(staged, root):
    from components.evaluation import QuickScorer
    from components.evaluation import metric_and_mode
    from components.training.checkpoint import load_generator

    space = {"translation.lambda_l1": {"choice": [10.0, 100.0]}, "translation.pool_size": {"choice": [0, 50]},
             "vae.beta": {"choice": [0.5, 1.0]}, "model.conditioning": {"choice": ["concat", "projection"]},
             "train.matching_aware": {"choice": [False, True]}}
    tuned = load_params(REPO / "params.yaml", [f"tune.space={space}"])
    assert set(tuned.tune.space) == set(space)
    with pytest.raises(ConfigError, match="translation has no key 'lambda_l2'"):
        load_params(REPO / "params.yaml", ["tune.space={translation.lambda_l2: {choice: [1.0]}}"])
    # each family's default sweep metric and direction, and what a trial reports at its checkpoints
    expected = {"pix2pix": ("psnr", "max", "ssim"), "cyclegan": ("label_preservation", "max", "cycle_l1"),
                "vae": ("fid", "min", "nelbo"), "cgan": ("fid", "min", "cond_accuracy")}
    for name, (metric, mode, extra) in expected.items():
        params = staged(name)[0]
        assert metric_and_mode(params, "image") == (metric, mode)
        scores = QuickScorer(params, root, 200)(load_generator(params.train.output_dir)[0])
        assert {metric, extra} <= set(scores), name
    with pytest.raises(ConfigError, match="tune.metric = 'psnr' is not reported for model.family = 'vae'"):
        metric_and_mode(staged("vae")[0].with_overrides({"tune.metric": "psnr"}), "image")
