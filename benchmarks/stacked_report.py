"""reports/stacked/summary.json and summary.md: the Stacked MNIST mode benchmark (benchmarks/stacked_mnist.sh).
Each configuration's runs (reports/stacked/<config>-s<seed>/metrics.json) are summarised over training
seeds: modes and reverse KL (counted on evaluate.mode_samples samples per sampling seed, averaged over the
sampling seeds), FID and recall, each as mean ± std over the training seeds, beside the published anchors.
Rows are comparable only under one evaluator hash, which the table states."""
from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from fusion_report import _row

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "stacked"
COLUMNS = ("modes", "reverse_kl", "fid", "recall", "seconds_per_1k_samples", "train_wall_min")
# (modes, KL) on Stacked MNIST as published: VEEGAN's Table 2 (DCGAN, VEEGAN), PacGAN's Table 3, DDGAN's Table 4
ANCHORS = {"DCGAN (VEEGAN paper)": (99, 3.40), "VEEGAN": (150, 2.95), "PacDCGAN2 (PacGAN paper)": (1000, 0.06),
           "DDGAN (DDGAN paper)": (1000, 0.071)}


def mean_std(summary: dict, key: str, fmt: str) -> str:
    """A table cell: "mean ± std" over training seeds, the mean alone for one seed, "—" when not measured."""
    if key not in summary:
        return "—"
    std = summary.get(key + "_std")
    return f"{summary[key]:{fmt}}" + (f" ± {std:{fmt}}" if std else "")


def main() -> None:
    runs = defaultdict(list)
    for path in sorted(OUT.glob("*-s*/metrics.json")):
        named = re.fullmatch(r"(.+)-s(\d+)", path.parent.name)
        if named is None:
            raise SystemExit(f"{path.parent}: run folders are named <config>-s<seed>, e.g. dcgan-s0")
        config, seed = named.groups()
        row, report = _row(path.parent.name, path), json.loads(path.read_text())
        row.update(seed=int(seed), modes=report.get("modes"), reverse_kl=report.get("reverse_kl"),
                   mode_samples=report.get("mode_samples"),
                   train_wall_min=row["train_wall_s"] / 60 if row["train_wall_s"] else None)
        runs[config].append(row)
    summary = {}
    for config, rows in runs.items():
        summary[config] = {"seeds": [r["seed"] for r in rows], "mode_samples": rows[0]["mode_samples"]}
        for key in COLUMNS:
            values = np.array([r[key] for r in rows if r.get(key) is not None], dtype=np.float64)
            if len(values):
                summary[config][key] = float(values.mean())
                summary[config][key + "_std"] = float(values.std(ddof=1)) if len(values) > 1 else None
    hashes = sorted({r["evaluator_hash"] for rows in runs.values() for r in rows})
    (OUT / "summary.json").write_text(json.dumps({"evaluator_hashes": hashes, "configs": summary,
                                                  "runs": [r for rows in runs.values() for r in rows],
                                                  "anchors": ANCHORS}, indent=2) + "\n")
    lines = [f"Evaluator {', '.join(h[:12] for h in hashes)} (per_channel); 2-core CPU; `bash benchmarks/stacked_mnist.sh`. "
             "Mean ± std over training seeds.", "",
             "| run | seeds | modes (of 1,000) | reverse KL | FID | recall | train wall (min) | s / 1,000 samples |",
             "|---|---|---|---|---|---|---|---|"]
    for config, s in summary.items():
        cells = [mean_std(s, key, fmt) for key, fmt in (("modes", ".1f"), ("reverse_kl", ".3f"), ("fid", ".2f"),
                                                        ("recall", ".3f"), ("train_wall_min", ".1f"),
                                                        ("seconds_per_1k_samples", ".2f"))]
        lines.append(f"| {config} | {len(s['seeds'])} | " + " | ".join(cells) + " |")
    for name, (modes, kl) in ANCHORS.items():
        lines.append(f"| {name} (published) | — | {modes} | {kl} | — | — | — | — |")
    (OUT / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
