"""reports/stacked/summary.json and summary.md: the Stacked MNIST mode benchmark (benchmarks/stacked_mnist.sh).
Each configuration's runs (reports/stacked/<config>-s<seed>/metrics.json) are summarised over training
seeds: modes and reverse KL (counted on evaluate.mode_samples samples per sampling seed, averaged over the
sampling seeds), FID and recall, each as mean ± std over the training seeds, beside the published anchors.
Rows are comparable only under one evaluator hash, which the table states.

The recount: each run's kept samples (data/stacked/samples/<run>.npz, the first sampling seed's 26,000) are
read again by the pinned reader and their KL split into the three channels' digit KLs and the rest (the
channels' dependence), and a `data` row reads 26,000 training triples: the KL a perfect model would score
on that many samples. A run whose samples file (by SHA-256) and reader are those of the committed summary
keeps its committed recount, so adding a run reads only the new samples."""
from __future__ import annotations

import hashlib
import io
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from components.atomic import atomic_write
from fusion_report import _row

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "stacked"
SAMPLES = ROOT / "data" / "stacked" / "samples"
EVALUATOR = ROOT / "data" / "stacked" / "evaluator"
PREPARED = ROOT / "data" / "stacked" / "prepared" / "stacked_mnist"
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


def kept_or_counted(path: Path, before: dict, hashes: list[str], count) -> dict:
    """A run's recount: the committed one (`before`, the committed summary) when its samples file has the same
    SHA-256 and the same readers scored it, else `count(samples)` with the file's digest beside it."""
    raw = path.read_bytes()  # read once: hashed, and loaded only when the committed recount does not fit
    digest = hashlib.sha256(raw).hexdigest()
    kept = before.get("recount", {}).get(path.stem, {})
    if before.get("evaluator_hashes") == hashes and kept.get("sha256") == digest:
        return kept
    return {**count(np.load(io.BytesIO(raw))["samples"]), "sha256": digest}


def recount(hashes: list[str], before: dict) -> tuple[dict, dict]:
    """({run: its kept samples' scores}, the data row's scores) under the pinned reader, which must be the one
    the runs were scored with; `before` is the committed summary, whose recounts are reused where they fit."""
    import torch

    from components.data.shards import read_share
    from components.metrics.feature_nets import load_evaluator
    from components.metrics.stacked import PAPER_SAMPLES, channel_kls, mode_scores
    from components.training.loop import to_model_space

    reader, info = load_evaluator(EVALUATOR)
    if hashes != [info["hash"]]:
        raise SystemExit(f"{EVALUATOR} is reader {info['hash'][:12]}, the runs were scored with "
                         f"{', '.join(h[:12] for h in hashes)}: recount under one reader")

    def scores(u8: np.ndarray) -> dict:
        with torch.no_grad():
            modes = np.concatenate([reader.embed(to_model_space(torch.from_numpy(u8[i:i + 2000])))[1]
                                    .argmax(1).numpy() for i in range(0, len(u8), 2000)])
        out, kls = mode_scores(modes), channel_kls(modes)
        return {"modes": out["modes"], "reverse_kl": out["reverse_kl"], "channel_kl": sum(kls),
                "channel_kls": kls, "dependence_kl": out["reverse_kl"] - sum(kls), "samples": len(modes)}

    runs = {f.stem: kept_or_counted(f, before, hashes, scores) for f in sorted(SAMPLES.glob("*.npz"))}
    train = read_share(PREPARED, "train")[0]
    pick = np.sort(np.random.default_rng(0).choice(len(train), PAPER_SAMPLES, replace=False))
    return runs, scores(train[pick])


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
    summary_file = OUT / "summary.json"
    recounted, data = recount(hashes, json.loads(summary_file.read_text()) if summary_file.exists() else {})
    for config, rows in runs.items():
        mine = [m for m in (recounted.get(f"{config}-s{r['seed']}") for r in rows) if m]
        for key in ("channel_kl", "dependence_kl"):
            if mine:
                summary[config][key] = float(np.mean([m[key] for m in mine]))
    atomic_write(summary_file, json.dumps({"evaluator_hashes": hashes, "configs": summary,
                                           "runs": [r for rows in runs.values() for r in rows],
                                           "recount": recounted, "data": data, "anchors": ANCHORS}, indent=2) + "\n")
    lines = [f"Evaluator {', '.join(h[:12] for h in hashes)} (per_channel); 2-core CPU; `bash benchmarks/stacked_mnist.sh`. "
             "Mean ± std over training seeds. Reverse KL = the channels' digit KL + their dependence "
             "(recounted from each run's kept 26,000 samples).", "",
             "| run | seeds | modes (of 1,000) | reverse KL | channels' KL | dependence | FID | recall "
             "| train wall (min) | s / 1,000 samples |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for config, s in summary.items():
        cells = [mean_std(s, key, fmt) for key, fmt in (("modes", ".1f"), ("reverse_kl", ".3f"),
                                                        ("channel_kl", ".3f"), ("dependence_kl", ".3f"), ("fid", ".2f"),
                                                        ("recall", ".3f"), ("train_wall_min", ".1f"),
                                                        ("seconds_per_1k_samples", ".2f"))]
        lines.append(f"| {config} | {len(s['seeds'])} | " + " | ".join(cells) + " |")
    lines.append(f"| data: 26,000 training triples | — | {data['modes']} | {data['reverse_kl']:.3f} | "
                 f"{data['channel_kl']:.3f} | {data['dependence_kl']:.3f} | — | — | — | — |")
    for name, (modes, kl) in ANCHORS.items():
        lines.append(f"| {name} (published) | — | {modes} | {kl} | — | — | — | — | — | — |")
    atomic_write(OUT / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
