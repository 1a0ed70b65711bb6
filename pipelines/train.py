"""Stage `train`: launch the GAN training core on Ray Train (or in this process with --no-ray),
track it in MLflow, export the final generator to `train.output_dir`."""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path

import mlflow
import torch
from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient

from components.config import Params
from components.data.shards import read_manifest
from components.tracking import mlflow_store
from components.tracking.curves import write_train_curve
from components.tracking.logged_model import download_generator, log_generator
from components.training import checkpoint as ckpt
from components.training.loop import NonFiniteLossError, Worker, plan, train_model
from components.failures import unwrap_failure
from pipelines.launch import LaunchError, check_resources, init_ray, ray_scaling
from pipelines.leftovers import prune_train_run
from pipelines.links import SUMMARY_FILE
from pipelines.ray_worker import RESUMED_METRIC, Callbacks, ray_worker, training_progress

class TrainError(RuntimeError):
    pass


FINAL_STEP_TAG = "genpipe.final_step"  # on a finished run: the step its logged model was exported at


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
    s = params.scaling
    prune_train_run(storage / run_name)  # what an earlier attempt of this run left unrecorded
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
    worker = Worker(device=torch.device("cuda" if params.scaling.use_gpu else "cpu"))
    progress = training_progress(params, prepared_dir, 1, resume)
    try:
        train_model(params, prepared_dir, worker, Callbacks(logger, save, progress), resume)
        logger.flush(params.tracking.flush_timeout_s)
    finally:
        logger.close()
    return saved.get("state") or resume


def _check_launcher(params: Params, use_ray: bool) -> None:
    """What the launcher can never run, refused before anything is written to MLflow."""
    try:
        if use_ray:
            init_ray()
            check_resources(params)
        elif params.scaling.use_gpu and not torch.cuda.is_available():
            raise LaunchError("scaling.use_gpu is true but this machine has no CUDA GPU (torch.cuda.is_available() "
                              "is False); set scaling.use_gpu: false or run on a GPU machine")
    except LaunchError as e:
        raise TrainError(f"training cannot start: {e}") from e


def _newest_whole_checkpoint(run_dir: Path) -> Path | None:
    for path in sorted(run_dir.glob("checkpoint_*"), reverse=True):  # by step (no Ray) or by time (Ray)
        try:
            ckpt.verify(path)
        except (ckpt.CheckpointIntegrityError, FileNotFoundError):
            continue
        return path
    return None


def _interrupted(run_name: str, run_id: str, run_dir: Path, every: int) -> str:
    """What Ctrl-C leaves behind and how to go on from it."""
    newest = _newest_whole_checkpoint(run_dir) if run_dir.is_dir() else None
    if newest is None:
        return (f"train: interrupted before the first checkpoint (every {every} steps); nothing to resume: the same "
                f"command starts run {run_name} again from step 0")
    step = ckpt.load(newest)["step"]
    return (f"train: interrupted; saved: step {step} ({newest}). The same command (genpipe train with these params, "
            f"or dvc repro) resumes MLflow run {run_id} ({run_name}) from step {step}")


def _logged_model_uri(client: MlflowClient, run) -> str | None:
    """The model a finished run logged (the newest, for runs that older reruns logged again)."""
    found = client.search_logged_models([run.info.experiment_id],
                                        filter_string=f"source_run_id = '{run.info.run_id}'", max_results=100)
    ready = [m for m in found if m.status == LoggedModelStatus.READY] or list(found)
    return f"models:/{max(ready, key=lambda m: m.creation_timestamp).model_id}" if ready else None


def _rebuild_finished(params: Params, repo_root: Path, client: MlflowClient, run, run_name: str, run_dir: Path,
                      total_steps: int, uri: str, launcher: str) -> dict:
    """A finished run has nothing to resume: the run stays as it is (status, end time, logged model) and
    train.output_dir is written again from its final checkpoint, pointing at the model it logged."""
    run_id = run.info.run_id
    final = int(run.data.tags.get(FINAL_STEP_TAG, total_steps))  # runs finished before the tag: the plan's
    new_name = "set train.run_name to a new name to train a new run"
    if final != total_steps:
        raise TrainError(f"MLflow run {run_id} (run name {run_name}) is FINISHED at step {final}; these params train "
                         f"to step {total_steps}. A finished run is not reopened: {new_name}")
    model_uri = _logged_model_uri(client, run)
    if model_uri is None:
        raise TrainError(f"MLflow run {run_id} (run name {run_name}) is FINISHED but logged no model, so genpipe did "
                         f"not finish it; {new_name}")
    newest = _newest_whole_checkpoint(run_dir)
    state = ckpt.load(newest) if newest is not None else None
    out_dir = (repo_root / params.train.output_dir).resolve()
    summary = {"run_name": run_name, "mlflow_run_id": run_id, "experiment": params.experiment_name,
               "tracking_uri": uri, "model_uri": model_uri, "launcher": launcher}
    if state is not None and int(state["step"]) == final:
        source = newest.name
        with ckpt.atomic_dir(out_dir) as tmp:
            ckpt.write_generator(state, tmp)
            summary.update(steps=state["step"], epochs=state["epoch"])
            (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True))
    else:  # the checkpoints stayed where the run trained (a `dvc exp run --temp` copy has none): its export is logged
        found = "no whole checkpoint" if state is None else f"the newest whole one is at step {state['step']}"
        source = f"its logged model ({found} in {run_dir})"
        with tempfile.TemporaryDirectory() as download, ckpt.atomic_dir(out_dir) as tmp:
            try:
                folder = download_generator(uri, model_uri, Path(download))
                spec = ckpt.verify_generator(folder)
            except Exception as e:
                raise TrainError(f"MLflow run {run_id} (run name {run_name}) is FINISHED, but its final checkpoint "
                                 f"(step {final}) is not in {run_dir} ({found}) and its logged model {model_uri} cannot "
                                 f"be read ({e}), so {params.train.output_dir} cannot be rebuilt. Restore that folder "
                                 f"from where the run trained (scaling.storage_path), or {new_name}") from None
            for file in folder.iterdir():
                shutil.copy2(file, tmp / file.name)
            summary.update(steps=spec["step"], epochs=spec["epoch"])
            (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True))
    print(f"run {run_name}: MLflow run {run_id} is already FINISHED at step {final}: nothing to resume, run left "
          f"untouched; {out_dir} rebuilt from {source}, logged model {model_uri}", flush=True)
    return summary


def run(params: Params, repo_root: Path, use_ray: bool = True) -> dict:
    prepared_dir = params.prepared_path(repo_root)
    manifest = read_manifest(prepared_dir)
    total_steps = plan(params, prepared_dir, params.scaling.num_workers if use_ray else 1).total_steps
    run_name = run_name_for(params, manifest) + ("" if use_ray else "-noray")
    storage = Path(params.scaling.storage_path or repo_root / "data" / "checkpoints").resolve()
    storage.mkdir(parents=True, exist_ok=True)
    _check_launcher(params, use_ray)  # every start-up check before the first write to MLflow

    uri = mlflow_store.resolve_uri(params.tracking.uri, repo_root)
    client = MlflowClient(uri)
    exp_id = mlflow_store.experiment_id(client, params.experiment_name, mlflow_store.artifact_root_for(uri))
    previous = mlflow_store.find_run(client, exp_id, run_name)
    launcher = "ray" if use_ray else "process"
    if previous is not None and previous.info.status == "FINISHED":  # it may be the champion's run: never reopened
        summary = _rebuild_finished(params, repo_root, client, previous, run_name, storage / run_name, total_steps,
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
    print(f"run {run_name}: MLflow run {run_id} in experiment {params.experiment_name!r} at {uri}", flush=True)

    fit = _fit_with_ray if use_ray else _fit_in_process
    try:
        state = fit(params, prepared_dir, storage, run_name, uri, run_id)
    except BaseException as exc:  # includes KeyboardInterrupt: the run must not stay RUNNING
        if isinstance(exc, KeyboardInterrupt):
            print(_interrupted(run_name, run_id, storage / run_name, params.train.checkpoint_every), flush=True)
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
            info = log_generator(tmp, params.serving.max_samples)
            mlflow.set_tag(FINAL_STEP_TAG, str(state["step"]))  # a rerun then knows the run is complete
        summary = {"run_name": run_name, "mlflow_run_id": run_id, "experiment": params.experiment_name,
                   "tracking_uri": uri, "model_uri": info.model_uri, "steps": state["step"], "epochs": state["epoch"],
                   "launcher": launcher}
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True))
    write_train_curve(uri, run_id, repo_root / params.train.curves_dir)
    print(f"trained {state['step']} steps; generator in {out_dir}; logged model {info.model_uri}", flush=True)
    return summary
