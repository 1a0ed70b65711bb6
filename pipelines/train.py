"""Stage `train`: launch the GAN training core on Ray Train (or in this process with --no-ray),
track it in MLflow, export the final generator to `train.output_dir`."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from components.config import Params
from components.data.shards import read_manifest
from components.tracking import mlflow_store
from components.tracking.logged_model import log_generator
from components.training import checkpoint as ckpt
from components.training.loop import NonFiniteLossError, Worker, plan, train_model
from components.failures import unwrap_failure
from pipelines.launch import LaunchError, check_resources, init_ray, ray_scaling
from pipelines.links import SUMMARY_FILE
from pipelines.ray_worker import RESUMED_METRIC, Callbacks, ray_worker

class TrainError(RuntimeError):
    pass


def run_name_for(params: Params, manifest: dict) -> str:
    """train.run_name, else <family>-<dataset>-<hash of the family's run key and the data>: every setting
    that changes the weights names a new run (and checkpoint folder); bookkeeping keys do not."""
    if params.train.run_name:
        return params.train.run_name
    key = {**params.family.run_key(params), "data": manifest["content_hash"]}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    return f"{params.model.family}-{manifest['dataset']}-{digest}"


def _fit_with_ray(params: Params, prepared_dir: Path, storage: Path, run_name: str, uri: str, run_id: str) -> dict:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer

    started = time.perf_counter()
    init_ray()
    check_resources(params)
    s = params.scaling
    trainer = TorchTrainer(
        ray_worker,
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
    state = ckpt.load_checkpoint(result.checkpoint)
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
    train_model(params, prepared_dir, Worker(), Callbacks(logger, save), resume)
    logger.flush(params.tracking.flush_timeout_s)
    return saved.get("state") or resume


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
        if isinstance(exc, (NonFiniteLossError, TrainError, LaunchError)) or "non-finite loss" in str(exc) or unreachable:
            raise TrainError(f"training failed: {unwrap_failure(exc)}") from exc
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
