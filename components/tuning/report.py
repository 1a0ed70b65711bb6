"""A finished sweep as rows: one per trial with its status, last scores, exploits received (PBT), resumes
and nodes; and the trials CSV (reports/tune_trials.csv)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from components.failures import unwrap_failure
from components.metrics.catalogue import SEED_STD, all_metrics
from components.tuning.space import flatten


# value: the sweep's metric; startup_s: the trial's start-up, from its start to its first step
CSV_FIELDS = ["value", "status", "step", "seconds", "startup_s", "exploits", "resumed_from", "worker_nodes", "error"]


def trial_rows(result_grid, metric: str, trial_steps: int) -> list[dict]:
    rows = []
    for result in result_grid:
        m = result.metrics or {}
        # a trial that failed before its first report has no metrics; its folder is run_trial_<id>_<n>_<date>
        trial_id = m.get("trial_id") or "_".join(Path(result.path).name.split("_")[2:4])
        step = int(m.get("step", 0))
        status = "failed" if result.error else "completed" if step >= trial_steps else "stopped"
        df = result.metrics_dataframe
        rows.append({"trial_id": trial_id, "status": status, "step": step, "value": m.get(metric),
                     "scores": {k: m[k] for k in all_metrics() if k in m}, "seconds": round(float(m.get("time_total_s", 0.0)), 2),
                     "exploits": len(exploits_of(trial_id, df)), "error": unwrap_failure(result.error) if result.error else "",
                     "worker_nodes": _nodes_used(df), "resumed_from": _own_resumes(trial_id, df),
                     "startup_s": _first_startup(df),
                     "config": flatten(result.config or {}), "checkpoint": result.checkpoint,
                     "history": df})
    return rows


def exploits_of(trial_id: str, history) -> list[dict]:
    """PBT exploits a trial received, from its reports: each names the donor and the donor's step."""
    if history is None or "origin_trial" not in history:
        return []
    events, seen = [], set()
    for _, r in history[history["origin_trial"] != trial_id].iterrows():
        key = (r["origin_trial"], int(r["origin_step"]))
        if key not in seen:
            seen.add(key)
            events.append({"trial": trial_id, "donor": key[0], "donor_step": key[1], "first_step_after": int(r["step"])})
    return events


def _first_startup(history) -> float | None:
    """Seconds from the trial's start to its first step, as its first report gives them."""
    if history is None or "startup_s" not in history or history["startup_s"].dropna().empty:
        return None
    return round(float(history["startup_s"].dropna().iloc[0]), 3)


def startup_summary(rows: list[dict]) -> dict | None:
    """Median and 90th percentile of the trials' start-up seconds (the per-trial overhead of a sweep)."""
    import numpy as np

    times = [r["startup_s"] for r in rows if r.get("startup_s") is not None]
    if not times:
        return None
    return {"trials": len(times), "median_s": round(float(np.median(times)), 3),
            "p90_s": round(float(np.percentile(times, 90)), 3), "max_s": round(max(times), 3)}


def _nodes_used(history) -> str:
    """The Ray nodes a trial's workers ran on, in the order first seen (a retry may move it)."""
    if history is None or "worker_nodes" not in history:
        return ""
    return " ".join(dict.fromkeys(n for entry in history["worker_nodes"].dropna() for n in str(entry).split()))


def _own_resumes(trial_id: str, history) -> str:
    """Steps at which a trial went on from its own checkpoint after a crash (Tune's retry), in order."""
    if history is None or "origin_trial" not in history:
        return ""
    own = history[(history["origin_trial"] == trial_id) & (history["origin_step"] > 0)]
    return " ".join(str(int(s)) for s in dict.fromkeys(own["origin_step"]))


def write_curves(rows: list[dict], keys: list[str]) -> bytes:
    """Every report of every trial, in trial then step order: its configuration, step, seconds since the
    trial started (Tune's time_total_s) and in-training scores — the learning curves a study plots."""
    frames = [r for r in rows if r["history"] is not None and "step" in r["history"]]
    scores = [k for k in all_metrics() if any(k in r["history"] for r in frames)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["trial_id", *keys, "step", "seconds", *scores], extrasaction="ignore")
    writer.writeheader()
    for row in frames:
        for _, report in row["history"].iterrows():
            writer.writerow({"trial_id": row["trial_id"], **{k: row["config"].get(k, "") for k in keys},
                             "step": int(report["step"]), "seconds": round(float(report["time_total_s"]), 2),
                             **{k: report[k] for k in scores if k in report}})
    return buf.getvalue().encode()


def write_csv(rows: list[dict], keys: list[str]) -> bytes:
    """One row per trial: its configuration, every in-training score at its last report (or their mean over
    tune.error_seeds sampling seeds, each beside its `_seed_std`), and how it ended."""
    scores = [k + std for k in all_metrics() for std in ("", SEED_STD) if any(k + std in r["scores"] for r in rows)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["trial_id", *keys, *scores, *CSV_FIELDS], extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, **{k: row["config"].get(k, "") for k in keys}, **row["scores"]})
    return buf.getvalue().encode()
