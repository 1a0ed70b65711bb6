"""Which image model the default `dvc repro` trains: the learning curves of its candidates.

    python benchmarks/default_study.py                  # dvc repro benchmarks/dvc.yaml:default_study
    python benchmarks/default_study.py --analyse-only   # redraw from reports/study/default/

One FIFO grid sweep (`genpipe tune`, benchmarks/study/default.yaml): the default DCGAN without labels or
with a projection D (a class-conditional GAN, sampled with every class equally often), each alone or with
one stabiliser, every trial to the same step budget with FID (and class balance) measured along the way.
Writes reports/study/default/: the sweep's trials.csv, tune.json and curves.csv (every evaluation of every
trial), summary.json, summary.md, fid.csv (a DVC plot: FID by step, one column per candidate, each declared
in benchmarks/dvc.yaml `plots:`) and curves.png (FID against training seconds and class KL against steps), the
last three also logged to the sweep's MLflow parent run. Run it alone: other CPU work inflates the seconds."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from study_sweep import REPO, fid_floor, log_to_parent, read_csv, run_or_read, wide_csv

GOAL = 10  # the default's target, × the floor
STABILISERS = {"train.ema_decay": ("EMA", "0.999"), "train.diffusion_d": ("diffusion-noised D", "True"),
               "train.pack": ("PacGAN 2", "2"), "train.d_steps_per_g_step": ("D:G 2:1", "2")}


def candidate(row: dict) -> str:
    """'labels, EMA' / 'no labels, plain': what the trial's grid point changed from the default."""
    labels = "no labels" if row.get("model.conditioning", "none") == "none" else "labels"
    tricks = [name for key, (name, on) in STABILISERS.items() if row.get(key) == on]
    return f"{labels}, {' + '.join(tricks) or 'plain'}"


def curves_of(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(candidate(r), []).append({k: float(r[k]) for k in ("step", "seconds", "fid", "class_kl",
                                                                            "precision", "recall", "coverage")})
    return {name: sorted(points, key=lambda p: p["step"]) for name, points in out.items()}


def summarise(curves: dict[str, list[dict]], trials: list[dict]) -> dict:
    failed = {candidate(t): t["error"] for t in trials if t["status"] == "failed"}

    def final_fid(item) -> float:  # a trial that diverged (NaN FID) sorts last
        fid = item[1][-1]["fid"]
        return fid if math.isfinite(fid) else math.inf

    out = {}
    for name, points in sorted(curves.items(), key=final_fid):
        last = points[-1]
        out[name] = {"fid_by_step": {int(p["step"]): p["fid"] for p in points},
                     "best_fid": min(p["fid"] for p in points),
                     "seconds_per_1000_steps": 1000 * last["seconds"] / last["step"],
                     **{k: last[k] for k in ("step", "seconds", "fid", "class_kl", "precision", "recall", "coverage")},
                     "failed": failed.get(name)}
    return out


def fid_csv(summary: dict) -> str:
    """FID by step, one column per candidate (in the summary's order: best final FID first): a DVC plot."""
    return wide_csv("step", {name: c["fid_by_step"] for name, c in summary.items()})


def plot(curves: dict[str, list[dict]], summary: dict, floor: float, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = plt.get_cmap("tab10").colors
    for i, name in enumerate(summary):
        points, style = curves[name], "-" if name.startswith("labels") else "--"
        left.plot([p["seconds"] for p in points], [p["fid"] for p in points], style, marker="o", ms=3,
                  color=colours[i % 10], label=name)
        right.plot([p["step"] for p in points], [p["class_kl"] for p in points], style, marker="o", ms=3,
                   color=colours[i % 10], label=name)
    # the default's goal: FID within 10× the real-vs-real floor
    left.axhline(GOAL * floor, color="grey", linestyle=":", label=f"{GOAL}× the floor ({GOAL * floor:.2f})")
    left.set_yscale("log")
    left.set_xlabel("seconds since the trial started (two trials share 2 CPU cores; includes evaluations)")
    left.set_ylabel("FID")
    left.set_title("FID against training time")
    right.set_yscale("log")
    right.set_xlabel("G steps")
    right.set_ylabel("class KL (generated vs uniform class histogram)")
    right.set_title("class balance: what the unconditional GANs miss")
    left.legend(fontsize=7)
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def markdown(summary: dict, report: dict, eval_samples: int, floor: float) -> str:
    steps = sorted({s for c in summary.values() for s in c["fid_by_step"]})
    lines = [f"Sweep `{report['sweep']}`: {report['trials_total']} trials of {report['trial_steps']} G steps, "
             f"{report['concurrency']} at a time, wall {report['wall_seconds'] / 60:.1f} min; FID on {eval_samples:,} samples "
             f"under evaluator `{report['evaluator_hash'][:12]}` (real-vs-real floor {floor:.3f}; the default's "
             f"goal, {GOAL}× the floor: {GOAL * floor:.2f}). Sorted by the final FID.", "",
             "| candidate | " + " | ".join(f"FID @ {s}" for s in steps)
             + " | class KL | precision | recall | coverage | s / 1,000 steps |",
             "|---|" + "---|" * (len(steps) + 5)]
    for name, c in summary.items():
        fids = [f"{c['fid_by_step'][s]:.1f}" if s in c["fid_by_step"] else "—" for s in steps]
        lines.append(f"| {name} | " + " | ".join(fids) + f" | {c['class_kl']:.3f} | {c['precision']:.3f} | "
                     f"{c['recall']:.3f} | {c['coverage']:.3f} | {c['seconds_per_1000_steps']:.0f} |")
    failed = {n: c["failed"] for n, c in summary.items() if c["failed"]}
    lines += ["", *(f"- {n} failed: {why}" for n, why in failed.items())] if failed else []
    skipped = [f"- skipped ({s['count']}): {s['reason']}" for s in report["skipped"]]
    return "\n".join(lines + ([""] + skipped if skipped else [])) + "\n"


def main() -> None:
    from components.atomic import atomic_write

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--analyse-only", action="store_true", help="redraw from the sweep's reports already on disk")
    ap.add_argument("--config", default="benchmarks/study/default.yaml", help=argparse.SUPPRESS)  # tests: a tiny one
    args = ap.parse_args()
    params, report, trials = run_or_read(REPO / args.config, args.analyse_only)
    out = (REPO / params.tune.report).parent
    curves = curves_of(read_csv(REPO / params.tune.curves_csv))
    summary = summarise(curves, trials)
    floor = fid_floor(params)
    atomic_write(out / "summary.json", json.dumps(
        {"evaluator_hash": report["evaluator_hash"], "sweep": report["sweep"], "fid_floor": floor,
         "wall_seconds": report["wall_seconds"], "candidates": summary}, indent=2, sort_keys=True) + "\n")
    atomic_write(out / "summary.md", markdown(summary, report, params.tune.eval_samples, floor))
    atomic_write(out / "fid.csv", fid_csv(summary))
    log_to_parent(params, report, [plot(curves, summary, floor, out), out / "summary.md", out / "fid.csv"])
    print((out / "summary.md").read_text())


if __name__ == "__main__":
    main()
