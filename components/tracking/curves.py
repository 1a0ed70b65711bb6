"""A run's training curves as DVC plots: one CSV per metric (`step,<metric>`) in one folder, read back from
the MLflow run's metric history — the one record of every step, steps of attempts before a restart
included. One file per metric so that a stage-level DVC plot (x: step; y: the file's last column) fits any
family (GANs log d_loss and g_loss, diffusion and VAEs `loss`) and `dvc plots diff` overlays commits."""
from __future__ import annotations

from pathlib import Path

from components.atomic import atomic_dir
from components.data.kinds import RATE_SUFFIX

def is_curve(name: str) -> bool:
    """Losses, throughput (images_per_s, or in the data kind's unit: points_per_s, tokens_per_s) and the
    diffusion-noised D's T and r_d; beliefs, epochs, restarts and evaluation scores stay in MLflow only."""
    return "loss" in name or name.endswith(RATE_SUFFIX) or name.startswith("diffusion_")


def curve_points(history) -> list[tuple[int, float]]:
    """One value per step, sorted by step. A step trained twice (a restart from an older checkpoint) keeps
    its newest point: the one the final weights followed."""
    newest: dict[int, object] = {}
    for m in history:
        if m.step not in newest or m.timestamp >= newest[m.step].timestamp:
            newest[m.step] = m
    return [(step, newest[step].value) for step in sorted(newest)]


def write_train_curve(uri: str, run_id: str, path: str | Path) -> dict[str, int]:
    """Write `path/<metric>.csv` for each curve metric of the run (all or nothing); returns the number of
    points per metric."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    names = sorted(n for n in client.get_run(run_id).data.metrics if is_curve(n))
    written = {}
    with atomic_dir(path) as tmp:
        for name in names:
            points = curve_points(client.get_metric_history(run_id, name))
            rows = "".join(f"{step},{value:.6g}\n" for step, value in points)
            (tmp / f"{name}.csv").write_text(f"step,{name}\n{rows}")
            written[name] = len(points)
    return written
