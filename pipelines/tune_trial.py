"""A sweep's trial, run in a Tune actor. A one-worker trial trains right there, in the actor's process
(`_in_process`): no Train controller, no worker group, so its start-up costs what loading its data and
model costs. A trial of several workers starts its own Ray Train run (the Train-inside-Tune pattern of
Ray Train V2) and relays each report, with its checkpoint, to Tune (`_with_train`). Either way Tune gets
the same reports and checkpoints, so ASHA, PBT, retries and resume do not know which ran. Shared by the
tune stage only, kept apart so the stage module is the driver alone."""
from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from components.config import Params
from components.tuning.search import TuneError
from components.tuning.space import flatten
from components.failures import unwrap_failure
from components.storage import location
from pipelines.launch import ray_scaling, ray_storage
from pipelines.ray_worker import ORIGIN_FILE, Callbacks, checkpoint_reporter, ray_worker, training_progress

# Each report also carries the trial's numeric config under this prefix: PBT's perturbations then show
# as metric curves in the trial's MLflow run (params cannot change once logged).
CONFIG_PREFIX = "config/"


def trial_params(base: Params, config: dict[str, Any]) -> Params:
    """A trial: the space's values over params, at the sweep's budget and cadence."""
    t = base.tune
    tuned = base.with_overrides(flatten(config), source="tune.space")
    return tuned.with_overrides({
        "train.max_steps": t.trial_steps, "train.epochs": 10**6,  # the step budget decides
        "train.checkpoint_every": t.eval_every, "train.log_every": min(tuned.train.log_every, t.eval_every),
        "train.keep_checkpoints": 2, "scaling.num_workers": t.num_workers, "scaling.max_failures": 0,
    })


def _relay_callback(results):
    from ray.train.v2.api.callback import UserCallback

    class RelayToTune(UserCallback):
        """In the Train controller: hand each report, with its persisted checkpoint, to the trial."""

        def after_report(self, run_context, metrics, checkpoint):
            results.put((metrics[0], checkpoint))  # path and filesystem: local or object storage

    return RelayToTune()


def _end_train_run(pg_hex: str | None) -> None:
    """Remove a Train run's placement group, which ends its workers and so the run. For a trial that
    Tune stops (ASHA, PBT's pause, the end of its budget) while its Train run is still going: with
    reused trial actors nothing else would end it, and Ray Train's own cleaner needs the State API
    (the dashboard), which a local genpipe Ray does not start."""
    if not pg_hex:
        return
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

    pg = PlacementGroup(PlacementGroupID(bytes.fromhex(pg_hex)))
    if placement_group_table(pg).get("state") not in (None, "REMOVED"):
        remove_placement_group(pg)


def _origin(checkpoint) -> dict:
    with checkpoint.as_directory() as d:
        path = Path(d) / ORIGIN_FILE
        return json.loads(path.read_text()) if path.is_file() else {}


def in_process(params: Params) -> bool:
    return params.tune.num_workers == 1 and params.tune.in_process


def trial_resources(params: Params) -> dict:
    """What Tune reserves for each trial. An in-process trial holds its worker's share (CPUs, the custom
    resources, tune.gpus_per_trial of a GPU: a fraction lets small trials share one); a Train-run trial
    only waits, its Train workers hold the resources (a 1-byte memory request gives Tune the non-empty
    bundle it requires)."""
    t, s = params.tune, params.scaling
    if not in_process(params):
        return {"cpu": 0, "memory": 1}
    return {"cpu": s.cpus_per_worker, "gpu": t.gpus_per_trial if s.use_gpu else 0, **s.resources_per_worker}


def run_trial(config: dict, *, base: dict, repo_root: str, storage: str, published: dict | None = None) -> None:
    from ray import tune

    started = time.time()
    params = trial_params(Params.model_validate(base), config)
    trial_id = tune.get_context().get_trial_id()
    start = tune.get_checkpoint()
    origin = {"run": trial_id, "step": 0}
    if start is not None:
        origin = {**origin, **_origin(start)}
        how = "exploits" if origin["run"] != trial_id else "resumes"
        print(f"trial {trial_id} {how} the checkpoint of trial {origin['run']} at step {origin['step']} "
              f"with {flatten(config)}", flush=True)
    # Each report also carries the trial's numeric config and where its state came from.
    extra = {f"{CONFIG_PREFIX}{k}": v for k, v in flatten(config).items() if isinstance(v, (int, float))}
    extra.update(origin_step=origin["step"], exploited=int(origin["run"] != trial_id), origin_trial=origin["run"])

    def to_tune(metrics: dict) -> dict:
        kept = {k: v for k, v in metrics.items()
                if isinstance(v, (int, float)) or k in ("placement_group", "worker_nodes")}
        return {**kept, **extra}

    how = _in_process if in_process(params) else _with_train
    how(params, Path(repo_root), trial_id, start, to_tune, started, storage=storage, published=published)


def _in_process(params: Params, repo_root: Path, trial_id: str, start, to_tune, started: float, *,
                published: dict | None, **_) -> None:
    """The training core in this actor, reporting straight to Tune (a stopped trial's tune.report exits)."""
    import ray
    import torch
    from ray import tune

    from components.evaluation import QuickScorer
    from components.training import checkpoint as ckpt
    from components.training.loop import Worker, train_model

    from components.evaluation import node_view

    params, repo_root = node_view(params, repo_root, published)  # on a node that cannot see the driver's files
    prepared = published["prepared"] if published else params.prepared_path(repo_root)  # read per rank from there
    node = ray.get_runtime_context().get_node_id()

    def send(metrics, folder):
        tune.report(to_tune({**metrics, "worker_nodes": node}),
                    checkpoint=tune.Checkpoint.from_directory(folder) if folder else None)

    try:
        resume = ckpt.load_checkpoint(start) if start is not None else None
        scorer = QuickScorer(params, repo_root, params.tune.eval_samples)
        progress = training_progress(params, prepared, 1, resume, f"trial {trial_id}", in_ray=True)
        worker = Worker(device=torch.device("cuda" if params.scaling.use_gpu else "cpu"))
        callbacks = Callbacks(None, checkpoint_reporter(send, scorer, trial_id), progress, started)
        train_model(params, prepared, worker, callbacks, resume)
    except Exception as exc:  # not SystemExit: that is Tune stopping the trial
        raise TuneError(f"trial {trial_id} failed: {unwrap_failure(exc)}") from None


def _with_train(params: Params, repo_root: Path, trial_id: str, start, to_tune, started: float, *,
                storage: str, published: dict | None) -> None:
    from ray import tune
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Queue

    prepared = published["prepared"] if published else str(params.prepared_path(repo_root))

    results = Queue(actor_options={"num_cpus": 0})
    # A fresh Train run per start: its state comes from Tune's checkpoint (own or, after a PBT
    # exploit, the donor's), never from an older Train run of this trial. It keeps every checkpoint
    # (Tune copies each as it is reported) and is deleted when the trial ends.
    train_run = f"{trial_id}-{uuid.uuid4().hex[:8]}"
    trainer = TorchTrainer(
        ray_worker,
        train_loop_config={"params": params.model_dump(mode="json"), "prepared_dir": prepared,
                           "quick_eval": {"repo_root": str(repo_root), "num_samples": params.tune.eval_samples,
                                          "published": published},
                           "origin": trial_id, "start_from": start, "trial_started": started},
        scaling_config=ray_scaling(params.scaling),
        run_config=RunConfig(name=train_run, **ray_storage(location(storage)), checkpoint_config=CheckpointConfig(num_to_keep=None),
                             failure_config=FailureConfig(max_failures=0), callbacks=[_relay_callback(results)]),
    )
    outcome: dict = {}

    def fit():
        try:
            trainer.fit()
        except BaseException as exc:  # relayed to the trial's thread below
            outcome["error"] = exc
        finally:
            results.put(None)

    # fit() blocks until training ends, so it runs beside this thread, which reports to Tune. A trial
    # that Tune stops (ASHA, PBT, the end of its budget) leaves this loop at tune.report, and ends
    # its Train run on the way out.
    threading.Thread(target=fit, daemon=True, name="train-run").start()
    pg_hex, finished = None, False
    try:
        while (item := results.get()) is not None:
            metrics, checkpoint = item
            pg_hex = metrics.get("placement_group", pg_hex)
            tune.report(to_tune(metrics), checkpoint=checkpoint)
        finished = True
    finally:
        if not finished:  # Tune stopped this trial (tune.report raised): end its Train run now
            _end_train_run(pg_hex)
        (location(storage) / train_run).delete_dir()
    if "error" in outcome:
        raise TuneError(f"trial {trial_id} failed: {unwrap_failure(outcome['error'])}") from None
