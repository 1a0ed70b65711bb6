"""Stage `train`: launch the GAN training core on Ray Train (or in this process with --no-ray),
track it in MLflow, export the final generator to `train.output_dir`."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import mlflow
import torch
from mlflow.tracking import MlflowClient

from components.config import Params
from components.data.shards import publish_prepared, read_manifest
from components.tracking import mlflow_store
from components.tracking.curves import write_train_curve
from components.tracking.train_run import TrainError, export_run, interrupted, rebuild_finished
from components.training import checkpoint as ckpt
from components.training.loop import NonFiniteLossError, Worker, plan, train_model
from components.failures import unwrap_failure
from components.storage import Location, check_reachable, location
from components.options import OPTIONS_FILE, render as render_options
from pipelines.launch import (LaunchError, check_reachable_by_workers, check_resources, init_ray, ray_scaling,
                              ray_storage)
from pipelines.leftovers import prune_train_run
from pipelines.ray_worker import RESUMED_METRIC, Callbacks, ray_worker, training_progress


def run_name_for(params: Params, manifest: dict) -> str:
    """train.run_name, else <family>-<dataset>-<hash of the family's run key and the data>: every setting
    that changes the weights names a new run (and checkpoint folder); bookkeeping keys do not."""
    if params.train.run_name:
        return params.train.run_name
    key = {**params.family.run_key(params), "data": manifest["content_hash"]}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    return f"{params.model.family}-{manifest['dataset']}-{digest}"


def _fit_with_ray(params: Params, prepared: str, storage: Location, run_name: str, uri: str, run_id: str) -> dict:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer

    started = time.perf_counter()
    s = params.scaling
    prune_train_run(storage / run_name)  # what an earlier attempt of this run left unrecorded
    trainer = TorchTrainer(
        ray_worker,
        train_loop_config={"params": params.model_dump(mode="json"), "prepared_dir": prepared,
                           "tracking_uri": uri, "run_id": run_id,
                           "checkpoint_dir": (storage / run_name).uri},
        scaling_config=ray_scaling(s),
        run_config=RunConfig(
            name=run_name,  # same name + storage → resume from its latest checkpoint
            **ray_storage(storage),
            checkpoint_config=CheckpointConfig(num_to_keep=params.train.keep_checkpoints),
            failure_config=FailureConfig(max_failures=s.max_failures),
        ),
    )
    result = _fit_interruptibly(trainer)
    prune_train_run(storage / run_name)
    if result.checkpoint is None:
        raise TrainError("Ray Train finished without a checkpoint")
    state = ckpt.load_checkpoint(result.checkpoint)
    print(f"Ray Train wall time (incl. start-up): {time.perf_counter() - started:.1f}s", flush=True)
    return state


def _fit_interruptibly(trainer):
    """trainer.fit() with Ctrl-C as KeyboardInterrupt. Called from the main thread, Ray Train installs its own
    SIGINT handler, which aborts the controller and sys.exit()s with status 1 and no word of what was saved;
    it installs none off the main thread (as inside Tune), so fit runs in a helper thread. On Ctrl-C the
    local Ray instance is shut down first, so no worker writes a checkpoint after the one we report."""
    import threading

    import ray

    outcome: dict = {}

    def fit():
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread as it was
            outcome["error"] = exc

    thread = threading.Thread(target=fit, name="ray-train-fit", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)  # a bounded wait, so the main thread sees SIGINT
    except KeyboardInterrupt:
        ray.shutdown()
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _fit_in_process(params: Params, prepared_dir: Path, storage: Location, run_name: str, uri: str, run_id: str) -> dict:
    if not storage.is_local:
        raise TrainError(f"scaling.storage_path = {storage.uri}: training without Ray (--no-ray) keeps checkpoints "
                         "on a local path; leave scaling.storage_path unset or train on Ray")
    store = ckpt.LocalCheckpoints((storage / run_name).local_path(), keep=params.train.keep_checkpoints)
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
    worker = Worker(device=torch.device("cuda" if params.scaling.use_gpu else "cpu"))
    progress = training_progress(params, prepared_dir, 1, resume)
    try:
        train_model(params, prepared_dir, worker, Callbacks(logger, save, progress), resume)
        logger.flush(params.tracking.flush_timeout_s)
    finally:
        logger.close()
    return saved.get("state") or resume


def _check_launcher(params: Params, use_ray: bool, where: dict) -> None:
    """What the launcher can never run, refused before anything is written (`where`: params key → the
    Location the workers will open)."""
    try:
        if use_ray:
            init_ray()
            check_resources(params)
            check_reachable_by_workers(where)
        elif params.scaling.use_gpu and not torch.cuda.is_available():
            raise LaunchError("scaling.use_gpu is true but this machine has no CUDA GPU (torch.cuda.is_available() "
                              "is False); set scaling.use_gpu: false or run on a GPU machine")
    except LaunchError as e:
        raise TrainError(f"training cannot start: {e}") from e


def checkpoint_storage(params: Params, repo_root: Path) -> Location:
    """scaling.storage_path (a local path or a URI), default data/checkpoints."""
    return location(params.scaling.storage_path or Path(repo_root) / "data" / "checkpoints", base=repo_root)


def run(params: Params, repo_root: Path, use_ray: bool = True, options: dict | None = None) -> dict:
    prepared_dir = params.prepared_path(repo_root)
    manifest = read_manifest(prepared_dir)
    total_steps = plan(params, prepared_dir, params.scaling.num_workers if use_ray else 1).total_steps
    run_name = run_name_for(params, manifest) + ("" if use_ray else "-noray")
    storage = checkpoint_storage(params, repo_root)
    check_reachable(storage, "scaling.storage_path")
    remote = location(params.data.remote, base=repo_root) if params.data.remote else None
    if remote is not None:
        check_reachable(remote, "data.remote")
    # every start-up check before the first write (storage, data.remote, MLflow)
    uri = mlflow_store.resolve_uri(params.tracking.uri, repo_root)
    _check_launcher(params, use_ray, {"scaling.storage_path": storage.uri,
                                      "data.remote": remote.uri if remote else str(prepared_dir),
                                      "tracking.uri (or MLFLOW_TRACKING_URI)": uri})
    if storage.is_local:
        storage.mkdir()
    prepared = publish_prepared(prepared_dir, remote).uri if use_ray and remote is not None else str(prepared_dir)

    client = MlflowClient(uri)
    exp_id = mlflow_store.experiment_id(client, params.experiment_name, mlflow_store.artifact_root_for(uri))
    previous = mlflow_store.find_run(client, exp_id, run_name)
    launcher = "ray" if use_ray else "process"
    if previous is not None and previous.info.status == "FINISHED":  # it may be the champion's run: never reopened
        summary = rebuild_finished(params, repo_root, client, previous, run_name, storage / run_name, total_steps,
                                   uri, launcher)
        write_train_curve(uri, summary["mlflow_run_id"], repo_root / params.train.curves_dir)
        return summary
    if previous is not None:  # interrupted (RUNNING, FAILED, KILLED): resume it
        run_id = previous.info.run_id
        client.update_run(run_id, status="RUNNING")
    else:
        run = client.create_run(exp_id, run_name=run_name, tags={mlflow_store.RUN_NAME_TAG: run_name,
                                                                  "genpipe.launcher": launcher})
        run_id = run.info.run_id
        client.log_batch(run_id, params=[mlflow.entities.Param(k, str(v)) for k, v in params.flat().items()])
    if options is not None:  # the resolved options of this (re)start, layers and code version included
        client.log_text(run_id, render_options(options), OPTIONS_FILE)
    print(f"run {run_name}: MLflow run {run_id} in experiment {params.experiment_name!r} at {uri}", flush=True)

    fit = _fit_with_ray if use_ray else _fit_in_process
    try:
        state = fit(params, prepared if use_ray else prepared_dir, storage, run_name, uri, run_id)
    except BaseException as exc:  # includes KeyboardInterrupt: the run must not stay RUNNING
        if isinstance(exc, KeyboardInterrupt):
            print(interrupted(run_name, run_id, storage / run_name, params.train.checkpoint_every), flush=True)
        unreachable = isinstance(exc, mlflow_store.TrackingUnavailableError) or "TrackingUnavailableError" in str(exc)
        try:  # not when the store is what failed: that would wait on it again (the run stays RUNNING; a rerun ends it)
            if not unreachable:
                client.set_terminated(run_id, status="FAILED" if not isinstance(exc, KeyboardInterrupt) else "KILLED")
        except Exception as store_exc:  # report the training error, not this one
            print(f"could not mark MLflow run {run_id} failed: {store_exc}", flush=True)
        if isinstance(exc, (NonFiniteLossError, TrainError, LaunchError)) or "non-finite loss" in str(exc) or unreachable:
            raise TrainError(f"training failed: {unwrap_failure(exc)}") from exc
        raise

    summary = export_run(params, repo_root, state, run_name, run_id, uri, launcher)
    write_train_curve(uri, run_id, repo_root / params.train.curves_dir)
    out_dir = (repo_root / params.train.output_dir).resolve()
    print(f"trained {state['step']} steps; generator in {out_dir}; logged model {summary['model_uri']}", flush=True)
    return summary


def dry_run(params: Params, repo_root: Path, use_ray: bool = True) -> dict:
    """What `run` would read, write and reuse (`genpipe train --dry-run`): the run it starts, resumes or finds
    finished, from the files alone (MLflow is not opened); writes nothing."""
    from components.data.shards import MANIFEST
    from components.options import OPTIONS_FILE, record_line, shown, tracking_uri, written
    from components.tracking.names import SUMMARY_FILE

    root, prepared_dir = Path(repo_root), params.prepared_path(repo_root)
    out_dir = (root / params.train.output_dir).resolve()
    workers = params.scaling.num_workers if use_ray else 1
    plan_ = {"reads": [record_line(prepared_dir / MANIFEST, root, ("dataset", "content_hash", "count"), "prepare")],
             "writes": [written(out_dir, root,
                                f"generator.safetensors, generator.json, {SUMMARY_FILE}, {OPTIONS_FILE}"),
                        written(root / params.train.curves_dir, root, "training curves, one CSV per loss")],
             "reuses": [], "notes": [f"runs {f'on Ray Train, {workers} worker(s)' if use_ray else 'in this process'}"]}
    if not (prepared_dir / MANIFEST).is_file():
        plan_["notes"].append("the run's name (and checkpoint folder) needs the prepared data's content hash")
        return plan_
    run_name = run_name_for(params, read_manifest(prepared_dir)) + ("" if use_ray else "-noray")
    run_dir = checkpoint_storage(params, root) / run_name
    plan_["writes"][:0] = [f"{shown(run_dir, root)} (checkpoints every {params.train.checkpoint_every} steps, the "
                           f"newest {params.train.keep_checkpoints} kept)",
                           f"MLflow run {run_name} in experiment {params.experiment_name!r} at "
                           f"{tracking_uri(params, root)} (params, {OPTIONS_FILE}, metrics, samples, logged model)"]
    total = plan(params, prepared_dir, workers).total_steps
    summary = json.loads((out_dir / SUMMARY_FILE).read_text()) if (out_dir / SUMMARY_FILE).is_file() else {}
    newest = ckpt.newest_whole(run_dir)
    if summary.get("run_name") == run_name and summary.get("steps") == total:
        plan_["reuses"].append(f"run {run_name} finished at step {total} (MLflow run {summary['mlflow_run_id']}): "
                               f"nothing is trained, {shown(out_dir, root)} is rebuilt from it")
    elif newest is not None:
        plan_["reuses"].append(f"{shown(newest, root)}: resumes run {run_name} at step {ckpt.load_at(newest)['step']} "
                               f"of {total}")
    else:
        plan_["notes"].append(f"starts run {run_name} from step 0 of {total} (no whole checkpoint in "
                              f"{shown(run_dir, root)})")
    return plan_
