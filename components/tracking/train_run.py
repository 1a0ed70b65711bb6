"""A training run's record in MLflow and its export in train.output_dir (the `train` stage): the export
written and logged when a run ends, rebuilt for a run that already finished (never reopened: it may be
the champion's), and what Ctrl-C left to resume from."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import mlflow
from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient

from components.config import Params
from components.tracking.logged_model import download_generator, log_generator
from components.tracking.names import FINAL_STEP_TAG, SUMMARY_FILE
from components.training import checkpoint as ckpt


class TrainError(RuntimeError):
    pass


def interrupted(run_name: str, run_id: str, run_dir, every: int) -> str:
    """What Ctrl-C leaves behind and how to go on from it (run_dir: a local path or a storage Location)."""
    newest = ckpt.newest_whole(run_dir)
    if newest is None:
        return (f"train: interrupted before the first checkpoint (every {every} steps); nothing to resume: the same "
                f"command starts run {run_name} again from step 0")
    step = ckpt.load_at(newest)["step"]
    return (f"train: interrupted; saved: step {step} ({newest}). The same command (genpipe train with these params, "
            f"or dvc repro) resumes MLflow run {run_id} ({run_name}) from step {step}")


def _logged_model_uri(client: MlflowClient, run) -> str | None:
    """The model a finished run logged (the newest, for runs that older reruns logged again)."""
    found = client.search_logged_models([run.info.experiment_id],
                                        filter_string=f"source_run_id = '{run.info.run_id}'", max_results=100)
    ready = [m for m in found if m.status == LoggedModelStatus.READY] or list(found)
    return f"models:/{max(ready, key=lambda m: m.creation_timestamp).model_id}" if ready else None


def rebuild_finished(params: Params, repo_root: Path, client: MlflowClient, run, run_name: str, run_dir,
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
    newest = ckpt.newest_whole(run_dir)
    state = ckpt.load_at(newest) if newest is not None else None
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


def export_run(params: Params, repo_root: Path, state: dict, run_name: str, run_id: str, uri: str,
               launcher: str) -> dict:
    """train.output_dir written from the final state, its generator logged to the MLflow run (which ends
    FINISHED): the run's summary."""
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
    return summary
