"""The mode-collapse benchmark on the 2D mixtures (ring8, grid25), run by `genpipe modes --dataset …`.

Trains the dataset's preset (components/presets/<dataset>.yaml) with every objective, with and
without one-sided label smoothing (where the objective has targets), at each D:G ratio of
`modes.d_steps`, over `modes.seeds` seeds, plus the preset itself over `modes.preset_seeds` seeds.
Every table run gets the same number of D updates (`modes.d_updates`), so a k:1 run makes 1/k as
many G steps and costs about as much as a 1:1 run: the table compares settings at equal compute.
Each run is the plain training core (no Ray, no MLflow: hundreds of short runs) on the dataset
prepared as Parquet like any source; runs go `modes.workers` at a time, one thread each.

`benchmark` returns the report (every run: modes, % high quality, reverse KL, wall seconds, the .npy of
its samples; and mean ± std per configuration) and `markdown` its table; the stage writes them."""
from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.config import Params, load_params

MIXTURES = ("ring8", "grid25")


class ModesError(ValueError):
    pass


@dataclass(frozen=True)
class Configuration:
    key: str  # file-safe id
    objective: str
    label_smoothing: float
    d_steps: int
    overrides: tuple[str, ...]  # on top of the preset


def configurations(params: Params, preset: Params) -> list[Configuration]:
    """The preset first, then objective × label smoothing × D:G ratio."""
    from components.objectives import OBJECTIVES

    m, base = params.modes, preset.train
    out = [Configuration("preset", base.objective, base.label_smoothing, base.d_steps_per_g_step, ())]
    if base.max_steps is None:
        raise ModesError(f"preset {preset.preset!r} must set train.max_steps: the table's budget is counted in steps")
    d_updates = m.d_updates or base.max_steps * base.d_steps_per_g_step
    for name in m.objectives or OBJECTIVES.names():
        obj = OBJECTIVES.get(name)
        # A critic needs a Lipschitz constraint: wasserstein runs as WGAN-GP (R1 off, the penalty replaces it).
        extra = (f"train.gradient_penalty={m.critic_gradient_penalty}", "train.r1=0") if obj.critic else ()
        for k in m.d_steps:
            for eps in ((0.0, m.label_smoothing) if obj.has_targets else (0.0,)):
                key = f"{name}{'-gp' if obj.critic else ''}{f'-ls{eps:g}' if eps else ''}-d{k}"
                out.append(Configuration(key, name, eps, k, (
                    f"train.objective={name}", f"train.label_smoothing={eps}", f"train.d_steps_per_g_step={k}",
                    f"train.max_steps={max(1, d_updates // k)}", *extra)))
    return out


def _run_one(params_path: str | None, base_overrides: list[str], cfg: Configuration, seed: int, prepared: str,
             samples_dir: str) -> dict:
    """One training run in a pool process: train, sample with EMA weights when on, count modes."""
    import torch

    from components.data.shards import read_manifest
    from components.metrics.modes import mode_scores
    from components.training.checkpoint import generator_from_state
    from components.training.loop import NonFiniteLossError, Worker, train_model

    params = load_params(params_path, [*base_overrides, *cfg.overrides, f"seed={seed}", "train.num_threads=1"])
    row = {"config": cfg.key, "objective": cfg.objective, "label_smoothing": cfg.label_smoothing,
           "d_steps_per_g_step": cfg.d_steps, "seed": seed}
    final: dict = {}

    class Keep:  # nothing logged or saved: the final state is all a benchmark run needs
        def log(self, step, metrics): pass
        def samples(self, step, epoch, image, suffix): pass
        def checkpoint(self, step, state, metrics): final["state"] = state

    started = time.perf_counter()
    try:
        summary = train_model(params, Path(prepared), Worker(), Keep())
    except NonFiniteLossError as e:
        return {**row, "status": "diverged", "error": str(e), "steps": e.step,
                "wall_seconds": time.perf_counter() - started}
    g = generator_from_state(final["state"])
    torch.set_num_threads(1)
    fake = params.family.draw(g, params.modes.num_samples, params.evaluate.seed, None, {}, params.model.latent_dim).numpy()
    wall = time.perf_counter() - started
    name = f"{cfg.key}-s{seed}.npy"
    np.save(Path(samples_dir) / name, fake.astype(np.float32))
    mixture = read_manifest(Path(prepared))["mixture"]
    return {**row, "status": "ok", "steps": summary["step"], "wall_seconds": wall, "samples": name,
            **mode_scores(fake, mixture["centers"], mixture["sigma"])}


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    return (float(np.mean(values)), float(np.std(values))) if values else (None, None)


def summarise(runs: list[dict], configs: list[Configuration]) -> list[dict]:
    out = []
    for cfg in configs:
        mine = [r for r in runs if r["config"] == cfg.key]
        ok = [r for r in mine if r["status"] == "ok"]
        row = {"config": cfg.key, "objective": cfg.objective, "label_smoothing": cfg.label_smoothing,
               "d_steps_per_g_step": cfg.d_steps, "runs": len(mine), "ok": len(ok),
               "diverged": sum(r["status"] == "diverged" for r in mine)}
        for metric in ("modes", "high_quality", "reverse_kl", "wall_seconds"):
            row[f"{metric}_mean"], row[f"{metric}_std"] = _mean_std([r[metric] for r in ok])
        out.append(row)
    return out


def markdown(dataset: str, summary: list[dict], num_modes: int, preset_desc: str) -> str:
    def pm(row, metric, scale=1.0, digits=2):
        m, s = row[f"{metric}_mean"], row[f"{metric}_std"]
        return "—" if m is None else f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}"

    lines = [f"**{dataset}** ({preset_desc}; mean ± std over seeds; a diverged run stopped on a non-finite loss)", "",
             "| configuration | objective | label smoothing | D:G | seeds | modes (of %d) | high quality %% | reverse KL | s / run |"
             % num_modes, "|---|---|---|---|---|---|---|---|---|"]
    for r in summary:
        seeds = f"{r['ok']}/{r['runs']}" + (f" ({r['diverged']} diverged)" if r["diverged"] else "")
        lines.append(f"| {r['config']} | {r['objective']} | {r['label_smoothing']:g} | {r['d_steps_per_g_step']}:1 | "
                     f"{seeds} | {pm(r, 'modes')} | {pm(r, 'high_quality', 100, 1)} | {pm(r, 'reverse_kl', 1, 3)} | "
                     f"{pm(r, 'wall_seconds', 1, 0)} |")
    return "\n".join(lines) + "\n"


def preset_description(dataset: str, preset: Params) -> str:
    """The preset's settings, as the table's caption shows them."""
    return f"preset `{dataset}`: {preset.train.objective}, pack {preset.train.pack}, " \
           f"EMA {preset.train.ema_decay:g}, R1 {preset.train.r1:g}, {preset.train.max_steps} steps"


def benchmark(params: Params, preset: Params, dataset: str, params_path: str | None, base_overrides: list[str],
              prepared: Path, samples_dir: Path, samples_at: Path) -> dict:
    """Every run of the table on `dataset` (prepared as Parquet in `prepared`), `params.modes.workers` at a
    time: the report. Each run's samples are saved in `samples_dir` and named in the report as under
    `samples_at`."""
    from components.data.shards import write_prepared
    from components.data.sources import SOURCES

    configs = configurations(params, preset)
    m = params.modes
    jobs = [(c, s) for c in configs for s in range(m.preset_seeds if c.key == "preset" else m.seeds)]
    jobs.sort(key=lambda j: -j[0].d_steps)  # longest first: better packing of the pool
    started = time.perf_counter()
    manifest = write_prepared(SOURCES.get(dataset)(preset.data), preset.data, preset.seed, prepared)
    samples_dir.mkdir()
    print(f"modes {dataset}: {len(configs)} configurations, {len(jobs)} runs, {m.workers} at a time", flush=True)
    runs = []
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no inherited torch/thread state
    with ProcessPoolExecutor(max_workers=m.workers, mp_context=ctx) as pool:
        futures = [pool.submit(_run_one, params_path, base_overrides, c, s, str(prepared), str(samples_dir))
                   for c, s in jobs]
        for i, fut in enumerate(as_completed(futures), 1):
            r = fut.result()
            runs.append(r)
            shown = (f"modes {r['modes']}, HQ {100 * r['high_quality']:.1f}%, rKL {r['reverse_kl']:.3f}"
                     if r["status"] == "ok" else r["status"])
            print(f"[{i}/{len(jobs)}] {r['config']} seed {r['seed']}: {shown} ({r['wall_seconds']:.0f} s)", flush=True)
    runs.sort(key=lambda r: ([c.key for c in configs].index(r["config"]), r["seed"]))
    for r in runs:
        if "samples" in r:
            r["samples"] = str(samples_at / r["samples"])
    return {"dataset": dataset, "num_modes": len(manifest["mixture"]["centers"]),
            "protocol": {"num_samples": m.num_samples, "high_quality_within_sigmas": 3.0,
                         "sigma": manifest["mixture"]["sigma"]},
            "preset": preset.model_dump(mode="json", include={"model", "train"}),
            "summary": summarise(runs, configs), "runs": runs, "wall_seconds_total": time.perf_counter() - started}
