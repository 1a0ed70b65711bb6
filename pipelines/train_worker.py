"""What runs on each Ray Train worker (`_ray_worker`) and the callbacks both launchers share.

Kept apart from pipelines/train.py so a worker process imports no more than training needs (MLflow
only on rank 0 of a tracked run): worker start-up is paid once per trial in a sweep."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from components.config import Params
from components.training import checkpoint as ckpt
from components.training.loop import Worker, train_model


class _Callbacks:
    """Shared by both launchers: rank 0 logs to MLflow; checkpoints are the launcher's business."""

    def __init__(self, logger, save_checkpoint):  # logger: mlflow_store.RunLogger or None
        self.logger = logger
        self.save_checkpoint = save_checkpoint

    def log(self, step, metrics):
        if self.logger:
            self.logger.log_metrics(step, metrics)
        print(f"step {step}: " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()), flush=True)

    def samples(self, step, epoch, image):
        if self.logger:
            self.logger.log_image(image, f"samples/epoch_{epoch:04d}_step_{step:08d}.png")

    def checkpoint(self, step, state, metrics):
        self.save_checkpoint(step, state, metrics)


ORIGIN_FILE = "origin.json"  # beside a checkpoint: which run wrote it (PBT exploits copy it across trials)


def _ray_worker(config: dict) -> None:
    """train_loop_per_worker: runs on every Ray Train worker (in a temp cwd: paths are absolute).
    In a sweep (config["quick_eval"]) rank 0 scores the generator at every checkpoint and reports the
    metrics with it, and nothing writes to MLflow: the sweep's driver is the store's one writer."""
    import ray.train
    import ray.train.torch
    import ray.util

    ctx = ray.train.get_context()
    worker = Worker(ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device())
    params = Params.model_validate(config["params"])
    resume = None
    # the run's own latest checkpoint (after a worker restart), else the one a sweep trial starts from
    if (found := ray.train.get_checkpoint() or config.get("start_from")) is not None:
        with found.as_directory() as d:
            resume = ckpt.load(d)
    run_id, logger = config.get("run_id"), None
    if worker.rank == 0 and run_id:
        from components.tracking import mlflow_store

        logger = mlflow_store.RunLogger(config["tracking_uri"], run_id)
    quick = config.get("quick_eval")
    scorer = None
    if quick and worker.rank == 0:
        from pipelines.evaluate import QuickScorer

        scorer = QuickScorer(params, Path(quick["repo_root"]), quick["num_samples"])

    def report(step, state, metrics):
        metrics = {**metrics, "step": step}
        if quick and (pg := ray.util.get_current_placement_group()) is not None:
            metrics["placement_group"] = pg.id.hex()  # so the sweep can free it (pipelines/tune.py)
        if state is None:
            ray.train.report(metrics)  # every rank reports the same number of times
            return
        if scorer is not None:
            metrics.update(scorer(ckpt.generator_from_state(state)))
        with tempfile.TemporaryDirectory() as d:
            ckpt.save(state, d)
            (Path(d) / ORIGIN_FILE).write_text(json.dumps({"run": config.get("origin"), "step": step}))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))

    if resume is not None and worker.rank == 0:
        print(f"resuming from checkpoint at step {resume['step']}", flush=True)
    train_model(params, Path(config["prepared_dir"]), worker, _Callbacks(logger, report), resume)
