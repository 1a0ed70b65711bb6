"""What runs on each Ray Train worker (`ray_worker`) and the callbacks both launchers share.

Kept apart from pipelines/train.py so a worker process imports no more than training needs (MLflow
only on rank 0 of a tracked run): worker start-up is paid once per trial in a sweep."""
from __future__ import annotations

import importlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from components.config import Params
from components.data.kinds import RATE_SUFFIX
from components.progress import Progress, format_metrics
from components.training import checkpoint as ckpt
from components.training.loop import Worker, plan, train_model
from pipelines.launch import CONSOLE_ENV


def console_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """What the console shows of a log point: the losses (a phased task logs only its phase's) and the
    throughput in its data kind's unit (images_per_s, points_per_s, tokens_per_s); MLflow keeps the rest."""
    return {k: v for k, v in metrics.items() if "loss" in k or k.endswith(RATE_SUFFIX)}


def _ray_bar(total, desc, unit, initial, file):
    """A bar the driver draws (Ray's tqdm): a worker's stdout reaches the driver line by line, so a bar
    redrawn in place there would arrive as one line per redraw."""
    from ray.experimental.tqdm_ray import tqdm

    class RayBar(tqdm):
        def set_postfix_str(self, s="", refresh=True):  # Ray's bar has no postfix: the metrics join its label,
            self._desc = f"{desc} {s}"  # set without a send of their own (sends are throttled to one a second)

    bar = RayBar(total=total, desc=desc, unit=unit)
    bar.n = initial
    return bar


def training_progress(params: Params, prepared_dir: Path, world_size: int, resume: dict | None,
                      desc: str = "train", in_ray: bool = False) -> Progress:
    """Rank 0's progress display over the run's steps. In a Ray worker the launcher says whether the
    driver's console is a terminal (CONSOLE_ENV); unset (Ray started elsewhere), plain lines."""
    total = plan(params, prepared_dir, world_size).total_steps
    start = int(resume["step"]) if resume is not None else 0
    if in_ray:
        return Progress(total, desc, start=start, tty=os.environ.get(CONSOLE_ENV) == "1", bar=_ray_bar)
    return Progress(total, desc, start=start)


STARTUP_METRIC = "startup_s"  # a sweep trial's start-up: seconds from the trial's start to its first step


class Callbacks:
    """Shared by both launchers and sweep trials: rank 0 logs to MLflow and shows progress; checkpoints are
    the launcher's business. Without a `progress`, each log point is printed as a line. Given the time a
    sweep trial started (time.time(), comparable across the processes of one machine), every checkpoint's
    metrics carry the trial's start-up time (STARTUP_METRIC)."""

    def __init__(self, logger, save_checkpoint, progress: Progress | None = None,  # logger: RunLogger or None
                 trial_started: float | None = None):
        self.logger = logger
        self.save_checkpoint = save_checkpoint
        self.progress = progress
        self.trial_started = trial_started
        self.startup_s: float | None = None

    def ready(self, step):
        if self.trial_started is not None:
            self.startup_s = time.time() - self.trial_started

    def log(self, step, metrics):
        if self.logger:
            self.logger.log_metrics(step, metrics)
        if self.progress is not None:
            self.progress.update(step, console_metrics(metrics))
        else:
            print(f"step {step}: {format_metrics(metrics)}", flush=True)

    def samples(self, step, epoch, image, suffix):
        if self.logger:
            self.logger.log_preview(image, f"samples/epoch_{epoch:04d}_step_{step:08d}{suffix}")

    def checkpoint(self, step, state, metrics):
        if self.logger and state is not None:  # points the store has not taken yet survive a crash with it
            state.update(self.logger.pending_state())
        if self.startup_s is not None:
            metrics = {**metrics, STARTUP_METRIC: self.startup_s}
        self.save_checkpoint(step, state, metrics)


RESUMED_METRIC = "resumed_at_step"
NODES_TAG = "genpipe.worker_nodes"  # MLflow tag: the Ray node id of each rank's worker, rank order


def _worker_nodes(worker: Worker) -> list[str]:
    """Every rank's Ray node id, in rank order (a collective: all ranks call it)."""
    import ray
    import torch.distributed as dist

    mine = ray.get_runtime_context().get_node_id()
    if worker.world_size == 1 or not dist.is_initialized():
        return [mine]
    every: list = [None] * worker.world_size
    dist.all_gather_object(every, mine)
    return every


def _from_rank0(worker: Worker, value):
    """Rank 0's `value` on every rank (a collective)."""
    import torch.distributed as dist

    if worker.world_size == 1 or not dist.is_initialized():
        return value
    box = [value if worker.rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _same_folder(path: str, uri: str) -> bool:
    """A Checkpoint's path (inside its filesystem: no scheme) names the folder of a URI or local path."""
    from components.storage import location

    return path.rstrip("/") == location(uri).path


def _resume_state(worker: Worker, recorded, run_dir: str | None) -> dict | None:
    """What to start from: after a restart, the newest checkpoint persisted to the run's storage. Ray
    resumes from the last one its controller recorded, which can be one interval older when the failure
    came between a checkpoint's upload and that record; the hash record says a newer folder is whole.
    Rank 0 picks it for all (a straggler of the failed attempt may still be writing one).
    A sweep trial (no run_dir) starts from its Tune checkpoint."""
    newest = ckpt.newest_whole(run_dir) if run_dir and worker.rank == 0 else None  # local path or storage URI
    newest = _from_rank0(worker, newest.uri if newest else None) if run_dir else None
    if recorded is not None and (newest is None or _same_folder(recorded.path, newest)):
        return ckpt.load_checkpoint(recorded)
    if newest is None:
        return None
    state = ckpt.load_at(newest)
    if recorded is not None:
        try:
            state = max(state, ckpt.load_checkpoint(recorded), key=lambda s: int(s["step"]))
        except ckpt.CheckpointIntegrityError as e:  # damaged after its record: the newest whole one
            print(f"checkpoint: skipping the one Ray recorded, resuming from {newest}: {e}", flush=True)
    return state


# Ray Train V2 logs every report (its whole metrics dict) and every persisted checkpoint at INFO from the
# worker: two long lines per checkpoint on the stage's console. These modules' own loggers are set to
# WARNING (the first is named by its file path, so it hangs off the root logger, not "ray.train").
RAY_REPORT_MODULES = ("ray.train.v2._internal.execution.context", "ray.train.v2._internal.execution.storage")


def quiet_ray_reports() -> list[logging.Logger]:
    """Called in the worker's train function, after Ray has configured the worker's logging (a later
    logging.config call would reset them). A Ray without these modules only keeps its noise."""
    quieted = []
    for name in RAY_REPORT_MODULES:
        try:
            logger = importlib.import_module(name).logger
        except (ImportError, AttributeError):
            continue
        logger.setLevel(logging.WARNING)
        quieted.append(logger)
    return quieted


ORIGIN_FILE = "origin.json"  # beside a checkpoint: which run wrote it (PBT exploits copy it across trials)


def checkpoint_reporter(send, scorer=None, origin: str | None = None):
    """Callbacks' save_checkpoint for Ray: `send(metrics, folder)` hands the metrics, and on rank 0 a
    checkpoint folder written from the state (else None), to Ray Train or to Tune. A sweep's `scorer`
    adds the quick metrics of the checkpoint's generator; ORIGIN_FILE names the run that wrote it."""

    def report(step, state, metrics):
        metrics = {**metrics, "step": step}
        if state is None:
            send(metrics, None)  # every rank reports the same number of times
            return
        if scorer is not None:
            metrics.update(scorer(ckpt.generator_from_state(state)))
        with tempfile.TemporaryDirectory() as d:
            ckpt.save(state, d)
            (Path(d) / ORIGIN_FILE).write_text(json.dumps({"run": origin, "step": step}))
            send(metrics, d)

    return report


def ray_worker(config: dict) -> None:
    """train_loop_per_worker: runs on every Ray Train worker (in a temp cwd: paths are absolute).
    In a sweep (config["quick_eval"]) rank 0 scores the generator at every checkpoint and reports the
    metrics with it, and nothing writes to MLflow: the sweep's driver is the store's one writer."""
    import ray.train
    import ray.train.torch
    import ray.util

    quiet_ray_reports()
    ctx = ray.train.get_context()
    worker = Worker(ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device())
    params = Params.model_validate(config["params"])
    resume = _resume_state(worker, ray.train.get_checkpoint() or config.get("start_from"), config.get("checkpoint_dir"))
    run_id, logger = config.get("run_id"), None
    if worker.rank == 0 and run_id:
        from components.tracking import mlflow_store

        logger = mlflow_store.RunLogger(config["tracking_uri"], run_id)
        if resume is not None:  # this run's own checkpoint (a tracked run has no start_from): its unsent points
            logger.requeue(resume)
    quick = config.get("quick_eval")
    scorer = None
    if quick and worker.rank == 0:
        from components.evaluation import QuickScorer

        from components.evaluation import node_view

        scorer = QuickScorer(*node_view(params, Path(quick["repo_root"]), quick.get("published")), quick["num_samples"])

    def send(metrics, folder):
        if quick and (pg := ray.util.get_current_placement_group()) is not None:
            metrics["placement_group"] = pg.id.hex()  # so the sweep can free it (pipelines/tune_trial.py)
            metrics["worker_nodes"] = " ".join(nodes)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder) if folder else None)

    nodes = _worker_nodes(worker)
    if worker.rank == 0:
        print(f"workers by rank on Ray nodes: {' '.join(nodes)}", flush=True)
        if logger is not None:  # per attempt: a restart after a node loss shows where the run went on
            logger.set_tag(NODES_TAG, " ".join(nodes))
    if resume is not None and worker.rank == 0:
        print(f"resuming from checkpoint at step {resume['step']}", flush=True)
        if logger is not None:  # one point per restart: MLflow shows where and how often a run resumed
            logger.log_metrics(int(resume["step"]), {RESUMED_METRIC: float(resume["step"])})
    progress = None
    if worker.rank == 0:
        desc = f"trial {config['origin']}" if quick else "train"
        progress = training_progress(params, config["prepared_dir"], worker.world_size, resume, desc, in_ray=True)
    try:
        callbacks = Callbacks(logger, checkpoint_reporter(send, scorer, config.get("origin")), progress,
                              config.get("trial_started"))
        train_model(params, config["prepared_dir"], worker, callbacks, resume)  # a local path or a URI
        if logger is not None:  # the logger lives in this process: what it buffered goes out before it ends
            logger.flush(params.tracking.flush_timeout_s)
    finally:
        if logger is not None:
            logger.close()
