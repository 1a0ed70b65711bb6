"""A sweep's MLflow runs: one child run per trial under the sweep's parent run, written from the driver
(a Tune callback), so trials never touch the store and SQLite sees one writer however many trials run."""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from components.evaluation import TestSplit
from components.training import checkpoint as ckpt
from components.training.images import preview
from components.failures import unwrap_failure
from components.tuning.space import flatten

if TYPE_CHECKING:
    from components.config import Params

SWEEP_TAG = "genpipe.sweep"
TRIAL_TAG = "genpipe.trial_id"


def child_run_id(client: MlflowClient, experiment_id: str, sweep: str, trial_id: str) -> str | None:
    """The MLflow child run of a sweep's trial, if it has one."""
    found = client.search_runs([experiment_id], filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}' "
                               f"and tags.`{SWEEP_TAG}` = '{sweep}'", max_results=1)
    return found[0].info.run_id if found else None


def child_run_callback(uri: str, experiment_id: str, parent_run_id: str, sweep: str, sample_z: int,
                        params: Params, prepared: Path):
    from ray.tune import Callback

    test = TestSplit.load(prepared)  # read once: what a finished trial's final grid is drawn from

    class ChildRuns(Callback):
        """One MLflow child run per trial, written from the driver's event loop: a single writer."""

        def __init__(self):
            self._runs: dict[str, str] = {}

        def __getstate__(self):  # pickled into the experiment state for --resume; clients stay out
            return {"_runs": self._runs}

        def __setstate__(self, state):
            self._runs = state["_runs"]

        @property
        def client(self) -> MlflowClient:
            return MlflowClient(uri)

        def run_id(self, trial) -> str:
            if trial.trial_id in self._runs:
                return self._runs[trial.trial_id]
            run_id = child_run_id(self.client, experiment_id, sweep, trial.trial_id)
            if run_id is None:
                run = self.client.create_run(experiment_id, run_name=trial.trial_id, tags={
                    "mlflow.parentRunId": parent_run_id, TRIAL_TAG: trial.trial_id, SWEEP_TAG: sweep})
                run_id = run.info.run_id
                self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in flatten(trial.config).items()])
            self._runs[trial.trial_id] = run_id
            return run_id

        def on_trial_start(self, iteration, trials, trial, **info):
            self.run_id(trial)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            step, ts = int(result.get("step", 0)), int(time.time() * 1000)
            metrics = [Metric(k, float(v), ts, step) for k, v in result.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in _NOT_LOGGED]
            self.client.log_batch(self.run_id(trial), metrics=metrics)

        def on_trial_complete(self, iteration, trials, trial, **info):
            run_id = self.run_id(trial)
            if trial.checkpoint is not None:
                state = ckpt.load_checkpoint(trial.checkpoint)
                g = ckpt.generator_from_state(state)
                images = params.family.generate(g, params, test, sample_z, state["meta"]["model"]["latent_dim"])[0][:sample_z]
                self.client.log_image(run_id, preview(images), artifact_file=f"samples/final_step_{state['step']:08d}.png")
            self.client.set_terminated(run_id, "FINISHED")

        def on_trial_error(self, iteration, trials, trial, **info):
            run_id = self.run_id(trial)
            self.client.set_tag(run_id, "genpipe.error", _trial_error(trial)[:5000])
            self.client.set_terminated(run_id, "FAILED")

    return ChildRuns()


_NOT_LOGGED = {"timestamp", "pid", "time_since_restore", "iterations_since_restore", "done", "training_iteration"}


def _trial_error(trial) -> str:
    path = trial.error_file
    text = Path(path).read_text() if path and Path(path).is_file() else str(getattr(trial, "error_msg", "") or "")
    return unwrap_failure(RuntimeError(text)) if text else "unknown error"
