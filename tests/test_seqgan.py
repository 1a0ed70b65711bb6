"""SeqGAN (family `seqgan`) and its token data: the oracle against a hand computation of its equations,
NLL_oracle's two anchors, the policy gradient, rewards and roll-outs, bit-exact resume in both phases, DDP,
the stages (prepare → evaluator → train → evaluate → promote → pyfunc) and the refusals."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from components.config import ConfigError, load_params
from components.data.oracle import ORACLE_ARRAYS, Oracle, load_oracle, random_oracle
from components.data.shards import load_split, read_manifest
from components.data.source_data import DataError
from components.models.seqgan import Discriminator, Generator
from components.training.loop import Worker
from conftest import REPO, Recorder, free_port, tiny_params
from pipelines import prepare

V, E, H, L = 40, 6, 5, 8  # a small oracle: every test trains in seconds


def seqgan_params(root: Path, source: str = "oracle", **sections):
    data = {"source": source, "prepared_dir": str(root / "prepared"), "row_group_rows": 16,
            "seq_len": L if source == "oracle" else 10,
            "vocab_size": V, "oracle_embed": E, "oracle_hidden": H, "num_sequences": 400}
    seqgan = {"g_embed": 8, "g_hidden": 8, "d_embed": 8, "d_widths": [2, 3], "d_filters": [6, 6], "rollouts": 3,
              "pretrain_steps": 3, "d_pretrain_steps": 2, "adversarial_steps": 3}
    train = {"epochs": 1, "max_steps": None, "batch_size": 16, "log_every": 2, "checkpoint_every": 2}
    return tiny_params(root, model={"family": "seqgan"}, **{
        "data": {**data, **sections.pop("data", {})}, "seqgan": {**seqgan, **sections.pop("seqgan", {})},
        "train": {**train, **sections.pop("train", {})}, **sections})


class Snapshots(Recorder):
    """Keeps a copy of every checkpoint state (a state holds the live tensors, which later steps change)."""

    def checkpoint(self, step, state, metrics):
        self.states.append(copy.deepcopy(state))


def train_in_process(params, root, resume=None):
    from components.training.loop import train_model

    rec = Snapshots()
    return rec, train_model(params, params.prepared_path(root), Worker(), rec, resume)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("seqgan")
    prepare.run(seqgan_params(root), root)
    text = root / "sentences.txt"
    text.write_text("\n".join([f"the {w} sat on the {v} mat ." for w in ("cat", "dog", "bird", "fox")
                               for v in ("red", "blue", "old", "new", "big")] * 3) + "\n")
    prepare.run(seqgan_params(root, "textfile", data={"path": str(text), "name": "sentences"}), root)
    return root


# ------------------------------------------------------------------------------------------ the oracle

def _hand_nll(a: dict, tokens: np.ndarray) -> float:
    """The reference's equations written out in float64 numpy: start token 0, zero h and c."""
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    h, c, prev, total = np.zeros(a["Ui"].shape[0]), np.zeros(a["Ui"].shape[0]), 0, 0.0
    for tok in tokens:
        x = a["embedding"][prev]
        i, f = sig(x @ a["Wi"] + h @ a["Ui"] + a["bi"]), sig(x @ a["Wf"] + h @ a["Uf"] + a["bf"])
        o = sig(x @ a["Wog"] + h @ a["Uog"] + a["bog"])
        c = f * c + i * np.tanh(x @ a["Wc"] + h @ a["Uc"] + a["bc"])
        h = o * np.tanh(c)
        logits = h @ a["Wo"] + a["bo"]
        total -= logits[tok] - (np.log(np.exp(logits - logits.max()).sum()) + logits.max())
        prev = tok
    return total / len(tokens)


def test_an_oracle_from_a_file_scores_a_sequence_as_its_equations_do(tmp_path):
    arrays = {k: v.astype(np.float64) for k, v in random_oracle(V, E, H, seed=3).items()}
    np.savez(tmp_path / "oracle.npz", **arrays)
    oracle = Oracle(load_oracle(tmp_path / "oracle.npz"))
    seq = np.array([5, 0, 39, 12, 12, 7, 1, 30])
    assert oracle.nll(torch.from_numpy(seq)[None]) == pytest.approx(_hand_nll(arrays, seq), rel=1e-5)


def test_nll_oracle_of_its_own_samples_is_its_entropy_rate_and_of_uniform_tokens_its_expectation():
    oracle = Oracle(random_oracle(V, E, H, seed=0))
    gen = torch.Generator().manual_seed(0)
    own = oracle.nll(oracle.sample(4000, L, gen))
    entropy = oracle.entropy_rate(4000, L, torch.Generator().manual_seed(1))
    assert own == pytest.approx(entropy, abs=0.05)  # two estimates of the same expectation
    uniform = torch.randint(0, V, (4000, L), generator=gen)
    # E over uniform tokens of -log p: at each position the mean over the vocabulary of -log p(v | the prefix)
    logp = torch.stack([oracle.log_probs(torch.cat([uniform[:, :t], torch.full((4000, 1), v)], 1))[:, t]
                        for t in range(L) for v in range(V)]).view(L, V, 4000)
    assert oracle.nll(uniform) == pytest.approx(float(-logp.double().mean()), abs=0.05)
    assert oracle.nll(uniform) > np.log(V) > own  # its language is far from uniform


def test_a_misshapen_or_incomplete_oracle_file_is_refused_by_name(tmp_path):
    arrays = random_oracle(V, E, H, seed=0)
    np.savez(tmp_path / "bad.npz", **{**arrays, "Uc": np.zeros((H, H + 1), np.float32)})
    with pytest.raises(DataError, match=r"bad.npz: oracle array Uc has shape \(5, 6\), expected \(5, 5\)"):
        load_oracle(tmp_path / "bad.npz")
    np.savez(tmp_path / "short.npz", **{k: v for k, v in arrays.items() if k != "bo"})
    with pytest.raises(DataError, match="short.npz: oracle array.* bo missing"):
        load_oracle(tmp_path / "short.npz")
    with pytest.raises(DataError, match="data.oracle_path: .*nothere.npz does not exist"):
        load_oracle(tmp_path / "nothere.npz")
    assert set(ORACLE_ARRAYS) == set(arrays)


def test_prepare_keeps_the_oracle_and_the_vocabulary_and_writes_nothing_on_a_bad_oracle(root, tmp_path):
    prepared = seqgan_params(root).prepared_path(root)
    manifest = read_manifest(prepared)
    assert manifest["kind"] == "oracle_tokens" and manifest["seq_len"] == L and len(manifest["vocabulary"]) == V
    tokens, _ = load_split(prepared, "train")
    assert tokens.dtype == np.int32 and tokens.shape[1] == L and 0 <= tokens.min() and tokens.max() < V
    with np.load(prepared / manifest["oracle"]) as f:
        assert np.array_equal(f["Wo"], random_oracle(V, E, H, 0)["Wo"])
    np.savez(tmp_path / "bad.npz", **{**random_oracle(V, E, H, 0), "bi": np.zeros(3, np.float32)})
    params = seqgan_params(tmp_path, data={"oracle_path": str(tmp_path / "bad.npz")})
    with pytest.raises(DataError, match="oracle array bi has shape"):
        prepare.run(params, tmp_path)
    assert not (tmp_path / "prepared").exists() or not any((tmp_path / "prepared").iterdir())


def test_a_text_file_becomes_sequences_over_the_train_splits_vocabulary(root):
    from components.data.text import decode

    prepared = seqgan_params(root, "textfile", data={"name": "sentences"}).prepared_path(root)
    manifest = read_manifest(prepared)
    assert manifest["kind"] == "tokens" and manifest["vocabulary"][:2] == ["<eos>", "<unk>"]
    tokens, _ = load_split(prepared, "test")
    sentences = {decode(row, manifest["vocabulary"]) for row in tokens}
    assert "the cat sat on the red mat ." in sentences or len(sentences) > 3
    assert all(s.startswith("the ") and s.endswith(" mat .") for s in sentences)
    assert (tokens[:, -1] == 0).all()  # every sequence ends in <eos>, which pads


# ------------------------------------------------------------------------------------------ the game

def test_the_policy_gradient_is_minus_the_reward_weighted_score_function():
    torch.manual_seed(0)
    g = Generator(V, L, 4, 4)
    tokens = g.sample(5, torch.Generator().manual_seed(1))
    q = torch.rand(5, L, generator=torch.Generator().manual_seed(2))
    loss = -(g(tokens) * q).mean()  # what the task minimises
    grads = torch.autograd.grad(loss, list(g.parameters()))
    # −Σ_{i,t} Q_t ∇ log p(y_t) / (N·L), term by term
    expected = [torch.zeros_like(p) for p in g.parameters()]
    logp = g(tokens)
    for i in range(5):
        for t in range(L):
            for e, gr in zip(expected, torch.autograd.grad(logp[i, t], list(g.parameters()), retain_graph=True)):
                e -= q[i, t] * gr / (5 * L)
    for a, b in zip(grads, expected):
        assert torch.allclose(a, b, atol=1e-6)


def _task(root, **seqgan):
    from components.training.seqgan_step import SeqganTask

    params = seqgan_params(root, seqgan=seqgan)
    return SeqganTask(params, read_manifest(params.prepared_path(root)), Worker(), None, False)


def test_the_reward_of_a_complete_sequence_is_ds_belief_and_prefixes_are_scored_by_rollouts(root):
    task = _task(root, rollouts=5)
    tokens = task.g.sample(4, torch.Generator().manual_seed(0))
    q = task.rewards(tokens, step=7)
    task.d.eval()
    with torch.no_grad():
        assert torch.allclose(q[:, -1], torch.sigmoid(task.d(tokens)))
        completions = task.rollout.rollouts(tokens, 5, task._rng(22, 7))
        assert torch.allclose(q[:, 2], torch.sigmoid(task.d(completions[2].reshape(-1, L))).view(5, 4).mean(0))
    assert ((0 < q) & (q < 1)).all()
    assert torch.equal(_task(root, reward="constant").rewards(tokens, 7), torch.ones(4, L))
    random = _task(root, reward="random").rewards(tokens, 7)
    assert torch.equal(random, _task(root, reward="random").rewards(tokens, 7)) and 0 < random.std() < 0.5


def test_rollouts_keep_the_prefix_and_continue_it_as_the_policy_does():
    torch.manual_seed(0)
    g = Generator(6, 5, 4, 4)
    prefix = torch.tensor([[3, 1, 4, 1, 5]])
    out = g.rollouts(prefix, 20000, torch.Generator().manual_seed(0))  # (L-1, M, 1, L)
    assert out.shape == (4, 20000, 1, 5)
    for t in range(1, 5):
        assert (out[t - 1, :, 0, :t] == prefix[0, :t]).all()
    # the first sampled token after y_1..y_2 follows G's next-token distribution there
    with torch.no_grad():
        probs = torch.stack([g(torch.tensor([[3, 1, v, 0, 0]]))[0, 2].exp() for v in range(6)])
    counts = torch.bincount(out[1, :, 0, 2], minlength=6).double() / 20000
    assert torch.allclose(counts, probs.double(), atol=0.015)
    # and the next one follows G given the token sampled before it: a completion, not independent draws
    for v in (0, 5):
        rows = out[0, :, 0][out[0, :, 0, 1] == v]
        with torch.no_grad():
            after = torch.stack([g(torch.tensor([[3, v, w, 0, 0]]))[0, 2].exp() for w in range(6)]).double()
        seen = torch.bincount(rows[:, 2], minlength=6).double() / len(rows)
        assert len(rows) > 1500 and torch.allclose(seen, after, atol=0.04), (v, seen, after)


def test_a_discriminator_drops_widths_longer_than_the_sequence():
    d = Discriminator(V, 4, 8, [2, 3, 5], [4, 4, 4], 0.0)
    assert len(d.convs) == 2 and d(torch.zeros(3, 4, dtype=torch.long)).shape == (3,)


# ------------------------------------------------------------------------------------------ training

@pytest.mark.parametrize("stop", [2, 6], ids=["mle_phase", "adversarial_phase"])
def test_resume_is_bit_exact_from_either_phase(root, stop):
    params = seqgan_params(root, train={"checkpoint_every": 1, "d_steps_per_g_step": 2},
                           seqgan={"baseline": True})
    straight, out = train_in_process(params, root)
    assert out["step"] == 8
    resumed, out = train_in_process(params, root, resume=straight.states[stop - 1])
    assert out["started_at"] == stop
    for part in ("generator", "discriminator", "rollout", "opt_g", "opt_d", "opt_mle"):
        a, b = straight.states[-1][part], resumed.states[-1][part]
        flat = lambda s: [v for v in (s.values() if "state" not in s else  # noqa: E731
                          [t for st in s["state"].values() for t in st.values()])]
        for x, y in zip(flat(a), flat(b)):
            assert torch.equal(torch.as_tensor(x), torch.as_tensor(y)), part
    assert straight.logs[-1][1]["pg_loss"] == resumed.logs[-1][1]["pg_loss"] != 0
    assert straight.grids[-1][1] == resumed.grids[-1][1] and straight.grids[-1][1].count("\n") == 16


def test_the_mle_phase_is_the_same_whatever_the_adversarial_settings(root):
    a, _ = train_in_process(seqgan_params(root, seqgan={"d_pretrain_steps": 0, "adversarial_steps": 0}), root)
    b, _ = train_in_process(seqgan_params(root, seqgan={"reward": "random", "rollouts": 7}), root)
    g_after_mle = a.states[-1]["generator"]
    assert a.states[-1]["step"] == 3
    # b's first checkpoint after the MLE phase (step 4: one D pre-training step later, G untouched)
    b_at_4 = next(s for s in b.states if s["step"] == 4)["generator"]
    assert all(torch.equal(g_after_mle[k], b_at_4[k]) for k in g_after_mle)


def _ddp_rank(rank, port, params_json, prepared, out):
    import torch.distributed as dist

    from components.config import Params
    from components.training import loop
    from conftest import Recorder

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        rec = Recorder()
        loop.train_model(Params.model_validate_json(params_json), Path(prepared), Worker(rank, 2), rec)
        if rank == 0:
            torch.save(rec.states[-1], f"{out}/rank0.pt")
        built = {}
        build = loop.build_task
        loop.build_task = lambda *a: built.setdefault("t", build(*a))
        loop.train_model(Params.model_validate_json(params_json), Path(prepared), Worker(rank, 2), Recorder())
        loop.build_task = build
        torch.save({k: m.module.state_dict() if hasattr(m, "module") else m.state_dict()
                    for k, m in built["t"].nets.items()}, f"{out}/nets{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_each_phase_logs_and_shows_only_its_own_numbers_in_tokens_per_second(root):
    """Phases MLE (steps 0-2), D (3-4), adversarial (5-7); windows of 2 steps: a window logs the stats its steps
    measured, each averaged over those steps alone, i.e. what windows of 1 step log."""
    from components.tracking.curves import is_curve
    from pipelines.ray_worker import console_metrics

    single = dict(train_in_process(seqgan_params(root, train={"log_every": 1}), root)[0].logs)
    pairs = dict(train_in_process(seqgan_params(root), root)[0].logs)
    d, adversarial = ["d_fake", "d_loss", "d_real"], ["d_fake", "d_loss", "d_real", "pg_loss", "reward"]
    assert {step: sorted(set(m) - {"epoch", "tokens_per_s"}) for step, m in pairs.items()} == {
        2: ["mle_loss"], 4: ["d_fake", "d_loss", "d_real", "mle_loss"], 6: adversarial, 8: adversarial}
    assert sorted(set(single[5]) - {"epoch", "tokens_per_s"}) == d
    assert pairs[4]["mle_loss"] == single[3]["mle_loss"] and pairs[4]["d_loss"] == single[4]["d_loss"]
    assert pairs[6]["pg_loss"] == single[6]["pg_loss"]
    assert pairs[6]["d_loss"] == pytest.approx((single[5]["d_loss"] + single[6]["d_loss"]) / 2, rel=1e-12)
    assert pairs[2]["mle_loss"] == pytest.approx((single[1]["mle_loss"] + single[2]["mle_loss"]) / 2, rel=1e-12)
    assert all(m["tokens_per_s"] > 0 and "images_per_s" not in m for m in pairs.values())
    assert list(console_metrics(pairs[2])) == ["mle_loss", "tokens_per_s"]  # the MLE phase on the console
    assert list(console_metrics(pairs[8])) == ["d_loss", "pg_loss", "tokens_per_s"]
    assert is_curve("mle_loss") and is_curve("tokens_per_s")


def assert_two_ranks_agree(params, root, tmp_path, nets: set[str]) -> None:
    """Two DDP ranks end with identical weights of every net in `nets`, and not those of one worker alone
    (the ranks' gradients were averaged)."""
    import torch.multiprocessing as mp

    mp.start_processes(_ddp_rank, args=(free_port(), params.model_dump_json(), str(params.prepared_path(root)),
                                        str(tmp_path)), nprocs=2, start_method="spawn")
    r0, r1 = (torch.load(tmp_path / f"nets{r}.pt", weights_only=True) for r in (0, 1))
    assert set(r0) == nets
    for net in nets:
        for key in r0[net]:
            assert torch.equal(r0[net][key], r1[net][key]), (net, key)
    single, _ = train_in_process(params, root)
    assert not torch.equal(single.states[-1]["generator"]["out.weight"], r0["generator"]["out.weight"])


def test_two_rank_ddp_leaves_identical_weights_in_both_phases(root, tmp_path):
    assert_two_ranks_agree(seqgan_params(root), root, tmp_path, {"generator", "discriminator", "rollout"})


# ------------------------------------------------------------------------------------------ stages

@pytest.fixture(scope="module")
def staged(root, tmp_path_factory):
    """Each source through the stages; "printed": what evaluate printed for each."""
    import contextlib
    import io

    from pipelines import evaluate, evaluator, promote, train

    printed = {}

    def run(source, data):
        base = tmp_path_factory.mktemp(source)
        params = seqgan_params(root, source, data=data).with_overrides({
            "evaluator.output_dir": str(base / "evaluator"), "train.output_dir": str(base / "train"),
            "tracking.uri": f"sqlite:///{base / 'mlflow.db'}", "scaling.storage_path": str(base / "checkpoints"),
            "evaluate.num_samples": 200, "evaluate.report": str(base / "metrics.json"),
            "evaluate.grid": str(base / "samples.png"), "evaluate.headline": str(base / "headline.json"),
            "promote.report": str(base / "promotion.json"), "evaluate.curve": str(base / "curve.csv"),
            "evaluate.curve_samples": 100})
        evaluator.run(params, root)
        summary = train.run(params, root, use_ray=False)
        with contextlib.redirect_stdout(io.StringIO()) as out:
            report = evaluate.run(params, root)
        printed[source] = out.getvalue()
        return params, summary, report, promote.run(params, root)

    return {"oracle": run("oracle", {}), "text": run("textfile", {"name": "sentences", "path": str(root / "sentences.txt")}),
            "printed": printed}


@pytest.mark.parametrize("source", ["oracle", "textfile"])
def test_evaluate_writes_and_prints_the_quality_diversity_curve(staged, root, source):
    import csv

    params, _, report, _ = staged["text" if source == "textfile" else source]
    with open(params.evaluate.curve, newline="") as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    assert [r["temperature"] for r in rows] == params.evaluate.temperatures
    quality = ["nll_oracle"] if source == "oracle" else ["bleu4", "self_bleu4"]
    assert set(rows[0]) == {"temperature", "nll_test", "empty_rate", *quality}
    at_one = next(r for r in rows if r["temperature"] == 1.0)
    assert at_one["nll_test"] == pytest.approx(report["nll_test"], rel=1e-5)  # untempered: evaluate's own NLL_test
    assert rows[0]["nll_test"] > at_one["nll_test"]  # T = 0.3 fits the held-out sequences worse
    printed = staged["printed"][source]
    assert "quality–diversity curve (100 samples per temperature" in printed
    assert printed.count("temperature=") == len(rows)


@pytest.mark.parametrize("source", ["oracle", "textfile"])
def test_evaluate_prints_every_number_it_measured_headline_first(staged, root, source):
    params, _, report, _ = staged["text" if source == "textfile" else source]
    (line,) = [ln for ln in staged["printed"][source].splitlines() if ln.startswith("evaluate: ")]
    shown = [item.split("=")[0] for item in line.removeprefix("evaluate: ").split(" (mean ± std")[0].split(", ")]
    measured = {k for k, v in report.items() if isinstance(v, (int, float)) and not k.endswith("_seed_std")} - {
        "num_samples", "seed", "error_seeds"}  # what evaluate records of the run, not measurements
    assert sorted(shown) == sorted(measured)
    kind = read_manifest(params.prepared_path(root))["kind"]
    names = [n for n in params.family.metric_names(params, kind) if n in report]
    assert shown[:len(names)] == names and shown[-1] == "eval_seconds"
    assert {"bleu2", "bleu5", "self_bleu2", "self_bleu5", "nll_test", "floor_self_bleu2"} <= set(shown)
    assert ("nll_oracle" in shown and "floor_nll_oracle" in shown) == (source == "oracle")
    assert f"nll_test={report['nll_test']:.4g}±" in line


def test_evaluate_refuses_a_model_of_other_settings_naming_where_each_value_came_from(staged, root, tmp_path):
    import shutil

    import yaml

    from components.options import Layers, set_by
    from pipelines.evaluate import EvaluateError, load_candidate

    params = staged["text"][0]
    model_dir = tmp_path / "train"
    shutil.copytree(params.train.output_dir, model_dir)
    # what `genpipe train --set seqgan.pretrain_steps=3` records beside the model (its rollouts: another run's)
    (model_dir / "options.yaml").write_text(yaml.safe_dump({"set_by": {"seqgan.pretrain_steps": "--set"},
                                                            "params": {"seqgan": {"pretrain_steps": 3, "rollouts": 9}}}))
    here = params.with_overrides({"preset": "seqgan_text", "seqgan.pretrain_steps": 1500, "seqgan.rollouts": 8,
                                  "seqgan.temperature": 0.5, "train.output_dir": str(model_dir)})
    with pytest.raises(EvaluateError) as e:
        load_candidate(here, root, set_by(here, Layers(params_file=None)))
    message = str(e.value)
    assert "seqgan.pretrain_steps trained with 3 (--set) but configured 1500 (preset seqgan_text)" in message
    assert "seqgan.rollouts trained with 3 but configured 8 (preset seqgan_text)" in message
    assert "temperature" not in message and "params.yaml" not in message  # a sampling key may differ
    with pytest.raises(EvaluateError, match=r"model.g_channels trained with 16 but configured 8; retrain"):
        load_candidate(params.with_overrides({"model.g_channels": 8}), root)  # no layers known: values only


def test_sample_help_says_what_a_text_model_writes(capsys):
    from pipelines import cli

    with pytest.raises(SystemExit):
        cli.main(["sample", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "or for a text model a text file of sentences" in shown and "with the suffix .txt" in shown
    assert "number of samples (images, points or sentences)" in shown and "images into" not in shown


def test_evaluate_reports_nll_oracle_bleu_and_self_bleu_with_error_bars(staged, root):
    params, summary, report, promoted = staged["oracle"]
    assert report["evaluator_kind"] == "text" and report["num_samples"] == 200
    for key in ("nll_oracle", "nll_test", "bleu2", "bleu5", "self_bleu2", "self_bleu5", "floor_nll_oracle"):
        assert np.isfinite(report[key]), key
    assert report["nll_oracle_seed_std"] > 0 and report["bleu2"] > report["bleu5"]
    assert report["floor_nll_oracle"] < report["nll_oracle"]  # the oracle's own language scores best
    # NLL_test recomputed from the exported G on the held-out split
    from components.training.checkpoint import load_generator

    g = load_generator(params.train.output_dir)[0]
    test = torch.from_numpy(load_split(params.prepared_path(root), "test")[0]).long()
    with torch.no_grad():
        assert report["nll_test"] == pytest.approx(float(-g(test).double().mean()), rel=1e-9)
    assert promoted["metric"] == "nll_oracle" and promoted["model_name"].endswith("seqgan")
    metrics = json.loads(Path(params.evaluate.headline).read_text())
    assert "nll_oracle" in metrics and "self_bleu4" in metrics


def test_the_pyfunc_returns_the_sentences_it_sampled(staged):
    import mlflow
    from mlflow.exceptions import MlflowException

    from components.data.text import decode

    params, summary, report, _ = staged["text"]
    assert promoted_metric(staged["text"]) == "nll_test" and report["bleu2"] > 0
    mlflow.set_tracking_uri(params.tracking.uri)
    model = mlflow.pyfunc.load_model(summary["model_uri"])
    out = model.predict({"num_samples": 5, "seed": 3})
    assert list(out.columns) == ["tokens", "sentence"] and len(out) == 5
    vocabulary = model.unwrap_python_model().spec["vocabulary"]
    assert list(out["sentence"]) == [decode(np.asarray(t), vocabulary) for t in out["tokens"]]
    assert out.equals(model.predict({"num_samples": 5, "seed": 3}))
    cold = model.predict({"num_samples": 5, "seed": 3, "temperature": 0.05})
    assert not cold.equals(out)
    with pytest.raises(MlflowException, match="temperature"):
        model.predict({"num_samples": 2, "temperature": -1.0})
    with pytest.raises(MlflowException, match="labels: this model is unconditional"):
        model.predict({"num_samples": 2, "labels": [1, 2]})


def test_genpipe_sample_writes_and_prints_a_text_models_sentences(staged, root, capsys):
    import mlflow

    from pipelines import sample

    params, summary, _, _ = staged["text"]
    out = sample.run(params, root, summary["model_uri"], 4, 3, root / "text_samples.png")
    mlflow.set_tracking_uri(params.tracking.uri)
    sentences = list(mlflow.pyfunc.load_model(summary["model_uri"]).predict({"num_samples": 4, "seed": 3})["sentence"])
    assert out == root / "text_samples.txt" and not (root / "text_samples.png").exists()
    assert out.read_text() == "\n".join(sentences) + "\n"
    printed = capsys.readouterr().out
    assert "\n".join(sentences) in printed and f"sample: 4 sentences from {summary['model_uri']}" in printed


def promoted_metric(staged_run) -> str:
    return staged_run[3]["metric"]


def test_families_and_data_kinds_refuse_each_other(root, tmp_path):
    from components.training.loop import plan

    text_dir = seqgan_params(root).prepared_path(root)
    dcgan = tiny_params(tmp_path)
    with pytest.raises(DataError, match="model.family = 'dcgan' trains on image data, but .* holds oracle_tokens data"):
        plan(dcgan, text_dir, 1)
    prepare.run(tiny_params(tmp_path), tmp_path)
    with pytest.raises(DataError, match="'seqgan' trains on tokens or oracle_tokens data, but .* holds image data"):
        plan(seqgan_params(tmp_path, "digits"), tiny_params(tmp_path).prepared_path(tmp_path), 1)
    with pytest.raises(ConfigError, match="train.objective = 'hinge': seqgan's reward is D's belief"):
        load_params(REPO / "params.yaml", ["preset=seqgan_oracle", "train.objective=hinge"])
    with pytest.raises(ConfigError, match="train.r1 = 1.0: model.family = 'seqgan' judges discrete tokens"):
        load_params(REPO / "params.yaml", ["preset=seqgan_oracle", "train.r1=1.0"])
    with pytest.raises(ConfigError, match="d_filters has 2 entries but d_widths has 3"):
        load_params(REPO / "params.yaml", ["preset=seqgan_oracle", "seqgan.d_widths=[1,2,3]", "seqgan.d_filters=[4,4]"])
    assert load_params(REPO / "params.yaml", ["preset=seqgan_text"]).data.source == "python-docs"


def test_a_sweep_scores_text_trials_with_the_same_metrics_and_directions(staged, root):
    from components.evaluation import QuickScorer, metric_and_mode
    from components.training.checkpoint import load_generator

    params = staged["oracle"][0]
    assert metric_and_mode(params, "oracle_tokens") == ("nll_oracle", "min")
    assert metric_and_mode(params.with_overrides({"tune.metric": "self_bleu3"}), "tokens") == ("self_bleu3", "min")
    assert metric_and_mode(params.with_overrides({"tune.metric": "bleu4"}), "tokens") == ("bleu4", "max")
    g = load_generator(params.train.output_dir)[0]
    scores = QuickScorer(params, root, 100)(g)
    assert {"nll_oracle", "nll_test", "bleu2", "self_bleu5"} <= set(scores)
    assert scores["nll_test"] == pytest.approx(staged["oracle"][2]["nll_test"])  # the same G, the same test split


def test_the_scoring_server_answers_with_sentences(staged):
    """`mlflow models serve` of the registered text model: token ids and their sentences, seeded."""
    import urllib.request

    from components.tracking import local_server

    params, summary, _, _ = staged["text"]
    server, url = local_server.start(summary["model_uri"], params.tracking.uri, free_port())
    try:
        def post(body):
            req = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.load(resp)["predictions"]

        rows = post({"dataframe_records": [{"num_samples": 3, "seed": 4}]})
        assert len(rows) == 3 and all(isinstance(r["sentence"], str) and len(r["tokens"]) == 10 for r in rows)
        assert rows == post({"inputs": {"num_samples": 3, "seed": 4}})
        import mlflow

        mlflow.set_tracking_uri(params.tracking.uri)
        local = mlflow.pyfunc.load_model(summary["model_uri"]).predict({"num_samples": 3, "seed": 4})
        assert [r["sentence"] for r in rows] == list(local["sentence"])
    finally:
        local_server.stop(server)
