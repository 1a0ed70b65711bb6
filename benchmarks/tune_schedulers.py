"""ASHA vs FIFO on the same sweep: compute spent (trial-seconds) and whether the best metric survives;
and in-process trials vs a Ray Train run per trial: start-up per trial and sweep wall time.

    python benchmarks/tune_schedulers.py                       # grid25 sweep, both schedulers, in-process trials
    python benchmarks/tune_schedulers.py --schedulers asha     # just the ASHA sweep (the ≤ 5 min figure)
    python benchmarks/tune_schedulers.py --schedulers asha asha_train   # in-process vs Train-per-trial start-up
    python benchmarks/tune_schedulers.py --reuse asha          # compare with an ASHA report already on disk

A `_train` suffix runs that scheduler with tune.in_process=false (every trial starts a Ray Train run).
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
               "trials_failed", "skipped_total", "trial_seconds", "wall_seconds", "trial_startup", "in_process_trials")
RUNS = ["asha", "fifo", "pbt", "asha_train", "fifo_train"]


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
    ap.add_argument("--schedulers", nargs="+", default=["asha", "fifo"], choices=RUNS)
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
            runs[name] = {k: report.get(k) for k in RUN_FIGURES}
            continue
        scheduler, _, launcher = name.partition("_")
        params = load_params(args.params, [f"tune.scheduler={scheduler}", f"tune.report={stem}.json",
                                           f"tune.in_process={'false' if launcher == 'train' else 'true'}",
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
    for name in [n for n in runs if n.endswith("_train") and n.split("_")[0] in runs]:
        a, b = runs[name.split("_")[0]], runs[name]
        out[f"in_process_vs_{name}"] = {
            "startup_median_s": [a["trial_startup"]["median_s"], b["trial_startup"]["median_s"]],
            "startup_p90_s": [a["trial_startup"]["p90_s"], b["trial_startup"]["p90_s"]],
            "wall_seconds": [a["wall_seconds"], b["wall_seconds"]], "same_best_config": a["best_config"] == b["best_config"]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    for name in runs:  # the collapse table of each sweep, beside its CSV
        stem = REPO / f"{Path(base.tune.report).with_suffix('')}_{name}"
        Path(f"{stem}_table.md").write_text(collapse_table(Path(f"{stem}_trials.csv")))
    print(json.dumps(out, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
