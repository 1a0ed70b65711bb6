"""ASHA vs FIFO on the same sweep: compute spent (trial-seconds) and whether the best metric survives.

    python benchmarks/tune_schedulers.py                       # grid25 sweep, both schedulers
    python benchmarks/tune_schedulers.py --schedulers asha     # just the ASHA sweep (the ≤ 15 min figure)
    python benchmarks/tune_schedulers.py --reuse asha          # compare with an ASHA report already on disk

Runs `genpipe tune` (pipelines/tune.py) once per scheduler on benchmarks/tune/grid25.yaml, each with its
own reports (reports/tune/grid25_<scheduler>.json / _trials.csv), and writes the comparison to
reports/tune/schedulers.json. Run it alone: other CPU work on the machine inflates the timings."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from components.config import load_params
from pipelines import evaluator, prepare, tune

REPO = Path(__file__).resolve().parents[1]
RUN_FIGURES = ("best_value", "best_config", "trials_total", "trials_completed", "trials_stopped_early",
               "trials_failed", "skipped_total", "trial_seconds", "wall_seconds")


def collapse_table(trials_csv: Path) -> str:
    """Markdown: one row per configuration (seeds together) with modes, % high quality, reverse KL and
    the step each seed reached: which settings collapse."""
    import csv
    from collections import defaultdict

    groups = defaultdict(list)
    with open(trials_csv) as f:
        for row in csv.DictReader(f):
            key = (row["train.objective"] + (" + GP" if row.get("train.gradient_penalty") else ""),
                   row["train.label_smoothing"], row["train.d_steps_per_g_step"])
            groups[key].append(row)
    lines = ["| objective | smoothing | D:G | modes (per seed) | high quality % | reverse KL | steps reached |",
             "|---|---|---|---|---|---|---|"]
    for (objective, smoothing, ratio), rows in sorted(groups.items()):
        rows.sort(key=lambda r: int(r["seed"]))
        cells = [" / ".join(r["modes"] for r in rows),
                 " / ".join(f"{100 * float(r['high_quality']):.1f}" for r in rows),
                 " / ".join(f"{float(r['reverse_kl']):.3f}" for r in rows),
                 " / ".join(r["step"] for r in rows)]
        lines.append(f"| {objective} | {smoothing} | {ratio}:1 | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(REPO / "benchmarks/tune/grid25.yaml"))
    ap.add_argument("--schedulers", nargs="+", default=["asha", "fifo"], choices=["asha", "fifo", "pbt"])
    ap.add_argument("--reuse", nargs="*", default=[], metavar="SCHEDULER",
                    help="take these schedulers' figures from their existing reports instead of rerunning them")
    ap.add_argument("--out", default=str(REPO / "reports/tune/schedulers.json"))
    args = ap.parse_args()
    base = load_params(args.params)
    prepare.run(base, REPO)
    evaluator.run(base, REPO)
    runs = {}
    for name in args.schedulers:
        stem = f"{Path(base.tune.report).with_suffix('')}_{name}"
        if name in args.reuse:
            report = json.loads(Path(REPO / f"{stem}.json").read_text())
            runs[name] = {k: report[k] for k in RUN_FIGURES}
            continue
        params = load_params(args.params, [f"tune.scheduler={name}", f"tune.report={stem}.json",
                                           f"tune.trials_csv={stem}_trials.csv", "tune.register_best=false",
                                           f"tune.output_dir={base.tune.output_dir}_{name}"])
        report = tune.run(params, REPO)
        runs[name] = {k: report[k] for k in RUN_FIGURES}
    out = {"params": str(Path(args.params).relative_to(REPO)), "metric": report["metric"], "mode": report["mode"],
           "runs": runs}
    if {"asha", "fifo"} <= runs.keys():
        a, f = runs["asha"], runs["fifo"]
        better = (min if report["mode"] == "min" else max)(a["best_value"], f["best_value"])
        out["asha_vs_fifo"] = {
            "trial_seconds_saved": round(1 - a["trial_seconds"] / f["trial_seconds"], 3),
            "wall_seconds_saved": round(1 - a["wall_seconds"] / f["wall_seconds"], 3),
            "best_value_asha": a["best_value"], "best_value_fifo": f["best_value"],
            "asha_found_fifo_best": a["best_value"] == better or a["best_config"] == f["best_config"],
            "same_best_config": a["best_config"] == f["best_config"],
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    for name in runs:  # the collapse table of each sweep, beside its CSV
        stem = REPO / f"{Path(base.tune.report).with_suffix('')}_{name}"
        Path(f"{stem}_table.md").write_text(collapse_table(Path(f"{stem}_trials.csv")))
    print(json.dumps(out, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
