"""The loss study ("Are GANs Created Equal?", Lucic et al., NeurIPS 2018) as a genpipe sweep.

    python benchmarks/loss_study.py --dataset grid25     # dvc repro benchmarks/dvc.yaml:loss_study@grid25
    python benchmarks/loss_study.py --dataset mnist5k
    python benchmarks/loss_study.py --dataset grid25 --analyse-only   # redraw from reports/study/<dataset>/

One Ray Tune sweep (`genpipe tune`, benchmarks/study/<dataset>.yaml): every objective × label smoothing
(where defined) × D:G ratio, each setting with the same number of random draws of learning rates and Adam
betas, every trial trained to the same step budget. Then, per objective:
  - the spread of the metric over all its trials (a box plot: what a random setting gives),
  - the best metric expected from a search of k trials drawn from its trials, k = 1…n (Lucic et al.'s
    budget curves; computed exactly from the order statistics, not by resampling),
  - collapse: trials whose metric is non-finite or worse than `--collapse` (grid25: fewer than 20 of 25 modes).
Writes reports/study/<dataset>/: trials.csv and tune.json (the sweep), summary.json, summary.md, budget.csv
(a DVC plot: one column per objective, each declared in benchmarks/dvc.yaml `plots:`), box.png and budget.png,
also logged to the sweep's MLflow parent run. Run it alone: other CPU work on the machine inflates the timings."""
from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from study_sweep import REPO, log_to_parent, run_or_read, wide_csv


def objective_of(row: dict) -> str:
    name = row["train.objective"]
    return name + ("-gp" if row.get("train.gradient_penalty") not in (None, "", "0.0", "0") else "")


def value_of(row: dict, metric: str) -> float:
    """The trial's metric at the end of its budget: NaN for a failed trial (its last report came before
    the failure) or a missing score."""
    if row["status"] == "failed" or row.get(metric) in (None, ""):
        return math.nan
    return float(row[metric])


def expected_best(values: list[float], k: int, lower_is_better: bool) -> float:
    """E[best of k trials drawn without replacement from `values`]: the i-th best of n is the best of a
    k-subset with probability C(n-i, k-1) / C(n, k)."""
    ranked = sorted(values, reverse=not lower_is_better)
    n = len(ranked)
    return sum(v * math.comb(n - i, k - 1) for i, v in enumerate(ranked, start=1)) / math.comb(n, k)


def analyse(rows: list[dict], metric: str, lower_is_better: bool, collapsed) -> dict:
    std = metric + "_seed_std"
    by_objective: dict[str, list[dict]] = {}
    for row in rows:
        by_objective.setdefault(objective_of(row), []).append(row)
    out = {}
    for name, trials in sorted(by_objective.items()):
        values = [value_of(r, metric) for r in trials]
        finite = [v for v in values if math.isfinite(v)]
        best_row = min((r for r, v in zip(trials, values) if math.isfinite(v)),
                       key=lambda r: float(r[metric]) * (1 if lower_is_better else -1), default=None)
        out[name] = {
            "trials": len(trials), "failed": sum(r["status"] == "failed" for r in trials),
            "collapsed": sum(1 for r, v in zip(trials, values) if not math.isfinite(v) or collapsed(r)),
            "best": ((min if lower_is_better else max)(finite)) if finite else None,
            # the best trial's error bar over sampling seeds (tune.error_seeds > 1), else None
            "best_seed_std": float(best_row[std]) if best_row and best_row.get(std) not in (None, "") else None,
            "median": statistics.median(finite) if finite else None,
            "quartiles": _quartiles(finite),
            "best_setting": {k: best_row[k] for k in ("train.label_smoothing", "train.d_steps_per_g_step",
                                                      "train.lr_g", "train.lr_d", "train.beta1", "train.beta2")}
            if best_row else None,
            "budget": [expected_best(finite, k, lower_is_better) for k in range(1, len(finite) + 1)],
            "values": values,
        }
    return out


def _quartiles(values: list[float]) -> list[float] | None:
    import numpy as np

    return [float(q) for q in np.percentile(values, [25, 75])] if values else None


def by_setting(rows: list[dict], metric: str, lower_is_better: bool) -> list[dict]:
    """Median and best metric of each (objective, smoothing, D:G) setting over its draws."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        v = value_of(r, metric)
        groups.setdefault((objective_of(r), r["train.label_smoothing"], r["train.d_steps_per_g_step"]), []).append(v)
    out = []
    for (objective, smoothing, ratio), values in sorted(groups.items()):
        finite = sorted(v for v in values if math.isfinite(v))
        out.append({"objective": objective, "label_smoothing": float(smoothing), "d_steps_per_g_step": int(ratio),
                    "draws": len(values), "median": statistics.median(finite) if finite else None,
                    "best": (finite[0] if lower_is_better else finite[-1]) if finite else None})
    return out


def plots(summary: dict, metric: str, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names)), 4))
    # an objective whose every trial failed has no box (a NaN placeholder keeps its column)
    ax.boxplot([[v for v in summary[n]["values"] if math.isfinite(v)] or [math.nan] for n in names], showfliers=True)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=35, ha="right")
    ax.set_ylabel(metric)
    if all(v > 0 for n in names for v in summary[n]["values"] if math.isfinite(v)):
        ax.set_yscale("log")
    ax.set_title(f"{metric} over every trial of each objective (settings × draws)")
    fig.tight_layout()
    box = out_dir / "box.png"
    fig.savefig(box, dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.get_cmap("tab20").colors  # more objectives than the default cycle's 10 colours
    for i, n in enumerate(names):
        curve = summary[n]["budget"]
        ax.plot(range(1, len(curve) + 1), curve, label=n, color=colours[i % len(colours)],
                linestyle="-" if i % 2 == 0 else "--", marker="." if len(curve) < 20 else None)
    if all(v > 0 for n in names for v in summary[n]["budget"]):
        ax.set_yscale("log")  # collapsed objectives sit orders of magnitude above the rest (FID)
    ax.set_xlabel("search budget (trials of this objective)")
    ax.set_ylabel(f"expected best {metric}")
    ax.set_title("best metric reached vs search budget (Lucic et al., Fig. 4)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    budget = out_dir / "budget.png"
    fig.savefig(budget, dpi=120)
    plt.close(fig)
    return [box, budget]


def budget_csv(summary: dict) -> str:
    """One row per budget k, one column per objective (blank past its trial count): a DVC plot. An objective
    whose every trial failed has no curve and no column (summary.md lists it)."""
    return wide_csv("budget", {n: dict(enumerate(s["budget"], start=1)) for n, s in summary.items() if s["budget"]})


def markdown(summary: dict, settings: list[dict], metric: str, report: dict) -> str:
    fmt = lambda v: "—" if v is None else f"{v:.4g}"  # noqa: E731
    lines = [f"Sweep `{report['sweep']}`: {report['trials_total']} trials ({report['trials_completed']} completed, "
             f"{report['trials_failed']} failed, {report['skipped_total']} settings skipped as refused), "
             f"{report['trial_steps']} steps each, wall {report['wall_seconds'] / 60:.1f} min; evaluator "
             f"`{report['evaluator_hash'][:12]}`" + (f"; each trial's {metric} is the mean over {report['error_seeds']} sampling "
             "seeds, ± their std" if report.get("error_seeds", 1) > 1 else "") + ".", "",
             f"| objective | trials | collapsed | best {metric} | median | IQR | best setting (smoothing, D:G, lr_g, lr_d, β1, β2) |",
             "|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        b = s["best_setting"]
        setting = (f"{b['train.label_smoothing']}, {b['train.d_steps_per_g_step']}:1, {float(b['train.lr_g']):.2g}, "
                   f"{float(b['train.lr_d']):.2g}, {b['train.beta1']}, {b['train.beta2']}") if b else "—"
        iqr = f"{fmt(s['quartiles'][0])}–{fmt(s['quartiles'][1])}" if s["quartiles"] else "—"
        best = fmt(s["best"]) + (f" ± {s['best_seed_std']:.2g}" if s.get("best_seed_std") is not None else "")
        lines.append(f"| {name} | {s['trials']} | {s['collapsed']} | {best} | {fmt(s['median'])} | {iqr} | {setting} |")
    lines += ["", f"Median {metric} of each setting over its draws (best in brackets; — every draw failed):", "",
              "| objective | smoothing | D:G 1:1 | D:G 2:1 | D:G 5:1 |", "|---|---|---|---|---|"]
    cells: dict[tuple, dict] = {}
    for s in settings:
        cells.setdefault((s["objective"], s["label_smoothing"]), {})[s["d_steps_per_g_step"]] = s
    for (objective, smoothing), ratios in cells.items():
        shown = [f"{fmt(ratios[r]['median'])} ({fmt(ratios[r]['best'])})" if r in ratios else "—" for r in (1, 2, 5)]
        lines.append(f"| {objective} | {smoothing} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


COLLAPSE = {"grid25": ("modes", lambda v: v < 20, "fewer than 20 of 25 modes"),
            "mnist5k": ("fid", lambda v: v > 150, "FID above 150 (no digits)")}


def main() -> None:
    from components.atomic import atomic_write
    from components.metrics.catalogue import greater_is_better

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=sorted(COLLAPSE), required=True)
    ap.add_argument("--analyse-only", action="store_true", help="redraw from the sweep's reports already on disk")
    args = ap.parse_args()
    params, report, rows = run_or_read(REPO / f"benchmarks/study/{args.dataset}.yaml", args.analyse_only)
    out_dir = (REPO / params.tune.report).parent
    metric = report["metric"]
    lower = not greater_is_better(metric)
    key, worse, why = COLLAPSE[args.dataset]
    summary = analyse(rows, metric, lower, lambda r: r.get(key) in (None, "") or worse(float(r[key])))
    settings = by_setting(rows, metric, lower)
    atomic_write(out_dir / "summary.json", json.dumps(
        {"metric": metric, "collapse": why, "evaluator_hash": report["evaluator_hash"], "sweep": report["sweep"],
         "trials_total": report["trials_total"], "wall_seconds": report["wall_seconds"],
         "trial_steps": report["trial_steps"], "objectives": summary, "settings": settings},
        indent=2, sort_keys=True, default=str) + "\n")
    atomic_write(out_dir / "summary.md", markdown(summary, settings, metric, report))
    atomic_write(out_dir / "budget.csv", budget_csv(summary))
    log_to_parent(params, report, [*plots(summary, metric, out_dir), out_dir / "summary.md", out_dir / "budget.csv"])
    print((out_dir / "summary.md").read_text())


if __name__ == "__main__":
    main()
