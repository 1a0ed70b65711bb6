"""reports/fusion/summary.json and summary.md: quality beside sampling cost for every run that
benchmarks/fusion_mnist5k.sh evaluated (reports/fusion/<name>/metrics.json) and the default pipeline's
dcgan (reports/metrics.json). Training wall time is the `genpipe train` command's (train.log's "train
wall", Ray start-up included); the default pipeline's run has none here (docs: README "What it
measures"). Rows are comparable only under one evaluator hash, which the table states."""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "fusion"
COLUMNS = ("fid", "precision", "recall", "coverage", "nfe", "seconds_per_1k_samples")


def _train_wall(log: Path) -> float | None:
    lines = [x for x in log.read_text().splitlines() if x.startswith("train wall ")] if log.is_file() else []
    return float(lines[-1].split()[2]) if lines else None


def _row(name: str, metrics_file: Path) -> dict:
    report = json.loads(metrics_file.read_text())
    row = {"name": name, "evaluator_hash": report["evaluator_hash"], "num_samples": report["num_samples"],
           "error_seeds": report["error_seeds"], "train_wall_s": _train_wall(metrics_file.with_name("train.log"))}
    for key in COLUMNS:
        row[key] = report.get(key)
        if key + "_seed_std" in report:
            row[key + "_seed_std"] = report[key + "_seed_std"]
    return row


def main() -> None:
    rows = [_row("dcgan (default pipeline)", ROOT / "reports" / "metrics.json")]
    rows += [_row(p.parent.name, p) for p in sorted(OUT.glob("*/metrics.json"))]
    hashes = sorted({r["evaluator_hash"] for r in rows})
    (OUT / "summary.json").write_text(json.dumps({"evaluator_hashes": hashes, "rows": rows}, indent=2) + "\n")
    lines = [f"Evaluator {', '.join(h[:12] for h in hashes)}; 2-core CPU; `bash benchmarks/fusion_mnist5k.sh`.", "",
             "| run | train wall | FID | precision | recall | coverage | NFE | s / 1,000 samples |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        wall = f"{r['train_wall_s'] / 60:.1f} min" if r["train_wall_s"] else "—"
        fid = f"{r['fid']:.2f} ± {r.get('fid_seed_std', 0):.2f}"
        cost = f"{r['seconds_per_1k_samples']:.2f}" if r["seconds_per_1k_samples"] is not None else "—"
        lines.append(f"| {r['name']} | {wall} | {fid} | {r['precision']:.3f} | {r['recall']:.3f} | "
                     f"{r['coverage']:.3f} | {r['nfe'] if r['nfe'] is not None else '—'} | {cost} |")
    (OUT / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
