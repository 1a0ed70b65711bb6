"""`genpipe modes --dataset ring8|grid25`: the mode-collapse benchmark (components/benchmarks/modes.py).

Writes `<report_dir>/<dataset>.json` (every run: modes, % high quality, reverse KL, wall seconds,
the .npy of its samples; and mean ± std per configuration), `<report_dir>/<dataset>.md` (the table
the README shows) and `<report_dir>/<dataset>/*.npy`, all atomically."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from components.atomic import atomic_dir, atomic_write
from components.benchmarks.modes import MIXTURES, ModesError, benchmark, markdown, preset_description
from components.config import Params, load_params


def run(params: Params, repo_root: Path, dataset: str, params_path: str | None, overrides: list[str]) -> dict:
    if dataset not in MIXTURES:
        raise ModesError(f"--dataset {dataset!r}: the mode benchmark runs on {', '.join(MIXTURES)}")
    base_overrides = [f"preset={dataset}", *overrides]
    preset = load_params(params_path, base_overrides)  # validates the preset with the user's overrides
    report_dir = (Path(repo_root) / params.modes.report_dir).resolve()
    root = Path(repo_root).resolve()
    rel = report_dir.relative_to(root) if report_dir.is_relative_to(root) else report_dir
    with tempfile.TemporaryDirectory(prefix=f"genpipe-modes-{dataset}-") as tmp:
        samples_dir = Path(tmp) / "samples"
        report = benchmark(params, preset, dataset, params_path, base_overrides, Path(tmp) / "prepared", samples_dir,
                           rel / dataset)
        table = markdown(dataset, report["summary"], report["num_modes"], preset_description(dataset, preset))
        with atomic_dir(report_dir / dataset) as out:
            for f in samples_dir.iterdir():
                shutil.move(str(f), out / f.name)
        atomic_write(report_dir / f"{dataset}.md", table)
        atomic_write(report_dir / f"{dataset}.json", json.dumps(report, indent=2) + "\n")
    print(table)
    return report


def dry_run(params: Params, repo_root: Path, dataset: str, params_path: str | None, overrides: list[str]) -> dict:
    """What `run` would read and write (`genpipe modes --dry-run`); trains nothing, writes nothing."""
    from components.benchmarks.modes import configurations
    from components.options import written

    m, report_dir = params.modes, (Path(repo_root) / params.modes.report_dir).resolve()
    preset = load_params(params_path, [f"preset={dataset}", *overrides])
    configs = configurations(params, preset)
    runs = sum(m.preset_seeds if c.key == "preset" else m.seeds for c in configs)
    return {"reads": [f"preset {dataset} (components/presets/{dataset}.yaml) and source {dataset}, prepared in a "
                      "temporary folder"],
            "writes": [written(report_dir / f"{dataset}.json", repo_root, "every run and the summary"),
                       written(report_dir / f"{dataset}.md", repo_root, "the table"),
                       written(report_dir / dataset, repo_root, "each run's samples (.npy)")],
            "reuses": [],
            "notes": [f"{len(configs)} configurations, {runs} runs, {m.workers} at a time; no Ray, no MLflow"]}
