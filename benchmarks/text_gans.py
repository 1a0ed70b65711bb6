"""Text GANs against MLE on one corpus, per seed, on the 2-core CPU: random G, MLE only, SeqGAN, SeqGAN with a
constant and a random reward (the controls that show what D contributes), and RelGAN — each scored at
temperature 1 (NLL_oracle on the oracle, BLEU / Self-BLEU on real text, NLL_test, the empty-sentence rate) and
as a quality–diversity curve over evaluate.temperatures (components/metrics/quality_diversity.py), with each
GAN's matched gain: its quality minus MLE's curve's at the same NLL_test.

SeqGAN's phases run once each and are shared by resuming the training core from their final state, which is
the state an uninterrupted run would have there (tests/test_seqgan.py: bit-exact resume; the MLE and D phases
do not read the reward): MLE → D pre-training → three adversarial phases, one per reward. RelGAN is its own run
(MLE, then adversarial). Each phase is timed (wall seconds, tokens/s) in this process, one worker, as
`genpipe train --no-ray` would run it; D's held-out accuracy (real test sequences vs as many fresh samples of G)
is measured after D's pre-training and after each adversarial phase.

    python benchmarks/text_gans.py --corpus oracle --seeds 0 1 2       # reports/text/oracle.json + .md + curves
    python benchmarks/text_gans.py --corpus coco --seeds 0 1 2         # reports/text/coco.json + .md + curves
    python benchmarks/text_gans.py --corpus python-docs --seeds 0      # reports/text/python_docs.json + .md
    python benchmarks/text_gans.py --corpus oracle --seeds 0 --set seqgan.adversarial_steps=5 --out /tmp/x.json
    python benchmarks/text_gans.py --corpus oracle --seeds 1 & …; python benchmarks/text_gans.py --corpus oracle --merge
"""
from __future__ import annotations

import argparse
import copy
import csv
import io
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
from components.metrics import quality_diversity as qd  # noqa: E402
from components.metrics.text_scorer import TextScorer  # noqa: E402
from components.training.loop import Worker, build_task, train_model  # noqa: E402

CORPORA = {  # corpus → (SeqGAN's preset, RelGAN's preset, report name)
    "oracle": ("seqgan_oracle", "relgan_oracle", "oracle"),
    "coco": ("seqgan_coco", "relgan_coco", "coco"),
    "python-docs": ("seqgan_text", None, "python_docs"),
}
REWARD = {"seqgan": "discriminator", "constant": "constant", "random_reward": "random"}
NAMES = {"random": "random G", "mle": "MLE only", "relgan_mle": "RelGAN's MLE phase only", "seqgan": "SeqGAN (reward: D)", "constant": "SeqGAN, constant reward",
         "random_reward": "SeqGAN, random reward", "relgan": "RelGAN"}
PAPER_ORACLE = {"random": 10.310, "mle": 9.038, "seqgan": 8.736, "relgan": 6.68}  # their oracles (RelGAN's at length 20)
SHOWN = 20  # sample sentences kept per method (the first seed's first ones)


class Keep:
    """The training core's callbacks: the final state (copied), and the logged stats."""

    def __init__(self):
        self.state, self.logs = None, []

    def log(self, step, metrics):
        self.logs.append((step, dict(metrics)))

    def samples(self, step, epoch, image, suffix):
        pass

    def checkpoint(self, step, state, metrics):
        self.state = copy.deepcopy(state)


def phase(params, prepared, resume):
    """One phase resumed from `resume` (a copy: Adam keeps the state's own moment tensors and updates them in
    place, so phases resumed from one state would see each other's updates)."""
    keep = Keep()
    resume = copy.deepcopy(resume)
    started = time.perf_counter()
    train_model(params, prepared, Worker(), keep, resume)
    return keep, time.perf_counter() - started


def nets(params, prepared, state=None):
    """The task's networks as it builds them (seeded initial weights), with `state`'s weights when given."""
    task = build_task(params, read_manifest(prepared), Worker(), None)
    if state is not None:
        task.g.load_state_dict(state["generator"])
        if "discriminator" in state:
            task.d.load_state_dict(state["discriminator"])
    return task.g.eval(), task.d.eval()


@torch.no_grad()
def d_accuracy(params, prepared, state, test: torch.Tensor, train: torch.Tensor) -> dict:
    """SeqGAN's D on the held-out real sequences against as many fresh samples of G (a seed no phase uses), and
    on as many train sequences against those samples: the gap between the two is what D memorised."""
    g, d = nets(params, prepared, state)
    fake = g.sample(len(test), torch.Generator().manual_seed(10_000 + params.seed))
    belief = torch.sigmoid  # every objective SeqGAN accepts reads D's logit through a sigmoid
    real, seen, gen = belief(d(test)), belief(d(train[: len(test)])), belief(d(fake))
    acc = lambda r: ((r > 0.5).float().mean() + (gen < 0.5).float().mean()).item() / 2  # noqa: E731
    return {"accuracy": acc(real), "train_accuracy": acc(seen), "d_real": real.mean().item(),
            "d_real_train": seen.mean().item(), "d_fake": gen.mean().item()}


def score(params, g, scorer, test) -> dict:
    """Temperature 1 (every scorer metric on evaluate.num_samples samples) and the quality–diversity curve."""
    started = time.perf_counter()
    family, ev = params.family, params.evaluate
    fake = family.draw(g, ev.num_samples, ev.seed, None, {"temperature": 1.0}, 0)
    out = {**scorer(fake), "nll_test": qd.tempered_nll(g, test, 1.0),
           "sentences": family.sentences(g, fake[:SHOWN])}
    out["curve"] = qd.curve(g, family, params, scorer, test, ev.temperatures, min(ev.curve_samples, ev.num_samples), ev.seed)
    out["eval_seconds"] = time.perf_counter() - started
    return out


def tokens_per_step(params, length: int) -> dict:
    """Tokens each phase processes per step: teacher-forced tokens (MLE); tokens D judges and those G generates
    for it (D); G's samples and D's updates, and with D's reward the roll-outs' sampled tokens and the
    completions D judges (SeqGAN's adversarial phase)."""
    sc, b, k = params.seqgan, params.train.batch_size, params.train.d_steps_per_g_step
    d_round = k * b * length * (1 + 2 * sc.d_epochs)  # fresh negatives once, real + fake judged every epoch
    judged = sc.rollouts * b * length * (length - 1)
    return {"mle": b * length, "d_pretrain": d_round,
            **{m: b * length + d_round + ((judged / 2 + judged + b * length) if r == "discriminator" else 0)
               for m, r in REWARD.items()}}


def run_seqgan(params, prepared, scorer, test, out, times, curves, accuracy):
    sc = params.seqgan
    train = torch.from_numpy(load_split(prepared, "train")[0]).long()
    with_ = lambda **kv: params.with_overrides({f"seqgan.{a}": v for a, v in kv.items()})  # noqa: E731
    out["random"] = score(params, nets(params, prepared)[0], scorer, test)
    mle, times["mle"] = phase(with_(d_pretrain_steps=0, adversarial_steps=0), prepared, None)
    out["mle"] = score(params, nets(params, prepared, mle.state)[0], scorer, test)
    d_pre, times["d_pretrain"] = phase(with_(adversarial_steps=0), prepared, mle.state)
    accuracy["d_pretrain"] = d_accuracy(params, prepared, d_pre.state, test, train)
    curves["mle"] = [(s, m["mle_loss"]) for s, m in mle.logs]
    curves["d_pretrain"] = [(s, m["d_loss"], m["d_real"], m["d_fake"]) for s, m in d_pre.logs]
    for method, reward in REWARD.items():
        adv, times[method] = phase(with_(reward=reward), prepared, d_pre.state)
        out[method] = score(params, nets(params, prepared, adv.state)[0], scorer, test)
        accuracy[method] = d_accuracy(params, prepared, adv.state, test, train)
        curves[method] = [(s, m["pg_loss"], m["reward"], m["d_real"], m["d_fake"]) for s, m in adv.logs]
    per_step = tokens_per_step(params, test.shape[1])
    steps = {"mle": sc.pretrain_steps, "d_pretrain": sc.d_pretrain_steps, **{m: sc.adversarial_steps for m in REWARD}}
    return {p: per_step[p] * steps[p] for p in steps}


def run_relgan(params, prepared, scorer, test, out, times, curves):
    rc, b, length = params.relgan, params.train.batch_size, test.shape[1]
    mle, times["relgan_mle"] = phase(params.with_overrides({"relgan.adversarial_steps": 0}), prepared, None)
    out["relgan_mle"] = score(params, nets(params, prepared, mle.state)[0], scorer, test)
    adv, times["relgan"] = phase(params, prepared, mle.state)
    out["relgan"] = score(params, nets(params, prepared, adv.state)[0], scorer, test)
    curves["relgan"] = [(s, *(m.get(k, float("nan")) for k in ("g_loss", "d_loss", "beta"))) for s, m in adv.logs]
    k = params.train.d_steps_per_g_step  # each adversarial step: k D updates (real + soft fake), one G update
    return {"relgan_mle": rc.pretrain_steps * b * length, "relgan": rc.adversarial_steps * (k + 1) * 2 * b * length}


def run_seed(seqgan_base, relgan_base, seed: int, prepared: Path, scorer, test) -> dict:
    out, times, curves, accuracy = {}, {}, {}, {}
    tokens = run_seqgan(seqgan_base.with_overrides({"seed": seed}), prepared, scorer, test, out, times, curves, accuracy)
    if relgan_base is not None:
        tokens |= run_relgan(relgan_base.with_overrides({"seed": seed}), prepared, scorer, test, out, times, curves)
    key = quality_key(out["mle"])
    gains = {m: g["gain"] for m, g in matched_gains(out).items()}
    speed = {p: {"seconds": times[p], "tokens_per_s": tokens[p] / times[p]} for p in times}
    print(f"seed {seed}: {key} " + ", ".join(f"{m} {v[key]:.3f}" for m, v in out.items())
          + " | matched gain " + ", ".join(f"{m} {g:+.3f}" for m, g in gains.items())
          + " | " + ", ".join(f"{p} {v['seconds']:.0f} s" for p, v in speed.items()), flush=True)
    return {"metrics": out, "phases": speed, "curves": curves, "d_accuracy": accuracy, "matched_gain": gains}


def matched_gains(metrics: dict) -> dict:
    """Each GAN's quality minus its MLE's temperature curve's at the same NLL_test (components/metrics/
    quality_diversity.py), with the temperature MLE needs and whether the GAN's NLL_test lay on that curve
    (False: read at its end, not at equal diversity). SeqGAN and its controls against the LSTM's MLE phase;
    RelGAN against its own MLE phase (`relgan`) and against the LSTM's (`relgan_vs_lstm_mle`)."""
    key = quality_key(metrics["mle"])
    pairs = {m: (m, "mle") for m in ("seqgan", "constant", "random_reward") if m in metrics}
    if "relgan" in metrics:
        pairs |= {"relgan": ("relgan", "relgan_mle"), "relgan_vs_lstm_mle": ("relgan", "mle")}
    out = {}
    for name, (model, reference) in pairs.items():
        at = qd.matched(metrics[reference]["curve"], "nll_test", metrics[model]["nll_test"], key)
        out[name] = {"gain": metrics[model][key] - at.value, "temperature": at.temperature, "in_range": at.in_range}
        if key == "bleu4":  # real text: also at equal Self-BLEU-4, the diversity Texygen's tables report
            at = qd.matched(metrics[reference]["curve"], "self_bleu4", metrics[model]["self_bleu4"], key)
            out[f"{name}_at_self_bleu4"] = {"gain": metrics[model][key] - at.value, "temperature": at.temperature,
                                           "in_range": at.in_range}
    return out


def quality_key(metrics: dict) -> str:
    return "nll_oracle" if "nll_oracle" in metrics else "bleu4"


def mean_std(values) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


PHASES = ("mle", "d_pretrain", "seqgan", "constant", "random_reward", "relgan_mle", "relgan")


def ordered(keys) -> list[str]:
    """Phases in the order they run (seed files keep keys sorted)."""
    return sorted(keys, key=PHASES.index)


def summarise(runs: dict) -> dict:
    first = next(iter(runs.values()))
    methods = [m for m in NAMES if m in first["metrics"]]  # the table's order (seed files keep keys sorted)
    keys = [k for k, v in first["metrics"]["mle"].items() if isinstance(v, float)]
    table = {m: {k: mean_std([r["metrics"][m][k] for r in runs.values()]) for k in keys} for m in methods}
    gains = [matched_gains(r["metrics"]) for r in runs.values()]  # read again from the curves each seed kept
    temps = [row["temperature"] for row in first["metrics"]["mle"]["curve"]]
    curve_keys = [k for k in first["metrics"]["mle"]["curve"][0] if k != "temperature"]
    curves = {m: [{"temperature": t, **{k: mean_std([r["metrics"][m]["curve"][i][k] for r in runs.values()])
                                        for k in curve_keys}} for i, t in enumerate(temps)] for m in methods}
    return {"methods": table, "curves": curves,
            "matched_gain": {m: {**mean_std([g[m]["gain"] for g in gains]),
                                 "temperature": mean_std([g[m]["temperature"] for g in gains]),
                                 "in_range_seeds": sum(g[m]["in_range"] for g in gains)} for m in gains[0]},
            "d_accuracy": {p: mean_std([r["d_accuracy"][p]["accuracy"] for r in runs.values()])
                           for p in ordered(first["d_accuracy"])},
            "d_train_accuracy": {p: mean_std([r["d_accuracy"][p]["train_accuracy"] for r in runs.values()])
                                 for p in ordered(first["d_accuracy"])},
            "phases": {p: {"seconds": float(np.mean([r["phases"][p]["seconds"] for r in runs.values()])),
                           "tokens_per_s": float(np.mean([r["phases"][p]["tokens_per_s"] for r in runs.values()]))}
                       for p in ordered(first["phases"])},
            "seconds_per_seed": float(np.mean([sum(v["seconds"] for v in r["phases"].values())
                                               + sum(m["eval_seconds"] for m in r["metrics"].values())
                                               for r in runs.values()]))}


def curves_csv(summary: dict) -> dict[str, str]:
    """The mean curves, one CSV per metric (nll_test.csv, nll_oracle.csv or bleu4.csv…): a row per temperature,
    a column per method, as the benchmarks' DVC plots draw them against temperature (benchmarks/dvc.yaml)."""
    curves = summary["curves"]
    temps = [p["temperature"] for p in curves["mle"]]
    files = {}
    for metric in (k for k in curves["mle"][0] if k != "temperature"):
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["temperature", *curves])
        writer.writerows([t, *(round(curve[i][metric]["mean"], 6) for curve in curves.values())]
                         for i, t in enumerate(temps))
        files[f"{metric}.csv"] = buf.getvalue()
    return files


def markdown(summary: dict, meta: dict, runs: dict) -> str:
    t = summary["methods"]
    f = lambda m, k: f"{t[m][k]['mean']:.3f} ± {t[m][k]['std']:.3f}" if k in t[m] else "—"  # noqa: E731
    oracle = "nll_oracle" in t["mle"]
    lines = [f"Text GANs on {meta['dataset']}: seeds {meta['seeds']}, text scorer {meta['evaluator_hash'][:12]}, "
             f"{meta['num_samples']} samples at temperature 1, {meta['curve_samples']} per curve point, machine: "
             f"{meta['machine']}; `{meta['command']}`", ""]
    cols = (["nll_oracle", "nll_test", "bleu4", "self_bleu4", "empty_rate"] if oracle else
            ["bleu2", "bleu3", "bleu4", "bleu5", "self_bleu2", "self_bleu3", "self_bleu4", "self_bleu5", "nll_test", "empty_rate"])
    lines += ["| method | " + " | ".join(cols) + " | matched gain |", "|---" * (len(cols) + 2) + "|"]
    for m in t:
        gain = summary["matched_gain"].get(m)
        lines.append(f"| {NAMES[m]} | " + " | ".join(f(m, k) for k in cols) + " | "
                     + (f"{gain['mean']:+.3f} ± {gain['std']:.3f} (MLE at T {gain['temperature']['mean']:.2f}; "
                        f"on its curve in {gain['in_range_seeds']} of {len(runs)} seeds)" if gain else "—") + " |")
    at_self = {m[: -len("_at_self_bleu4")]: g for m, g in summary["matched_gain"].items() if m.endswith("_at_self_bleu4")}
    if at_self:
        lines.append("\nBLEU-4 gain at equal Self-BLEU-4 instead (MLE's curve read where its Self-BLEU-4 is the method's): "
                     + ", ".join(f"{NAMES.get(m, m)} {g['mean']:+.3f} ± {g['std']:.3f} (T {g['temperature']['mean']:.2f}, "
                                 f"on the curve in {g['in_range_seeds']} of {len(runs)})" for m, g in at_self.items()) + ".")
    if "relgan_vs_lstm_mle" in summary["matched_gain"]:
        g = summary["matched_gain"]["relgan_vs_lstm_mle"]
        lines.append(f"\nRelGAN against the LSTM's MLE curve instead of its own MLE phase's: {g['mean']:+.3f} ± "
                     f"{g['std']:.3f} (on the curve in {g['in_range_seeds']} of {len(runs)} seeds).")
    floor = meta["floor"]
    lines += ["", "Matched gain: the method's " + ("NLL_oracle" if oracle else "BLEU-4") + " minus MLE's temperature "
              "curve's at the same NLL_test (" + ("below zero: better than temperature-tuned MLE" if oracle else
                                                  "above zero: better than temperature-tuned MLE") + ").",
              "Floor (held-out real sequences): " + ", ".join(f"{k} {v:.3f}" for k, v in floor.items())]
    qkey = "nll_oracle" if oracle else "bleu4"
    lines += ["", f"Quality–diversity curves (mean over seeds): NLL_test / {qkey} per temperature", "",
              "| method | " + " | ".join(f"T={p['temperature']}" for p in summary["curves"]["mle"]) + " |",
              "|---" * (len(summary["curves"]["mle"]) + 1) + "|"]
    for m, curve in summary["curves"].items():
        lines.append(f"| {NAMES[m]} | " + " | ".join(f"{p['nll_test']['mean']:.3f} / {p[qkey]['mean']:.3f}" for p in curve) + " |")
    lines += ["", "D's accuracy on real vs as many fresh samples of G, held-out (train) real sequences: "
              + ", ".join(f"after {p} {v['mean']:.3f} ({summary['d_train_accuracy'][p]['mean']:.3f})"
                          for p, v in summary["d_accuracy"].items()), "",
              "| phase | wall s (mean over seeds) | tokens/s |", "|---|---|---|"]
    lines += [f"| {p} | {v['seconds']:.0f} | {v['tokens_per_s']:.0f} |" for p, v in summary["phases"].items()]
    lines.append(f"\nOne seed in all (training and scoring): {summary['seconds_per_seed'] / 60:.1f} min.")
    first = runs[str(meta["seeds"][0])]["metrics"]
    for m in ("mle", "seqgan", "relgan"):
        if m in first:
            lines += ["", f"{NAMES[m]}, seed {meta['seeds'][0]}, the first {SHOWN} samples at temperature 1:", "",
                      *(f"    {s}" for s in first[m]["sentences"])]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", choices=sorted(CORPORA), default="oracle")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="applied to both SeqGAN's and RelGAN's params")
    ap.add_argument("--no-relgan", action="store_true", help="leave RelGAN out")
    ap.add_argument("--out", default=None, help="default reports/text/<corpus>.json")
    ap.add_argument("--merge", action="store_true", help="train nothing: summarise the seeds' files that runs of "
                    "single seeds (e.g. in parallel) left in <out>_seeds/")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (1 each for two corpora run side by side)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    seqgan_preset, relgan_preset, name = CORPORA[args.corpus]
    common = ["data.prepared_dir=data/text/prepared", f"train.num_threads={args.threads}", *args.overrides]
    base = load_params(REPO / "params.yaml", [f"preset={seqgan_preset}", *common])
    relgan = None if args.no_relgan or relgan_preset is None else load_params(
        REPO / "params.yaml", [f"preset={relgan_preset}", *common])
    from pipelines import prepare

    prepared = prepare.run(base, REPO)
    if relgan is not None and prepare.run(relgan, REPO) != prepared:
        raise SystemExit(f"{seqgan_preset} and {relgan_preset} prepare different data: compare them on one dataset")
    scorer = TextScorer(prepared)
    test = torch.from_numpy(load_split(prepared, "test")[0]).long()
    out = REPO / (args.out or f"reports/text/{name}.json")
    seed_dir = out.with_name(out.stem + "_seeds")  # one file per seed, written as each ends
    settings = {"overrides": args.overrides, "presets": [seqgan_preset] + ([relgan_preset] if relgan else []),
                "data": prepared.name, "content_hash": read_manifest(prepared)["content_hash"]}
    runs = {}
    for s in args.seeds:
        path = seed_dir / f"seed{s}.json"
        if args.merge:
            if not path.is_file():
                raise SystemExit(f"--merge: {path} is missing (run that seed first)")
            runs[str(s)] = json.loads(path.read_text())
            if runs[str(s)].get("settings") != settings:
                raise SystemExit(f"--merge: {path} was run with {runs[str(s)].get('settings')}, not {settings}")
            continue
        runs[str(s)] = {**run_seed(base, relgan, s, prepared, scorer, test), "settings": settings}
        atomic_write(path, json.dumps(runs[str(s)], sort_keys=True) + "\n")
    from components.metrics import text_scorer

    meta = {"seeds": args.seeds, "overrides": args.overrides, "num_samples": base.evaluate.num_samples,
            "curve_samples": min(base.evaluate.curve_samples, base.evaluate.num_samples),
            "temperatures": base.evaluate.temperatures,
            "evaluator_hash": text_scorer.info(read_manifest(prepared))["hash"], "machine": "2-core CPU",
            "threads": args.threads,
            "floor": scorer.floor(), "dataset": base.data.dataset, "torch": torch.__version__,
            "presets": [seqgan_preset] + ([relgan_preset] if relgan is not None else []),
            "command": "python benchmarks/text_gans.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    summary = summarise(runs)
    atomic_write(out, json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=1, sort_keys=True) + "\n")
    atomic_write(out.with_suffix(".md"), markdown(summary, meta, runs))
    for file, text in curves_csv(summary).items():
        atomic_write(out.with_name(out.stem + "_curves") / file, text)
    print(markdown(summary, meta, runs))


if __name__ == "__main__":
    main()
