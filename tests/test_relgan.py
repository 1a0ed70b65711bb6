"""RelGAN (family `relgan`): the Gumbel-softmax relaxation against the softmax it relaxes, the relativistic loss
against its formula, the β schedule, bit-exact resume in both phases, two-rank DDP, the stages (evaluator →
train → evaluate → promote → pyfunc) and the refusals. The oracle data and the training helpers are
tests/test_seqgan.py's."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from components.config import ConfigError, load_params
from components.data.shards import load_split
from components.models.relgan import Discriminator, Generator, gumbel
from components.training.relgan_step import inverse_temperature, relativistic_losses
from conftest import REPO, tiny_params
from test_seqgan import assert_two_ranks_agree, root, seqgan_params, train_in_process  # noqa: F401 (root: a fixture)


def relgan_params(root, **sections):
    """The tiny oracle of test_seqgan; 3 MLE steps, then 3 adversarial steps."""
    relgan = {"g_embed": 8, "mem_slots": 2, "heads": 2, "head_size": 4, "d_embed": 8, "num_rep": 4,
              "d_widths": [2, 3], "d_filters": [6, 6], "pretrain_steps": 3, "adversarial_steps": 3, "beta_max": 10.0}
    train = {"epochs": 1, "max_steps": None, "batch_size": 16, "log_every": 2, "checkpoint_every": 2,
             "lr_g": 1e-3, "lr_d": 1e-3}
    return tiny_params(root, model={"family": "relgan"}, data=seqgan_params(root).data.model_dump(mode="json"), **{
        "relgan": {**relgan, **sections.pop("relgan", {})}, "train": {**train, **sections.pop("train", {})},
        **sections})


# ------------------------------------------------------------------------------------------ the relaxation

def test_the_gumbel_argmax_is_a_draw_from_gs_softmax_and_the_relaxation_carries_ds_gradient_to_g():
    torch.manual_seed(0)
    v, n = 6, 40000
    g = Generator(v, 2, 4, 1, 2, 3)
    tokens, soft = g(noise=gumbel((n, 2, v), torch.Generator().manual_seed(1)), beta=1.0)
    with torch.no_grad():  # p(y_1 = k) under G, from teacher forcing
        p = torch.stack([g(torch.tensor([[k, 0]]))[0, 0].exp() for k in range(v)]).double()
    counts = torch.bincount(tokens[:, 0], minlength=v).double()
    chi2 = float(((counts - n * p) ** 2 / (n * p)).sum())
    assert chi2 < 20.5  # χ² with 5 degrees of freedom, p = 0.001
    assert p.max() / p.min() > 1.2  # far enough from uniform that a wrong draw would fail
    assert torch.equal(soft.argmax(-1), tokens) and torch.allclose(soft.sum(-1), torch.ones(n, 2))
    # a sharper relaxation is closer to the one-hot of the same draw
    sharp = g(noise=gumbel((n, 2, v), torch.Generator().manual_seed(1)), beta=50.0)[1]
    assert (sharp.amax(-1) > soft.amax(-1)).float().mean() > 0.99

    d = Discriminator(v, 2, 4, 2, [1, 2], [3, 3], 0.0)
    tokens, soft = g(noise=gumbel((8, 2, v), torch.Generator().manual_seed(2)), beta=2.0)
    d.requires_grad_(False)
    _, loss = relativistic_losses(d(torch.randint(0, v, (8, 2))), d(soft))
    loss.backward()
    missing = [name for name, w in g.named_parameters() if w.grad is None or not w.grad.abs().sum() > 0]
    assert not missing, missing  # D's verdict reaches every weight of G through the soft one-hots
    assert all(w.grad is None for w in d.parameters())


def test_d_reads_token_ids_as_their_one_hots():
    torch.manual_seed(0)
    d = Discriminator(7, 5, 6, 3, [2, 3], [4, 4], 0.0).eval()
    ids = torch.randint(0, 7, (4, 5))
    assert torch.allclose(d(ids), d(torch.nn.functional.one_hot(ids, 7).float()), atol=1e-6)
    assert d(ids, ids).shape == (8, 3)  # one logit per representation


def test_the_relativistic_losses_are_their_formulas():
    r = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    f = torch.tensor([[1.0, 0.0], [-2.0, 3.0]])
    d_loss, g_loss = relativistic_losses(r, f)
    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731
    pairs = [(2.0, 1.0), (-1.0, 0.0), (0.5, -2.0), (3.0, 3.0)]
    assert float(d_loss) == pytest.approx(sum(softplus(-(a - b)) for a, b in pairs) / 4, rel=1e-6)
    assert float(g_loss) == pytest.approx(sum(softplus(-(b - a)) for a, b in pairs) / 4, rel=1e-6)
    # D's loss is the BCE of σ(r − f) against "real", G's of σ(f − r)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert torch.allclose(d_loss, bce(r - f, torch.ones_like(r)))
    assert torch.allclose(g_loss, bce(f - r, torch.ones_like(r)))


def test_beta_rises_exponentially_from_one_to_beta_max(root):
    assert inverse_temperature(0, 300, 100.0) == 1.0
    assert inverse_temperature(150, 300, 100.0) == pytest.approx(10.0)
    assert inverse_temperature(300, 300, 1000.0) == pytest.approx(1000.0)
    rec, _ = train_in_process(relgan_params(root, train={"log_every": 1}), root)
    logged = {step: m["beta"] for step, m in rec.logs if "beta" in m}
    assert logged == pytest.approx({4: 1.0, 5: 10 ** (1 / 3), 6: 10 ** (2 / 3)})  # steps 3, 4, 5 of 0..5


# ------------------------------------------------------------------------------------------ training

def _flat(state):
    return [state[k] for k in sorted(state)] if "state" not in state else \
        [t for st in state["state"].values() for t in st.values()]


@pytest.mark.parametrize("stop", [2, 4], ids=["mle_phase", "adversarial_phase"])
def test_resume_is_bit_exact_from_either_phase(root, stop):
    params = relgan_params(root, train={"checkpoint_every": 1, "d_steps_per_g_step": 2})
    straight, out = train_in_process(params, root)
    assert out["step"] == 6
    resumed, out = train_in_process(params, root, resume=straight.states[stop - 1])
    assert out["started_at"] == stop
    for part in ("generator", "discriminator", "opt_mle", "opt_g", "opt_d"):
        for x, y in zip(_flat(straight.states[-1][part]), _flat(resumed.states[-1][part]), strict=True):
            assert torch.equal(torch.as_tensor(x), torch.as_tensor(y)), part
    assert straight.logs[-1][1]["g_loss"] == resumed.logs[-1][1]["g_loss"] > 0
    assert straight.grids[-1][1] == resumed.grids[-1][1] and straight.grids[-1][1].count("\n") == 16
    # the MLE phase reads no adversarial key: another β_max starts the adversarial phase from the same G
    other, _ = train_in_process(relgan_params(root, train={"checkpoint_every": 1, "d_steps_per_g_step": 2},
                                              relgan={"beta_max": 1000.0}), root)
    after_mle = straight.states[2]["generator"]  # the checkpoint of step 3
    assert all(torch.equal(other.states[2]["generator"][k], after_mle[k]) for k in after_mle)
    assert not torch.equal(other.states[-1]["generator"]["out.weight"], straight.states[-1]["generator"]["out.weight"])


def test_two_rank_ddp_leaves_identical_weights_in_both_phases(root, tmp_path):
    assert_two_ranks_agree(relgan_params(root), root, tmp_path, {"generator", "discriminator"})


# ------------------------------------------------------------------------------------------ stages

@pytest.fixture(scope="module")
def staged(root, tmp_path_factory):
    """The oracle through the stages; "printed": what evaluate printed."""
    import contextlib
    import io

    from pipelines import evaluate, evaluator, promote, train

    base = tmp_path_factory.mktemp("relgan_stages")
    params = relgan_params(root).with_overrides({
        "evaluator.output_dir": str(base / "evaluator"), "train.output_dir": str(base / "train"),
        "tracking.uri": f"sqlite:///{base / 'mlflow.db'}", "scaling.storage_path": str(base / "checkpoints"),
        "evaluate.num_samples": 200, "evaluate.temperatures": [0.5, 1.0], "evaluate.report": str(base / "metrics.json"),
        "evaluate.grid": str(base / "samples.png"), "evaluate.headline": str(base / "headline.json"),
        "promote.report": str(base / "promotion.json")})
    evaluator.run(params, root)
    summary = train.run(params, root, use_ray=False)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        report = evaluate.run(params, root)
    return {"params": params, "summary": summary, "report": report, "promoted": promote.run(params, root),
            "printed": out.getvalue()}


def test_a_relgan_run_is_evaluated_promoted_and_prints_the_text_metrics(staged, root):
    from components.training.checkpoint import load_generator

    params, report, printed = staged["params"], staged["report"], staged["printed"]
    (line,) = [ln for ln in printed.splitlines() if ln.startswith("evaluate: ")]
    for key in ("nll_oracle", "nll_test", "bleu2", "self_bleu5"):
        assert np.isfinite(report[key]) and f"{key}={report[key]:.4g}" in line, key
    assert report["floor_nll_oracle"] < report["nll_oracle"]
    g, spec = load_generator(params.train.output_dir)
    assert spec["model"]["family"] == "relgan" and spec["relgan"]["head_size"] == 4
    test = torch.from_numpy(load_split(params.prepared_path(root), "test")[0]).long()
    with torch.no_grad():
        assert report["nll_test"] == pytest.approx(float(-g(test).double().mean()), rel=1e-9)
    assert staged["promoted"]["metric"] == "nll_oracle" and staged["promoted"]["model_name"].endswith("relgan")


def test_the_relgan_pyfunc_returns_the_sentences_it_sampled(staged):
    import mlflow
    from mlflow.exceptions import MlflowException

    params, summary = staged["params"], staged["summary"]
    mlflow.set_tracking_uri(params.tracking.uri)
    model = mlflow.pyfunc.load_model(summary["model_uri"])
    out = model.predict({"num_samples": 5, "seed": 3})
    assert list(out.columns) == ["tokens", "sentence"] and len(out) == 5
    vocabulary = model.unwrap_python_model().spec["vocabulary"]
    assert list(out["sentence"]) == [" ".join(vocabulary[i] for i in t) for t in out["tokens"]]
    assert out.equals(model.predict({"num_samples": 5, "seed": 3}))
    assert not out.equals(model.predict({"num_samples": 5, "seed": 3, "temperature": 0.05}))
    with pytest.raises(MlflowException, match="temperature"):
        model.predict({"num_samples": 2, "temperature": 0})


def test_relgan_refuses_what_it_cannot_use():
    def load(*overrides):
        return load_params(REPO / "params.yaml", ["preset=relgan_oracle", *overrides])

    assert load().relgan.head_size == 64 and load().train.d_steps_per_g_step == 5
    for override, message in [("train.r1=1.0", "train.r1 = 1.0: model.family = 'relgan' trains with the relativistic"),
                              ("train.objective=hinge", "train.objective = 'hinge': model.family = 'relgan'"),
                              ("train.label_smoothing=0.1", "train.label_smoothing = 0.1: model.family = 'relgan'"),
                              ("train.max_steps=5", "train.max_steps: a relgan run is relgan.pretrain_steps"),
                              ("relgan.num_rep=5", "d_embed = 64 is not a multiple of num_rep = 5"),
                              ("relgan.d_filters=[4,4]", "d_filters has 2 entries but d_widths has 4")]:
        with pytest.raises(ConfigError, match=message):
            load(override)
