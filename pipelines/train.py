"""Stage `train`: launch the GAN training core on Ray Train (or in this process with --no-ray),
track it in MLflow, export the final generator to `train.output_dir`."""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from components.config import SAMPLING_KEYS, Params
from components.data.shards import read_manifest
from components.tracking import mlflow_store
from components.tracking.logged_model import log_generator
from components.training import checkpoint as ckpt
from components.training.loop import NonFiniteLossError, Worker, plan, train_model
from pipelines.train_worker import RESUMED_METRIC, _Callbacks, _ray_worker

SUMMARY_FILE = "train_summary.json"
# knobs that change the trained weights; logging/checkpoint cadence does not
_BOOKKEEPING = {"log_every", "checkpoint_every", "keep_checkpoints", "sample_grid", "sample_every", "run_name", "output_dir", "num_threads"}


class TrainError(RuntimeError):
    pass


def run_name_for(params: Params, manifest: dict) -> str:
    if params.train.run_name:
        return params.train.run_name
    train = {k: v for k, v in params.train.model_dump(mode="json").items() if k not in _BOOKKEEPING}
    key = {"seed": params.seed, "model": params.model.model_dump(mode="json"), "train": train,
           "num_workers": params.scaling.num_workers, "data": manifest["content_hash"]}
    if params.model.is_diffusion:  # sampling settings do not change the weights
        key["diffusion"] = params.diffusion.model_dump(mode="json", exclude=set(SAMPLING_KEYS))
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    return f"{params.model.family}-{manifest['dataset']}-{digest}"


# One machine: no spot preemption to watch and no Prometheus to feed (each costs an actor or a thread
# per run, which a sweep of short trials pays again and again); Train's controller polls its workers
# every 0.5 s instead of 2 s, so reports, checkpoints and failures are seen sooner.
LOCAL_RAY_ENV = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
                 "RAY_TRAIN_METRICS_ENABLED": "0", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}


def init_ray() -> None:
    """Join $RAY_ADDRESS, or start a private local Ray (see the comment inside)."""
    import ray

    if ray.is_initialized():
        return
    # RAY_ADDRESS=ray://… or host:port joins a cluster; unset, a private local Ray starts
    # ("local" rather than auto-discovery, which is ambiguous when other local Rays run),
    # without the dashboard (slow to start on small machines). Ray's INFO chatter is hidden
    # so the stage log shows training progress; our prints reach the driver unpatched.
    address = os.environ.get("RAY_ADDRESS") or "local"
    env = LOCAL_RAY_ENV if address == "local" else {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}
    ray.init(address=address, **({"include_dashboard": False} if address == "local" else {}),
             logging_config=ray.LoggingConfig(log_level="ERROR"), runtime_env={"env_vars": env})


def _check_resources(params: Params) -> None:
    """Refuse before start-up what the cluster can never hold (Ray would wait for it forever)."""
    import ray

    total = ray.cluster_resources()
    s = params.scaling
    n = s.num_workers
    need = {"CPU": (n * s.cpus_per_worker, f"scaling.num_workers = {n} × scaling.cpus_per_worker = {s.cpus_per_worker}"),
            **({"GPU": (n, f"scaling.num_workers = {n} with scaling.use_gpu")} if s.use_gpu else {}),
            **{name: (n * amount, f"scaling.num_workers = {n} × scaling.resources_per_worker[{name!r}] = {amount:g}")
               for name, amount in s.resources_per_worker.items()}}
    for name, (amount, why) in need.items():
        if amount > total.get(name, 0):
            raise TrainError(f"{why} needs {amount:g} {name}{'s' if name in ('CPU', 'GPU') else ''}; "
                             f"the Ray cluster has {total.get(name, 0):g}")
    if s.placement_strategy == "STRICT_SPREAD":
        alive = sum(1 for node in ray.nodes() if node["Alive"])
        if n > alive:
            raise TrainError(f"scaling.placement_strategy = STRICT_SPREAD puts each of the {n} workers on its own node; "
                             f"the Ray cluster has {alive} nodes")


def ray_scaling(s):
    """Ray Train's ScalingConfig for the `scaling` section (the train stage and every sweep trial)."""
    from ray.train import ScalingConfig

    return ScalingConfig(num_workers=s.num_workers, use_gpu=s.use_gpu, placement_strategy=s.placement_strategy,
                         resources_per_worker={"CPU": s.cpus_per_worker, **s.resources_per_worker})


def _fit_with_ray(params: Params, prepared_dir: Path, storage: Path, run_name: str, uri: str, run_id: str) -> dict:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer

    started = time.perf_counter()
    init_ray()
    _check_resources(params)
    s = params.scaling
    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config={"params": params.model_dump(mode="json"), "prepared_dir": str(prepared_dir),
                           "tracking_uri": uri, "run_id": run_id,
                           "checkpoint_dir": str(storage / run_name)},
        scaling_config=ray_scaling(s),
        run_config=RunConfig(
            name=run_name,
            storage_path=str(storage),  # same name + storage → resume from its latest checkpoint
            checkpoint_config=CheckpointConfig(num_to_keep=params.train.keep_checkpoints),
            failure_config=FailureConfig(max_failures=s.max_failures),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise TrainError("Ray Train finished without a checkpoint")
    with result.checkpoint.as_directory() as d:
        state = ckpt.load(d)
    print(f"Ray Train wall time (incl. start-up): {time.perf_counter() - started:.1f}s", flush=True)
    return state


def _fit_in_process(params: Params, prepared_dir: Path, storage: Path, run_name: str, uri: str, run_id: str) -> dict:
    store = ckpt.LocalCheckpoints(storage / run_name, keep=params.train.keep_checkpoints)
    latest = store.latest()
    resume = ckpt.load(latest) if latest else None
    if resume is not None:
        print(f"resuming from checkpoint at step {resume['step']}", flush=True)
    saved: dict = {}

    def save(step, state, metrics):
        store.save(state)
        saved["state"] = state

    logger = mlflow_store.RunLogger(uri, run_id)
    if resume is not None:
        logger.requeue(resume)  # points unsent when that checkpoint was taken
        logger.log_metrics(int(resume["step"]), {RESUMED_METRIC: float(resume["step"])})
    train_model(params, prepared_dir, Worker(), _Callbacks(logger, save), resume)
    logger.flush(params.tracking.flush_timeout_s)
    return saved.get("state") or resume


def _unwrap_failure(exc: BaseException) -> str:
    """Ray wraps worker exceptions; surface the NaN step (or the root message) plainly."""
    text = str(exc)
    m = re.search(r"non-finite loss at step \d+[^\n]*", text) or re.search(r"\d+ metric points and \d+ images not sent[^\n]*", text)
    return m.group(0) if m else text.strip().splitlines()[-1] if text.strip() else type(exc).__name__


def run(params: Params, repo_root: Path, use_ray: bool = True) -> dict:
    prepared_dir = params.prepared_path(repo_root)
    manifest = read_manifest(prepared_dir)
    plan(params, prepared_dir, params.scaling.num_workers if use_ray else 1)  # batch-size errors before start-up
    run_name = run_name_for(params, manifest) + ("" if use_ray else "-noray")
    storage = Path(params.scaling.storage_path or repo_root / "data" / "checkpoints").resolve()
    storage.mkdir(parents=True, exist_ok=True)

    uri = mlflow_store.resolve_uri(params.tracking.uri, repo_root)
    client = MlflowClient(uri)
    exp_id = mlflow_store.experiment_id(client, params.experiment_name, mlflow_store.artifact_root_for(uri))
    previous = mlflow_store.find_run(client, exp_id, run_name)
    if previous is not None:
        run_id = previous.info.run_id
        client.update_run(run_id, status="RUNNING")
    else:
        run = client.create_run(exp_id, run_name=run_name, tags={mlflow_store.RUN_NAME_TAG: run_name,
                                                                  "genpipe.launcher": "ray" if use_ray else "process"})
        run_id = run.info.run_id
        client.log_batch(run_id, params=[mlflow.entities.Param(k, str(v)) for k, v in params.flat().items()])
    print(f"run {run_name}: MLflow run {run_id} in experiment {params.experiment_name!r} at {uri}", flush=True)

    fit = _fit_with_ray if use_ray else _fit_in_process
    try:
        state = fit(params, prepared_dir, storage, run_name, uri, run_id)
    except BaseException as exc:  # includes KeyboardInterrupt: the run must not stay RUNNING
        unreachable = isinstance(exc, mlflow_store.TrackingUnavailableError) or "TrackingUnavailableError" in str(exc)
        try:  # not when the store is what failed: that would wait on it again (the run stays RUNNING; a rerun ends it)
            if not unreachable:
                client.set_terminated(run_id, status="FAILED" if not isinstance(exc, KeyboardInterrupt) else "KILLED")
        except Exception as store_exc:  # report the training error, not this one
            print(f"could not mark MLflow run {run_id} failed: {store_exc}", flush=True)
        if isinstance(exc, (NonFiniteLossError, TrainError)) or "non-finite loss" in str(exc) or unreachable:
            raise TrainError(f"training failed: {_unwrap_failure(exc)}") from exc
        raise

    out_dir = (repo_root / params.train.output_dir).resolve()
    with ckpt.atomic_dir(out_dir) as tmp:  # generator + summary appear together or not at all
        ckpt.write_generator(state, tmp)
        mlflow.set_tracking_uri(uri)
        with mlflow.start_run(run_id=run_id):  # ends the run FINISHED once the model is logged
            info = log_generator(tmp)
        summary = {"run_name": run_name, "mlflow_run_id": run_id, "experiment": params.experiment_name,
                   "tracking_uri": uri, "model_uri": info.model_uri, "steps": state["step"], "epochs": state["epoch"],
                   "launcher": "ray" if use_ray else "process"}
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True))
    print(f"trained {state['step']} steps; generator in {out_dir}; logged model {info.model_uri}", flush=True)
    return summary
