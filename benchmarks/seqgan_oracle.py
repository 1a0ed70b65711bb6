"""SeqGAN's oracle experiment (Yu et al. 2017, Table 1) on the 2-core CPU: per seed, on one oracle and from one
pre-trained generator, five methods — random G, MLE only, SeqGAN, and SeqGAN with a constant and a random
reward (the controls that show what D contributes) — scored by NLL_oracle, NLL_test, BLEU and Self-BLEU.
With --preset seqgan_text the same five on real sentences (python-docs), with sample sentences of each.

The phases run once each and are shared by resuming the training core from their final state, which is the
state an uninterrupted run would have there (tests/test_seqgan.py: bit-exact resume; the MLE and D phases do
not read the reward): MLE → D pre-training → three adversarial phases, one per reward. Each phase is timed
(wall seconds, tokens/s) in this process, one worker, as `genpipe train --no-ray` would run it.

    python benchmarks/seqgan_oracle.py --seeds 0 1 2            # reports/text/oracle.json + oracle.md
    python benchmarks/seqgan_oracle.py --preset seqgan_text --out reports/text/python_docs.json
    python benchmarks/seqgan_oracle.py --seeds 0 --set seqgan.adversarial_steps=50 --out /tmp/x.json
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.atomic import atomic_write  # noqa: E402
from components.config import load_params  # noqa: E402
from components.data.shards import load_split, read_manifest  # noqa: E402
from components.metrics.text_scorer import TextScorer  # noqa: E402
from components.training.loop import Worker, build_task, train_model  # noqa: E402

METHODS = ("random", "mle", "seqgan", "constant", "random_reward")
REWARD = {"seqgan": "discriminator", "constant": "constant", "random_reward": "random"}
PAPER = {"random": 10.310, "mle": 9.038, "seqgan": 8.736}  # Table 1 NLL_oracle (their oracle, not ours)


class Keep:
    """The training core's callbacks: the final state (copied), and the loss curve."""

    def __init__(self):
        self.state, self.logs = None, []

    def log(self, step, metrics):
        self.logs.append((step, dict(metrics)))

    def samples(self, step, epoch, image, suffix):
        pass

    def checkpoint(self, step, state, metrics):
        self.state = copy.deepcopy(state)


def phase(params, prepared, resume):
    keep = Keep()
    started = time.perf_counter()
    train_model(params, prepared, Worker(), keep, resume)
    return keep, time.perf_counter() - started


def generator(params, prepared, state=None):
    """G as the task builds it (seeded initial weights), with `state`'s weights when given."""
    task = build_task(params, read_manifest(prepared), Worker(), None)
    if state is not None:
        task.g.load_state_dict(state["generator"])
    return task.g.eval()


SHOWN = 20  # sample sentences kept per method (seed 0's first ones)


def score(params, g, scorer, test):
    started = time.perf_counter()
    fake = params.family.draw(g, params.evaluate.num_samples, params.evaluate.seed, None,
                              params.family.sampling_options(params), 0)
    with torch.no_grad():
        nll_test = float(-g(test).double().mean())
    return {**scorer(fake), "nll_test": nll_test, "eval_seconds": time.perf_counter() - started,
            "sentences": params.family.sentences(g, fake[:SHOWN])}


def run_seed(base, seed: int, prepared: Path, scorer, test) -> dict:
    params = base.with_overrides({"seed": seed})
    sc, tc = params.seqgan, params.train
    length, b, k = test.shape[1], tc.batch_size, tc.d_steps_per_g_step
    out, times = {}, {}
    with_ = lambda **kv: params.with_overrides({f"seqgan.{a}": v for a, v in kv.items()})  # noqa: E731
    out["random"] = score(params, generator(params, prepared), scorer, test)

    mle, times["mle"] = phase(with_(d_pretrain_steps=0, adversarial_steps=0), prepared, None)
    out["mle"] = score(params, generator(params, prepared, mle.state), scorer, test)
    d_pre, times["d_pretrain"] = phase(with_(adversarial_steps=0), prepared, mle.state)
    curves = {"mle": [(s, m["mle_loss"]) for s, m in mle.logs], "d_pretrain": [(s, m["d_loss"]) for s, m in d_pre.logs]}
    for method, reward in REWARD.items():
        adv, times[method] = phase(with_(reward=reward), prepared, d_pre.state)
        out[method] = score(params, generator(params, prepared, adv.state), scorer, test)
        curves[method] = [(s, m["pg_loss"], m["reward"], m["d_real"], m["d_fake"]) for s, m in adv.logs]
    # tokens each phase processes per second: teacher-forced tokens (MLE); tokens D judges plus those G
    # generates for it (D); for the adversarial phase G's samples and D's updates, and with D's reward also
    # the roll-outs' sampled tokens and the tokens of the completions D judges
    judged = sc.rollouts * b * length * (length - 1)
    sampled = judged / 2
    tokens = {"mle": sc.pretrain_steps * b * length,
              "d_pretrain": sc.d_pretrain_steps * k * b * length * 3,
              **{m: sc.adversarial_steps * (b * length + k * b * length * 3 + (
                  sampled + judged + b * length if reward == "discriminator" else 0)) for m, reward in REWARD.items()}}
    speed = {p: {"seconds": times[p], "tokens_per_s": tokens[p] / times[p]} for p in times}
    headline = "nll_oracle" if "nll_oracle" in out["mle"] else "nll_test"
    print(f"seed {seed}: {headline} " + ", ".join(f"{m} {out[m][headline]:.3f}" for m in METHODS)
          + " | " + ", ".join(f"{p} {v['seconds']:.0f} s" for p, v in speed.items()), flush=True)
    return {"metrics": out, "phases": speed, "curves": curves}


def summarise(runs: dict) -> dict:
    keys = [k for k in ("nll_oracle", "nll_test", "bleu2", "bleu3", "bleu4", "bleu5", "self_bleu2", "self_bleu3",
                        "self_bleu4", "self_bleu5") if k in next(iter(runs.values()))["metrics"]["mle"]]
    table = {}
    for method in METHODS:
        per_seed = [r["metrics"][method] for r in runs.values()]
        table[method] = {key: {"mean": float(np.mean([m[key] for m in per_seed])),
                               "std": float(np.std([m[key] for m in per_seed], ddof=1)) if len(per_seed) > 1 else 0.0}
                         for key in keys}
    phases = {p: {"seconds": float(np.mean([r["phases"][p]["seconds"] for r in runs.values()])),
                  "tokens_per_s": float(np.mean([r["phases"][p]["tokens_per_s"] for r in runs.values()]))}
              for p in next(iter(runs.values()))["phases"]}
    return {"methods": table, "phases": phases,
            "seconds_per_seed": float(np.mean([sum(v["seconds"] for v in r["phases"].values()) for r in runs.values()]))}


NAMES = {"random": "random G", "mle": "MLE only", "seqgan": "SeqGAN (reward: D)", "constant": "SeqGAN, constant reward",
         "random_reward": "SeqGAN, random reward"}


def markdown(summary: dict, meta: dict, runs: dict) -> str:
    t = summary["methods"]
    f = lambda m, k: f"{t[m][k]['mean']:.3f} ± {t[m][k]['std']:.3f}"  # noqa: E731
    oracle = "nll_oracle" in t["mle"]
    lines = [f"{'Oracle' if oracle else 'Text'} benchmark ({meta['dataset']}), seeds {meta['seeds']}, evaluator "
             f"{meta['evaluator_hash'][:12]}, {meta['num_samples']} samples, machine: {meta['machine']}; "
             f"`{meta['command']}`", ""]
    if oracle:
        lines += ["| method | NLL_oracle | NLL_test | BLEU-4 | Self-BLEU-4 | paper NLL_oracle |", "|---|---|---|---|---|---|"]
        for m in METHODS:
            lines.append(f"| {NAMES[m]} | {f(m, 'nll_oracle')} | {f(m, 'nll_test')} | {f(m, 'bleu4')} | "
                         f"{f(m, 'self_bleu4')} | {PAPER.get(m, '—')} |")
        lines += ["", f"Oracle's own sequences (floor): NLL_oracle {meta['floor']['floor_nll_oracle']:.3f}"]
    else:
        orders = range(2, 6)
        lines += ["| method | NLL_test | " + " | ".join(f"BLEU-{n}" for n in orders) + " | "
                  + " | ".join(f"Self-BLEU-{n}" for n in orders) + " |", "|---" * 10 + "|"]
        for m in METHODS:
            lines.append(f"| {NAMES[m]} | {f(m, 'nll_test')} | " + " | ".join(f(m, f"bleu{n}") for n in orders) + " | "
                         + " | ".join(f(m, f"self_bleu{n}") for n in orders) + " |")
        lines += ["", "Held-out real sentences (floor): " + ", ".join(
            f"Self-BLEU-{n} {meta['floor'][f'floor_self_bleu{n}']:.3f}" for n in orders)]
    lines += ["", "| phase | wall s (mean over seeds) | tokens/s |", "|---|---|---|"]
    for p, v in summary["phases"].items():
        lines.append(f"| {p} | {v['seconds']:.0f} | {v['tokens_per_s']:.0f} |")
    lines.append(f"\nOne seed in all: {summary['seconds_per_seed'] / 60:.1f} min of training.")
    first = runs[str(meta["seeds"][0])]["metrics"]
    for m in ("mle", "seqgan"):
        lines += ["", f"{NAMES[m]}, seed {meta['seeds'][0]}, the first {SHOWN} samples:", "",
                  *(f"    {s}" for s in first[m]["sentences"])]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--preset", default="seqgan_oracle", choices=["seqgan_oracle", "seqgan_text"])
    ap.add_argument("--out", default="reports/text/oracle.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    base = load_params(REPO / "params.yaml", [f"preset={args.preset}", "data.prepared_dir=data/text/prepared",
                                             *args.overrides])
    from pipelines import prepare

    prepared = prepare.run(base, REPO)
    scorer = TextScorer(prepared)
    test = torch.from_numpy(load_split(prepared, "test")[0]).long()
    runs = {str(s): run_seed(base, s, prepared, scorer, test) for s in args.seeds}
    from components.metrics import text_scorer

    meta = {"seeds": args.seeds, "overrides": args.overrides, "num_samples": base.evaluate.num_samples,
            "evaluator_hash": text_scorer.info(read_manifest(prepared))["hash"], "machine": "2-core CPU",
            "floor": scorer.floor(), "dataset": base.data.dataset, "torch": torch.__version__,
            "command": "python benchmarks/seqgan_oracle.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    summary = summarise(runs)
    out = REPO / args.out
    atomic_write(out, json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=1, sort_keys=True) + "\n")
    atomic_write(out.with_suffix(".md"), markdown(summary, meta, runs))
    print(markdown(summary, meta, runs))


if __name__ == "__main__":
    main()
