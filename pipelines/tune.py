"""Stage `tune`: a Ray Tune sweep over tune.space whose best configuration `train` then retrains.

Every trial is a real training run: a Ray Train `TorchTrainer` started inside a Tune function
trainable (the Train V2 pattern). Rank 0 scores the generator at every checkpoint with the
evaluate stage's metrics under the same evaluator (fewer samples, `QuickScorer`). The trainable
forwards each report to Tune *with its checkpoint*, so ASHA can stop a trial on its metric and
PBT can copy a better trial's full state (G, D, both optimizers, EMA, step).

MLflow gets one parent run per sweep and one child run per trial, all written by the driver (a
Tune callback): trials never touch the store, so SQLite sees one writer however many trials run.
Outputs: <tune.output_dir>/best.json (what train/evaluate/promote apply), reports/tune.json and
reports/tune_trials.csv; the best trial's generator is registered as a model version (no alias:
promotion stays the promote stage's decision)."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from components.atomic import atomic_dir, atomic_write
from components.config import TUNE_METRICS, ConfigError, Params
from components.data.shards import read_manifest
from components.training import checkpoint as ckpt
from components.training.images import preview
from components.tracking import mlflow_store
from components.tracking.logged_model import log_generator
from components.tuning import space as search_space
from components.tuning.space import flatten
from pipelines.evaluate import TestSplit, generate, metric_names
from pipelines.train import _unwrap_failure, init_ray, ray_scaling
from pipelines.train_worker import ORIGIN_FILE, _ray_worker

BEST_FILE = "best.json"
SWEEP_TAG = "genpipe.sweep"
TRIAL_TAG = "genpipe.trial_id"
# Each report also carries the trial's numeric config under this prefix: PBT's perturbations then show
# as metric curves in the trial's MLflow run (params cannot change once logged).
_CONFIG_PREFIX = "config/"


class TuneError(RuntimeError):
    pass


def metric_and_mode(params: Params, kind: str) -> tuple[str, str]:
    default = {"pix2pix": "psnr", "cyclegan": "label_preservation"}.get(params.model.family, "fid")
    metric = params.tune.metric or ("reverse_kl" if kind == "points" else default)
    allowed = metric_names(params, kind)
    if metric not in allowed:
        raise ConfigError(f"tune.metric = {metric!r} is not reported for model.family = {params.model.family!r} "
                          f"on {kind} data; allowed: {', '.join(allowed)}")
    return metric, "max" if TUNE_METRICS[metric] else "min"


def trial_params(base: Params, config: dict[str, Any]) -> Params:
    """A trial: the space's values over params, at the sweep's budget and cadence."""
    t = base.tune
    tuned = base.with_overrides(flatten(config), source="tune.space")
    return tuned.with_overrides({
        "train.max_steps": t.trial_steps, "train.epochs": 10**6,  # the step budget decides
        "train.checkpoint_every": t.eval_every, "train.log_every": min(tuned.train.log_every, t.eval_every),
        "train.keep_checkpoints": 2, "scaling.num_workers": t.num_workers, "scaling.max_failures": 0,
    })


def tuned_overrides(params: Params, repo_root: Path) -> dict[str, Any]:
    """The best configuration the tune stage chose, as dotted keys for train/evaluate/promote; {} when the
    sweep is off."""
    if not params.tune.enabled:
        return {}
    path = (Path(repo_root) / params.tune.output_dir / BEST_FILE).resolve()
    if not path.is_file():
        raise TuneError(f"tune.enabled is true but {path} is missing; run `genpipe tune` first "
                        "(or set tune.enabled: false to train params as they are)")
    return json.loads(path.read_text())["overrides"]


# ---------------------------------------------------------------------------------------------
# The trial: runs in a Tune actor; starts its own Ray Train run and relays its reports to Tune.

def _relay_callback(results):
    from ray.train.v2.api.callback import UserCallback

    class RelayToTune(UserCallback):
        """In the Train controller: hand each report, with its persisted checkpoint, to the trial."""

        def after_report(self, run_context, metrics, checkpoint):
            results.put((metrics[0], checkpoint.path if checkpoint else None))

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


def _load_state(checkpoint) -> dict:
    """A Tune checkpoint's training state, wherever it is stored (local, NFS, S3)."""
    with checkpoint.as_directory() as d:
        return ckpt.load(d)


def _origin(checkpoint) -> dict:
    with checkpoint.as_directory() as d:
        path = Path(d) / ORIGIN_FILE
        return json.loads(path.read_text()) if path.is_file() else {}


def run_trial(config: dict, *, base: dict, repo_root: str, storage: str) -> None:
    from ray import tune
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer
    from ray.tune import Checkpoint
    from ray.util.queue import Queue

    params = trial_params(Params.model_validate(base), config)
    trial_id = tune.get_context().get_trial_id()
    start = tune.get_checkpoint()
    origin = {"run": trial_id, "step": 0}
    if start is not None:
        origin = {**origin, **_origin(start)}
        how = "exploits" if origin["run"] != trial_id else "resumes"
        print(f"trial {trial_id} {how} the checkpoint of trial {origin['run']} at step {origin['step']} "
              f"with {flatten(config)}", flush=True)
    results = Queue(actor_options={"num_cpus": 0})
    s = params.scaling
    # A fresh Train run per start: its state comes from Tune's checkpoint (own or, after a PBT
    # exploit, the donor's), never from an older Train run of this trial. It keeps every checkpoint
    # (Tune copies each as it is reported) and is deleted when the trial ends.
    train_run = f"{trial_id}-{uuid.uuid4().hex[:8]}"
    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config={"params": params.model_dump(mode="json"), "prepared_dir": str(params.prepared_path(repo_root)),
                           "quick_eval": {"repo_root": repo_root, "num_samples": params.tune.eval_samples},
                           "origin": trial_id, "start_from": start},
        scaling_config=ray_scaling(s),
        run_config=RunConfig(name=train_run, storage_path=storage, checkpoint_config=CheckpointConfig(num_to_keep=None),
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
            metrics, path = item
            pg_hex = metrics.get("placement_group", pg_hex)
            metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) or k in ("placement_group", "worker_nodes")}
            metrics.update({f"{_CONFIG_PREFIX}{k}": v for k, v in flatten(config).items()
                            if isinstance(v, (int, float))},
                           origin_step=origin["step"], exploited=int(origin["run"] != trial_id),
                           origin_trial=origin["run"])
            tune.report(metrics, checkpoint=Checkpoint.from_directory(path) if path else None)
        finished = True
    finally:
        if not finished:  # Tune stopped this trial (tune.report raised): end its Train run now
            _end_train_run(pg_hex)
        shutil.rmtree(Path(storage) / train_run, ignore_errors=True)
    if "error" in outcome:
        raise TuneError(f"trial {trial_id} failed: {_unwrap_failure(outcome['error'])}") from None


# ---------------------------------------------------------------------------------------------
# Driver side: MLflow child runs (the one writer), search, schedulers.

def child_run_id(client: MlflowClient, experiment_id: str, sweep: str, trial_id: str) -> str | None:
    """The MLflow child run of a sweep's trial, if it has one."""
    found = client.search_runs([experiment_id], filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}' "
                               f"and tags.`{SWEEP_TAG}` = '{sweep}'", max_results=1)
    return found[0].info.run_id if found else None


def _child_run_callback(uri: str, experiment_id: str, parent_run_id: str, sweep: str, sample_z: int,
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
                state = _load_state(trial.checkpoint)
                g = ckpt.generator_from_state(state)
                images = generate(g, params, test, sample_z, state["meta"]["model"]["latent_dim"])[0][:sample_z]
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
    return _unwrap_failure(RuntimeError(text)) if text else "unknown error"


def _refusal_skipping_searcher(inner, base: Params, skipped):
    """Wraps a Searcher (Optuna) so configurations the config refuses are never launched: each is
    reported to the inner searcher as a failed trial (it learns to avoid them) and redrawn."""
    from ray.tune.search import Searcher

    class SkipRefused(Searcher):
        def __init__(self):
            super().__init__(metric=inner.metric, mode=inner.mode)
            self.inner, self.alias = inner, {}

        def set_search_properties(self, metric, mode, config, **spec):
            return self.inner.set_search_properties(metric, mode, config, **spec)

        def suggest(self, trial_id):
            for attempt in range(search_space.MAX_DRAWS_PER_TRIAL):
                inner_id = f"{trial_id}-{attempt}"
                config = self.inner.suggest(inner_id)
                if not isinstance(config, dict):
                    return config
                if (why := search_space.refusal(base, config)) is None:
                    self.alias[trial_id] = inner_id
                    return config
                skipped[search_space.reason_class(why)] += 1
                self.inner.on_trial_complete(inner_id, error=True)
            raise TuneError(f"{search_space.MAX_DRAWS_PER_TRIAL} Optuna suggestions in a row were refused by the config")

        def on_trial_result(self, trial_id, result):
            self.inner.on_trial_result(self.alias.get(trial_id, trial_id), result)

        def on_trial_complete(self, trial_id, result=None, error=False):
            self.inner.on_trial_complete(self.alias.get(trial_id, trial_id), result=result, error=error)

        def save(self, checkpoint_path):
            self.inner.save(checkpoint_path)

        def restore(self, checkpoint_path):
            self.inner.restore(checkpoint_path)

    return SkipRefused()


def _optuna_space(space):
    """Define-by-run Optuna space. Categorical values must be plain: section-valued entries travel as JSON."""
    def define(trial):
        for key, entry in space.items():
            if entry.kind == "choice":
                trial.suggest_categorical(key, [search_space.encode({key: v})[key] for v in entry.choice])
            else:
                low, high = entry.uniform or entry.loguniform
                trial.suggest_float(key, low, high, log=entry.kind == "loguniform")
    return define


def _pbt_mutations(params: Params) -> dict[str, Any]:
    from ray import tune

    out = {}
    for key in params.tune.pbt.mutations:
        entry = params.tune.space.get(key)
        if entry is None:
            continue
        if entry.kind in ("grid", "choice"):
            out[key] = list(entry.grid or entry.choice)
        else:
            low, high = entry.uniform or entry.loguniform
            out[key] = tune.loguniform(low, high) if entry.kind == "loguniform" else tune.uniform(low, high)
    if not out:
        raise ConfigError(f"tune.scheduler = 'pbt' perturbs tune.pbt.mutations = {params.tune.pbt.mutations}, "
                          "but none of them is in tune.space; add one (e.g. train.lr_g)")
    return out


def _scheduler(params: Params):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    t = params.tune
    if t.scheduler == "asha":
        return ASHAScheduler(time_attr="step", max_t=t.trial_steps,
                             grace_period=min(t.asha.grace_period, t.trial_steps), reduction_factor=t.asha.reduction_factor)
    if t.scheduler == "pbt":
        train = params.model_dump(mode="json")["train"]
        fallbacks = {k: train[k.removeprefix("train.")] for k in t.pbt.mutations if k.startswith("train.")}

        def keep_valid(config):  # explore must not produce a configuration the config refuses
            return search_space.make_valid(params, config, fallbacks)

        logging.getLogger("ray.tune.schedulers.pbt").setLevel(logging.INFO)  # the log shows every exploit/explore
        return PopulationBasedTraining(time_attr="step",
                                       perturbation_interval=t.pbt.perturbation_interval,
                                       quantile_fraction=t.pbt.quantile_fraction,
                                       resample_probability=t.pbt.resample_probability,
                                       hyperparam_mutations=_pbt_mutations(params), custom_explore_fn=keep_valid,
                                       synch=False)
    return FIFOScheduler()


def _search(params: Params, metric: str, mode: str, skipped, concurrency: int) -> tuple[Any, int, dict | None]:
    """(search algorithm, number of trials, param_space to declare)."""
    from ray.tune.search import BasicVariantGenerator

    t = params.tune
    if t.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        inner = OptunaSearch(space=_optuna_space(t.space), metric=metric, mode=mode, seed=params.seed)
        return _refusal_skipping_searcher(inner, params, skipped), t.num_samples, None
    expansion = search_space.expand(params, t.space, t.search, t.num_samples, params.seed)
    skipped.update(expansion.skipped)
    # Every trial is a preset point; Tune requires their keys declared in param_space, with the values they take.
    from ray import tune

    configs = [search_space.encode(c) for c in expansion.configs]
    declared = {k: tune.choice(list({json.dumps(c[k]): c[k] for c in configs}.values())) for k in configs[0]}
    return BasicVariantGenerator(points_to_evaluate=configs, max_concurrent=concurrency), len(configs), declared


def sweep_name(params: Params, manifest: dict) -> str:
    dump = params.model_dump(mode="json")
    key = {"seed": params.seed, "model": dump["model"], "train": dump["train"], "data": manifest["content_hash"],
           "tune": {k: v for k, v in dump["tune"].items() if k not in ("output_dir", "report", "trials_csv", "register_best")}}
    return f"tune-{manifest['dataset']}-{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]}"


def _concurrency(params: Params) -> int:
    import ray

    t, s = params.tune, params.scaling
    per_trial = t.num_workers * s.cpus_per_worker
    cpus = ray.cluster_resources().get("CPU", 0)
    if per_trial > cpus:
        raise TuneError(f"tune.num_workers = {t.num_workers} × scaling.cpus_per_worker = {s.cpus_per_worker} needs "
                        f"{per_trial} CPUs per trial; the Ray cluster has {cpus:g}")
    fits = int(cpus // per_trial)
    if s.use_gpu:
        gpus = ray.cluster_resources().get("GPU", 0)
        if t.num_workers > gpus:
            raise TuneError(f"tune.num_workers = {t.num_workers} with scaling.use_gpu needs {t.num_workers} GPUs per "
                            f"trial; the Ray cluster has {gpus:g}")
        fits = min(fits, int(gpus // t.num_workers))
    return t.max_concurrent_trials or max(1, fits)


# ---------------------------------------------------------------------------------------------
# Reports

CSV_FIELDS = ["value", "status", "step", "seconds", "exploits", "resumed_from", "worker_nodes", "error"]  # value: the sweep's metric


def _trial_rows(result_grid, metric: str, trial_steps: int) -> list[dict]:
    rows = []
    for result in result_grid:
        m = result.metrics or {}
        # a trial that failed before its first report has no metrics; its folder is run_trial_<id>_<n>_<date>
        trial_id = m.get("trial_id") or "_".join(Path(result.path).name.split("_")[2:4])
        step = int(m.get("step", 0))
        status = "failed" if result.error else "completed" if step >= trial_steps else "stopped"
        df = result.metrics_dataframe
        rows.append({"trial_id": trial_id, "status": status, "step": step, "value": m.get(metric),
                     "scores": {k: m[k] for k in TUNE_METRICS if k in m}, "seconds": round(float(m.get("time_total_s", 0.0)), 2),
                     "exploits": len(_exploits_of(trial_id, df)), "error": _unwrap_failure(result.error) if result.error else "",
                     "worker_nodes": _nodes_used(df), "resumed_from": _own_resumes(trial_id, df),
                     "config": flatten(result.config or {}), "checkpoint": result.checkpoint,
                     "history": df})
    return rows


def _exploits_of(trial_id: str, history) -> list[dict]:
    """PBT exploits a trial received, from its reports: each names the donor and the donor's step."""
    if history is None or "origin_trial" not in history:
        return []
    events, seen = [], set()
    for _, r in history[history["origin_trial"] != trial_id].iterrows():
        key = (r["origin_trial"], int(r["origin_step"]))
        if key not in seen:
            seen.add(key)
            events.append({"trial": trial_id, "donor": key[0], "donor_step": key[1], "first_step_after": int(r["step"])})
    return events


def _nodes_used(history) -> str:
    """The Ray nodes a trial's workers ran on, in the order first seen (a retry may move it)."""
    if history is None or "worker_nodes" not in history:
        return ""
    return " ".join(dict.fromkeys(n for entry in history["worker_nodes"].dropna() for n in str(entry).split()))


def _own_resumes(trial_id: str, history) -> str:
    """Steps at which a trial went on from its own checkpoint after a crash (Tune's retry), in order."""
    if history is None or "origin_trial" not in history:
        return ""
    own = history[(history["origin_trial"] == trial_id) & (history["origin_step"] > 0)]
    return " ".join(str(int(s)) for s in dict.fromkeys(own["origin_step"]))


def _write_csv(rows: list[dict], keys: list[str]) -> bytes:
    """One row per trial: its configuration, every in-training score at its last report, and how it ended."""
    scores = [k for k in TUNE_METRICS if any(k in r["scores"] for r in rows)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["trial_id", *keys, *scores, *CSV_FIELDS], extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, **{k: row["config"].get(k, "") for k in keys}, **row["scores"]})
    return buf.getvalue().encode()


def _register_best(params: Params, best: dict, metric: str, uri: str, child_run_id: str | None) -> dict:
    """Log the best trial's generator in its child run and register it as a model version (no alias)."""
    from pipelines.promote import MODEL_URI_TAG

    state = _load_state(best["checkpoint"])
    mlflow.set_tracking_uri(uri)
    with tempfile.TemporaryDirectory() as d:
        ckpt.write_generator(state, d)
        with mlflow.start_run(run_id=child_run_id):
            info = log_generator(Path(d))
    name = params.registered_model_name
    client = MlflowClient(uri)
    mv = mlflow.register_model(info.model_uri, name, tags={MODEL_URI_TAG: info.model_uri, "genpipe.source": "tune",
                                                           f"genpipe.tune.{metric}": str(best["value"])})
    client.set_terminated(child_run_id, "FINISHED")
    return {"name": name, "version": mv.version, "model_uri": info.model_uri}


def _disabled(params: Params, repo_root: Path) -> dict:
    t = params.tune
    report = {"enabled": False, "note": "tune.enabled is false: train uses params as they are"}
    Path(t.storage_path or repo_root / "data" / "tune_runs").mkdir(parents=True, exist_ok=True)  # a DVC output
    with atomic_dir((repo_root / t.output_dir).resolve()) as tmp:
        (tmp / BEST_FILE).write_text(json.dumps({"enabled": False, "overrides": {}}, indent=2) + "\n")
    atomic_write((repo_root / t.report).resolve(), json.dumps(report, indent=2) + "\n")
    atomic_write((repo_root / t.trials_csv).resolve(), _write_csv([], []))
    print("tune: tune.enabled is false; nothing to sweep, train uses params as they are")
    return report


SWEEP_FILE = "genpipe_sweep.json"  # beside Tune's experiment state: skipped combinations, finished or not


def _unfinished(exp_path: Path) -> bool:
    from ray import tune

    marker = exp_path / SWEEP_FILE
    return (marker.is_file() and not json.loads(marker.read_text()).get("finished")
            and tune.Tuner.can_restore(str(exp_path)))


def _start(params: Params, ctx: dict, trainable, skipped):
    """A new sweep: expand the space, open the parent MLflow run, build the Tuner."""
    from ray import tune

    t, name, exp_path = params.tune, ctx["name"], ctx["exp_path"]
    if exp_path.exists():
        shutil.rmtree(exp_path)  # a finished sweep under the same params is replaced by a fresh one
    search_alg, num_trials, declared = _search(params, ctx["metric"], ctx["mode"], skipped, ctx["concurrency"])
    client = MlflowClient(ctx["uri"])
    parent_id = client.create_run(ctx["exp_id"], run_name=name, tags={
        mlflow_store.RUN_NAME_TAG: name, SWEEP_TAG: name, "genpipe.stage": "tune"}).info.run_id
    client.log_batch(parent_id, params=[Param(k, str(v)[:6000]) for k, v in params.flat().items()
                                        if k.startswith(("tune.", "train.", "model.", "seed"))])
    exp_path.mkdir(parents=True, exist_ok=True)
    (exp_path / SWEEP_FILE).write_text(json.dumps({"skipped": dict(skipped), "parent_run_id": parent_id}))
    if skipped:
        print(f"tune: skipped {sum(skipped.values())} combination(s) the config refuses:", flush=True)
        for reason, n in skipped.most_common():
            print(f"  {n} × {reason}", flush=True)
    print(f"tune: sweep {name}: {num_trials} trial(s) by {t.search} search, {t.scheduler} scheduler, "
          f"{ctx['concurrency']} at a time, metric {ctx['metric']} ({ctx['mode']}); parent MLflow run {parent_id}",
          flush=True)
    tuner = tune.Tuner(
        trainable,
        param_space=declared,
        tune_config=tune.TuneConfig(metric=ctx["metric"], mode=ctx["mode"], search_alg=search_alg,
                                    num_samples=num_trials, scheduler=_scheduler(params),
                                    max_concurrent_trials=ctx["concurrency"],
                                    # a finished trial's actor hosts the next one: one process start
                                    # less per trial (a stopped trial ends its own Train run)
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=name, storage_path=str(ctx["storage"]),
            failure_config=tune.FailureConfig(max_failures=t.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[_child_run_callback(ctx["uri"], ctx["exp_id"], parent_id, name,
                                           sample_z=min(params.train.sample_grid, 1024), params=params,
                                           prepared=ctx["prepared"])],
            verbose=1),
    )
    return tuner, parent_id


def _resume(ctx: dict, trainable, skipped):
    """An interrupted sweep: Tune's saved state decides which trials still run; finished ones are kept."""
    from ray import tune

    saved = json.loads((ctx["exp_path"] / SWEEP_FILE).read_text())
    skipped.update(saved["skipped"])
    MlflowClient(ctx["uri"]).update_run(saved["parent_run_id"], status="RUNNING")
    print(f"tune: resuming the interrupted sweep {ctx['name']} from {ctx['exp_path']}", flush=True)
    tuner = tune.Tuner.restore(str(ctx["exp_path"]), trainable=trainable, resume_unfinished=True,
                               resume_errored=False, restart_errored=False)
    return tuner, saved["parent_run_id"]


def run(params: Params, repo_root: Path, resume: bool | None = None) -> dict:
    """resume: None continues an interrupted sweep of the same params if there is one (so a killed
    `dvc repro` picks up where it stopped), else starts one; True requires one; False starts afresh."""
    from collections import Counter

    from ray import tune

    repo_root = Path(repo_root).resolve()
    if not params.tune.enabled:
        return _disabled(params, repo_root)
    t = params.tune
    if not t.space:
        raise ConfigError("tune.space is empty: give at least one key to search, e.g. "
                          "train.lr_g: {loguniform: [1e-4, 1e-3]}")
    manifest = read_manifest(params.prepared_path(repo_root))
    metric, mode = metric_and_mode(params, manifest.get("kind", "image"))
    from pipelines.evaluator import open_evaluator

    _, ev_info = open_evaluator(params, repo_root)  # fails clearly before start-up if the evaluator is missing
    name = sweep_name(params, manifest)
    storage = Path(t.storage_path or repo_root / "data" / "tune_runs").resolve()
    exp_path = storage / name
    can_resume = _unfinished(exp_path)
    if resume and not can_resume:
        raise TuneError(f"nothing to resume: no interrupted sweep {name} under {storage} (the params or data "
                        "changed, the sweep finished, or it never started); run `genpipe tune`")
    started = time.perf_counter()
    uri = mlflow_store.resolve_uri(params.tracking.uri, repo_root)
    client = MlflowClient(uri)
    exp_id = mlflow_store.experiment_id(client, params.experiment_name, mlflow_store.artifact_root_for(uri))
    # Tune saves the sweep's state (which trials finished) this often; a killed sweep resumes from it.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    init_ray()
    ctx = {"name": name, "exp_path": exp_path, "storage": storage, "uri": uri, "exp_id": exp_id, "metric": metric,
           "mode": mode, "concurrency": _concurrency(params), "prepared": params.prepared_path(repo_root)}
    trainable = tune.with_parameters(run_trial, base=params.model_dump(mode="json"), repo_root=str(repo_root),
                                     storage=str(storage / "train"))
    # The trial itself only waits: no CPU (its Train workers hold them); a 1-byte memory request gives
    # Tune the non-empty bundle it requires.
    trainable = tune.with_resources(trainable, {"cpu": 0, "memory": 1})
    skipped: Counter = Counter()
    if can_resume and resume is not False:
        tuner, parent_id = _resume(ctx, trainable, skipped)
    else:
        tuner, parent_id = _start(params, ctx, trainable, skipped)
    try:
        grid = tuner.fit()
    except BaseException as exc:  # the parent run must not stay RUNNING
        client.set_terminated(parent_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    report = _summarise(params, repo_root, ctx, grid, skipped, parent_id, ev_info["hash"], time.perf_counter() - started)
    marker = exp_path / SWEEP_FILE
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "finished": True}))
    shutil.rmtree(storage / "train", ignore_errors=True)  # Train's copies of checkpoints Tune already holds
    return report


def _summarise(params: Params, repo_root: Path, ctx: dict, grid, skipped, parent_id: str, evaluator_hash: str,
               wall: float) -> dict:
    """Rank the trials, register the best generator, write best.json, tune.json and the trials CSV."""
    from collections import Counter

    t, name, metric, mode = params.tune, ctx["name"], ctx["metric"], ctx["mode"]
    client = MlflowClient(ctx["uri"])
    rows = _trial_rows(grid, metric, t.trial_steps)
    scored = [r for r in rows if r["status"] != "failed" and r["value"] is not None and r["checkpoint"] is not None]
    if not scored:
        client.set_terminated(parent_id, "FAILED")
        reasons = "; ".join(f"{r['trial_id']}: {r['error']}" for r in rows if r["error"])
        raise TuneError(f"no trial of sweep {name} produced a {metric}" + (f" ({reasons})" if reasons else ""))
    best = (max if mode == "max" else min)(scored, key=lambda r: r["value"])
    registered = None
    if t.register_best:
        registered = _register_best(params, best, metric, ctx["uri"],
                                    child_run_id(client, ctx["exp_id"], name, best["trial_id"]))
    counts = Counter(r["status"] for r in rows)
    report = {
        "enabled": True, "sweep": name, "metric": metric, "mode": mode, "best_value": best["value"],
        "best_trial": best["trial_id"], "best_config": best["config"], "search": t.search, "scheduler": t.scheduler,
        "trials_total": len(rows), "trials_completed": counts["completed"], "trials_stopped_early": counts["stopped"],
        "trials_failed": counts["failed"],
        "failures": [{"trial": r["trial_id"], "reason": r["error"]} for r in rows if r["error"]],
        "skipped_total": sum(skipped.values()), "skipped": [{"reason": r, "count": n} for r, n in skipped.most_common()],
        "trial_seconds": round(sum(r["seconds"] for r in rows), 1), "wall_seconds": round(wall, 1),
        "trials": [{k: r[k] for k in ("trial_id", "status", "step", "worker_nodes", "resumed_from")} for r in rows],
        "exploits": [e for r in rows for e in _exploits_of(r["trial_id"], r["history"])], "concurrency": ctx["concurrency"], "trial_steps": t.trial_steps,
        "evaluator_hash": evaluator_hash, "registered": registered, "mlflow_parent_run_id": parent_id,
    }
    keys = sorted({k for r in rows for k in r["config"]})
    with atomic_dir((repo_root / t.output_dir).resolve()) as tmp:
        (tmp / BEST_FILE).write_text(json.dumps({"enabled": True, "overrides": best["config"], "metric": metric,
                                                 "value": best["value"], "sweep": name}, indent=2, sort_keys=True) + "\n")
    atomic_write((repo_root / t.trials_csv).resolve(), _write_csv(rows, keys))
    atomic_write((repo_root / t.report).resolve(), json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    client.log_batch(parent_id, metrics=[Metric(f"best_{metric}", float(best["value"]), int(time.time() * 1000), 0)],
                     tags=[RunTag("genpipe.best_trial", best["trial_id"])])
    client.log_artifact(parent_id, str((repo_root / t.trials_csv).resolve()), "tune")
    client.set_terminated(parent_id, "FINISHED")
    print(f"tune: {len(rows)} trials ({counts['completed']} completed, {counts['stopped']} stopped early, "
          f"{counts['failed']} failed, {sum(skipped.values())} skipped) in {wall:.0f}s; best {metric} = "
          f"{best['value']:.4g} by {best['trial_id']}: {best['config']}", flush=True)
    return report
