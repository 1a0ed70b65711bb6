"""reports/text/summary.json: the text benchmarks' means over seeds (and their std as `<metric>_std`) in one
shape that every round keeps, so that anyone can check issue 34's goals from it:

    {"oracle": {"mle": {"nll_oracle", "nll_test", …}, "seqgan": {…}, "constant": {…}, "random_reward": {…},
                "relgan": {…}, "matched_gain": {"seqgan", "relgan", …}},
     "coco":   {"mle": {"bleu4", "self_bleu4", "nll_test", "empty_rate", …}, "seqgan": {…}, "relgan": {…}, …}}

`matched_gain`: NLL_oracle (oracle) or BLEU-4 (real text) minus MLE's temperature curve's at the same NLL_test
(benchmarks/text_gans.py). A corpus whose report is missing is left out.

    python benchmarks/text_summary.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.atomic import atomic_write  # noqa: E402

REPORTS = {"oracle": "reports/text/oracle.json", "coco": "reports/text/coco.json",
           "python_docs": "reports/text/python_docs.json"}
KEYS = {"oracle": ("nll_oracle", "nll_test", "bleu4", "self_bleu4", "empty_rate"),
        "coco": ("bleu2", "bleu3", "bleu4", "bleu5", "self_bleu2", "self_bleu3", "self_bleu4", "self_bleu5", "nll_test",
                 "empty_rate"),
        "python_docs": ("bleu4", "self_bleu4", "nll_test", "empty_rate")}


def corpus(report: dict, keys: tuple[str, ...]) -> dict:
    summary = report["summary"]
    out = {m: {k2: v for k in keys if k in table for k2, v in ((k, table[k]["mean"]), (f"{k}_std", table[k]["std"]))}
           for m, table in summary["methods"].items()}
    out["matched_gain"] = {m: g["mean"] for m, g in summary["matched_gain"].items()}
    out["matched_gain_std"] = {m: g["std"] for m, g in summary["matched_gain"].items()}
    out["d_accuracy"] = {p: a["mean"] for p, a in summary["d_accuracy"].items()}
    out["seeds"] = report["meta"]["seeds"]
    out["evaluator_hash"] = report["meta"]["evaluator_hash"]
    return out


def main() -> None:
    doc = {name: corpus(json.loads((REPO / path).read_text()), KEYS[name])
           for name, path in REPORTS.items() if (REPO / path).is_file()}
    atomic_write(REPO / "reports/text/summary.json", json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(json.dumps(doc, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
