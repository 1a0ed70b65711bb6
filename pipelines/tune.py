"""Stage `tune`: a Ray Tune sweep over tune.space whose best configuration `train` then retrains.

Every trial is a real training run: a Ray Train `TorchTrainer` started inside a Tune function
trainable (the Train V2 pattern). Rank 0 scores the generator at every checkpoint with the
evaluate stage's metrics under the same evaluator (fewer samples, `QuickScorer`). The trainable
forwards each report to Tune *with its checkpoint*, so ASHA can stop a trial on its metric and
PBT can copy a better trial's full state (G, D, both optimizers, EMA, step).

MLflow gets one parent run per sweep and one child run per trial, all written by the driver (a
Tune callback): trials never touch the store, so SQLite sees one writer however many trials run.
Outputs: <tune.output_dir>/best.json (what train/evaluate/promote apply), reports/tune.json and
reports/tune_trials.csv; the best trial's generator is registered under its own name,
`<registered model name>-sweeps` (see `sweep_model_name`), never as a promotion candidate."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from components.atomic import atomic_dir, atomic_write
from components.config import ConfigError, Params
from components.data.kinds import kind_of
from components.data.shards import publish_prepared, read_manifest
from components.evaluation import evaluator_dir, metric_and_mode, open_evaluator
from components.metrics.evaluators.base import INFO as EVALUATOR_SPEC
from components.storage import Location, check_reachable, location, publish
from components.section import weight_settings
from components.tracking import mlflow_store
from components.tracking.logged_model import log_generator, logged_generator_problems
from components.tracking.sweep_runs import SWEEP_TAG, child_run_callback, child_run_id
from components.training import checkpoint as ckpt
from components.tuning import search
from components.tuning.console import SweepConsole
from components.tuning.report import exploits_of, startup_summary, trial_rows, write_csv, write_curves
from components.tuning.search import TuneError
from pipelines.launch import LaunchError, check_reachable_by_workers, init_ray, ray_storage
from pipelines.leftovers import prune_sweep
from pipelines.links import BEST_FILE, MODEL_URI_TAG, WEIGHTS_TAG
from pipelines.tune_trial import in_process, run_trial, trial_params, trial_resources


def sweep_name(params: Params, manifest: dict) -> str:
    """tune-<dataset>-<hash>: of the family's run key (what changes the weights; trials vary it further by
    the space), the data and the tune section's settings (not its output files)."""
    run = params.family.run_key(params)
    # a trial runs tune.trial_steps on tune.num_workers (trial_params): train's budget and worker count are
    # not the sweep's, so changing them reruns train only
    run = {**run, "train": {k: v for k, v in run["train"].items() if k not in ("epochs", "max_steps")}}
    run.pop("num_workers")
    key = {**run, "data": manifest["content_hash"], "tune": weight_settings(params.tune)}
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
        need, why = ((t.gpus_per_trial, f"tune.gpus_per_trial = {t.gpus_per_trial:g}") if in_process(params) else
                     (t.num_workers, f"tune.num_workers = {t.num_workers}"))
        if need > gpus:
            raise TuneError(f"{why} with scaling.use_gpu needs {need:g} GPU(s) per trial; the Ray cluster has {gpus:g}")
        fits = min(fits, int(gpus / need + 1e-9))  # 1 / 0.1 is 9.99…: ten trials of a tenth still fit
    return t.max_concurrent_trials or max(1, fits)


def sweep_model_name(params: Params) -> str:
    """Where sweeps register their best trials: apart from the name promote reads and moves `champion` on,
    since a short trial is no candidate for production."""
    return f"{params.registered_model_name}-sweeps"


def _register_best(params: Params, sweep: str, best: dict, metric: str, uri: str, child_run_id: str | None) -> dict:
    """Log the best trial's generator in its child run and register it under sweep_model_name (no alias),
    through promote's checks: the checkpoint matches its hash record, and the logged model's files are all
    there with weights matching the hash its spec records; else nothing is registered."""
    try:
        state = ckpt.load_checkpoint(best["checkpoint"])
    except (ckpt.CheckpointIntegrityError, FileNotFoundError) as e:
        raise TuneError(f"the best trial {best['trial_id']}'s checkpoint cannot be registered: {e}. Nothing was "
                        "registered") from None
    mlflow.set_tracking_uri(uri)
    with tempfile.TemporaryDirectory() as d:
        ckpt.write_generator(state, d)  # its spec records the weights' hash
        weights = json.loads((Path(d) / ckpt.GENERATOR_SPEC).read_text())[ckpt.WEIGHTS_KEY]["sha256"]
        with mlflow.start_run(run_id=child_run_id):
            info = log_generator(Path(d), params.serving.max_samples)
    if problems := logged_generator_problems(uri, info.model_uri):
        raise TuneError(f"the best trial {best['trial_id']}'s logged model {info.model_uri} is incomplete or corrupt: "
                        + "; ".join(problems) + ". Nothing was registered; run the sweep again to log it anew")
    name = sweep_model_name(params)
    client = MlflowClient(uri)
    mv = mlflow.register_model(info.model_uri, name, tags={MODEL_URI_TAG: info.model_uri, "genpipe.source": "tune",
                                                           SWEEP_TAG: sweep, WEIGHTS_TAG: weights,
                                                           f"genpipe.tune.{metric}": str(best["value"])})
    client.set_terminated(child_run_id, "FINISHED")
    return {"name": name, "version": mv.version, "model_uri": info.model_uri}


def sweep_storage(params: Params, repo_root: Path) -> Location:
    """tune.storage_path (a local path or a URI), default data/tune_runs."""
    return location(params.tune.storage_path or Path(repo_root) / "data" / "tune_runs", base=repo_root)


def _disabled(params: Params, repo_root: Path) -> dict:
    t = params.tune
    report = {"enabled": False, "note": "tune.enabled is false: train uses params as they are"}
    with atomic_dir((repo_root / t.output_dir).resolve()) as tmp:
        (tmp / BEST_FILE).write_text(json.dumps({"enabled": False, "overrides": {}}, indent=2) + "\n")
    atomic_write((repo_root / t.report).resolve(), json.dumps(report, indent=2) + "\n")
    atomic_write((repo_root / t.trials_csv).resolve(), write_csv([], []))
    print("tune: tune.enabled is false; nothing to sweep, train uses params as they are")
    return report


SWEEP_FILE = "genpipe_sweep.json"  # beside Tune's experiment state: skipped combinations, finished or not


def _unfinished(exp_path: Location) -> bool:
    from ray import tune

    marker = exp_path / SWEEP_FILE
    return (marker.is_file() and not json.loads(marker.read_text()).get("finished")
            and tune.Tuner.can_restore(exp_path.path, storage_filesystem=exp_path.fs))


def _start(params: Params, ctx: dict, trainable, skipped):
    """A new sweep: expand the space, open the parent MLflow run, build the Tuner."""
    from ray import tune

    t, name, exp_path = params.tune, ctx["name"], ctx["exp_path"]
    exp_path.delete_dir()  # a finished sweep under the same params is replaced by a fresh one
    search_alg, num_trials, declared = search.search(params, ctx["metric"], ctx["mode"], skipped, ctx["concurrency"])
    client = MlflowClient(ctx["uri"])
    parent_id = client.create_run(ctx["exp_id"], run_name=name, tags={
        mlflow_store.RUN_NAME_TAG: name, SWEEP_TAG: name, "genpipe.stage": "tune"}).info.run_id
    client.log_batch(parent_id, params=[Param(k, str(v)[:6000]) for k, v in params.flat().items()
                                        if k.startswith(("tune.", "train.", "model.", "seed"))])
    exp_path.mkdir()
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
                                    num_samples=num_trials, scheduler=search.scheduler(params),
                                    max_concurrent_trials=ctx["concurrency"],
                                    # a finished trial's actor hosts the next one: one process start
                                    # less per trial (a stopped trial ends its own Train run)
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=name, **ray_storage(ctx["storage"]),
            failure_config=tune.FailureConfig(max_failures=t.max_failures),
            # PBT restores a donor's checkpoint some time after choosing it; meanwhile the donor keeps
            # reporting, so a short window can delete the checkpoint before the exploit reads it
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None if t.scheduler == "pbt" else 2),
            callbacks=[child_run_callback(ctx["uri"], ctx["exp_id"], parent_id, name,
                                           sample_z=min(params.train.sample_grid, 1024), params=params,
                                           prepared=ctx["prepared"])],
            # the tuned metric and the tuned values, uncut (components/tuning/console.py; needs Tune's
            # classic output, RAY_AIR_NEW_OUTPUT=0, set in `run`)
            progress_reporter=SweepConsole(t.trial_steps, ctx["metric"], ctx["mode"]),
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
    tuner = tune.Tuner.restore(ctx["exp_path"].path, trainable=trainable, resume_unfinished=True,
                               resume_errored=False, restart_errored=False, storage_filesystem=ctx["exp_path"].fs)
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
    if idle := t.idle_scheduler():  # before Ray starts: the sweep would run, but not as asked
        print(f"tune: warning: {idle}", flush=True)
    manifest = read_manifest(params.prepared_path(repo_root))
    metric, mode = metric_and_mode(params, kind_of(manifest).name)
    evaluator = open_evaluator(params, repo_root)  # fails clearly before start-up if the evaluator is missing
    name = sweep_name(params, manifest)
    storage = sweep_storage(params, repo_root)
    check_reachable(storage, "tune.storage_path")
    remote = location(params.data.remote, base=repo_root) if params.data.remote else None
    if remote is not None:
        check_reachable(remote, "data.remote")
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
    # Tune's classic output, the one that prints a RunConfig's progress_reporter (SweepConsole): its default
    # table shows four losses in place of the tuned metric and cuts values to 20 characters. Read at fit().
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    init_ray()
    prepared = params.prepared_path(repo_root)
    try:
        check_reachable_by_workers({"tune.storage_path": storage.uri, "data.remote": remote.uri if remote else str(prepared)})
    except LaunchError as e:
        raise TuneError(f"the sweep cannot start: {e}") from None
    published = None
    if remote is not None:  # what trials on other nodes read: the data and the evaluator, named by content
        published = {"prepared": publish_prepared(prepared, remote).uri,
                     "evaluator": publish(evaluator_dir(params, repo_root), remote / f"evaluator-{evaluator.hash[:16]}",
                                          last=EVALUATOR_SPEC).uri}
    ctx = {"name": name, "exp_path": exp_path, "storage": storage, "uri": uri, "exp_id": exp_id, "metric": metric,
           "mode": mode, "concurrency": _concurrency(params), "prepared": prepared}
    trainable = tune.with_parameters(run_trial, base=params.model_dump(mode="json"), repo_root=str(repo_root),
                                     storage=(storage / "train").uri, published=published)
    trainable = tune.with_resources(trainable, trial_resources(params))
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
    prune_sweep(grid)
    report = _summarise(params, repo_root, ctx, grid, skipped, parent_id, evaluator.hash, time.perf_counter() - started)
    marker = exp_path / SWEEP_FILE
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "finished": True}))
    (storage / "train").delete_dir()  # Train's copies of checkpoints Tune already holds
    return report


def _with_error_bars(params: Params, repo_root: Path, rows: list[dict]) -> None:
    """Each trial's last checkpoint scored over tune.error_seeds sampling seeds, drawn as the trial draws:
    its scores become their mean, with `<score>_seed_std`. The value Tune ranked by stays as reported."""
    from components.evaluation import QuickScorer

    scorer = QuickScorer(params, repo_root, params.tune.eval_samples)
    for r in rows:
        if r["status"] != "failed" and r["checkpoint"] is not None:
            g = ckpt.generator_from_state(ckpt.load_checkpoint(r["checkpoint"]))
            r["scores"] = scorer.over_seeds(g, trial_params(params, r["config"]), params.tune.error_seeds)


def _summarise(params: Params, repo_root: Path, ctx: dict, grid, skipped, parent_id: str, evaluator_hash: str,
               wall: float) -> dict:
    """Rank the trials, register the best generator, write best.json, tune.json and the trials CSV."""
    from collections import Counter

    t, name, metric, mode = params.tune, ctx["name"], ctx["metric"], ctx["mode"]
    client = MlflowClient(ctx["uri"])
    rows = trial_rows(grid, metric, t.trial_steps)
    if t.error_seeds > 1:
        _with_error_bars(params, repo_root, rows)
    scored = [r for r in rows if r["status"] != "failed" and r["value"] is not None and r["checkpoint"] is not None]
    if not scored:
        client.set_terminated(parent_id, "FAILED")
        reasons = "; ".join(f"{r['trial_id']}: {r['error']}" for r in rows if r["error"])
        raise TuneError(f"no trial of sweep {name} produced a {metric}" + (f" ({reasons})" if reasons else ""))
    best = (max if mode == "max" else min)(scored, key=lambda r: r["value"])
    registered = None
    if t.register_best:
        try:
            registered = _register_best(params, name, best, metric, ctx["uri"],
                                        child_run_id(client, ctx["exp_id"], name, best["trial_id"]))
        except TuneError:
            client.set_terminated(parent_id, "FAILED")
            raise
    counts = Counter(r["status"] for r in rows)
    report = {
        "enabled": True, "sweep": name, "metric": metric, "mode": mode, "best_value": best["value"],
        "best_trial": best["trial_id"], "best_config": best["config"], "search": t.search, "scheduler": t.scheduler,
        "trials_total": len(rows), "trials_completed": counts["completed"], "trials_stopped_early": counts["stopped"],
        "trials_failed": counts["failed"],
        "failures": [{"trial": r["trial_id"], "reason": r["error"]} for r in rows if r["error"]],
        "skipped_total": sum(skipped.values()), "skipped": [{"reason": r, "count": n} for r, n in skipped.most_common()],
        "trial_seconds": round(sum(r["seconds"] for r in rows), 1), "wall_seconds": round(wall, 1),
        "trial_startup": startup_summary(rows), "in_process_trials": in_process(params),
        "trials": [{k: r[k] for k in ("trial_id", "status", "step", "worker_nodes", "resumed_from", "startup_s")}
                   for r in rows],
        "exploits": [e for r in rows for e in exploits_of(r["trial_id"], r["history"])], "concurrency": ctx["concurrency"], "trial_steps": t.trial_steps,
        "error_seeds": t.error_seeds,
        "evaluator_hash": evaluator_hash, "registered": registered, "mlflow_parent_run_id": parent_id,
    }
    keys = sorted({k for r in rows for k in r["config"]})
    with atomic_dir((repo_root / t.output_dir).resolve()) as tmp:
        (tmp / BEST_FILE).write_text(json.dumps({"enabled": True, "overrides": best["config"], "metric": metric,
                                                 "value": best["value"], "sweep": name}, indent=2, sort_keys=True) + "\n")
    atomic_write((repo_root / t.trials_csv).resolve(), write_csv(rows, keys))
    if t.curves_csv:
        atomic_write((repo_root / t.curves_csv).resolve(), write_curves(rows, keys))
    atomic_write((repo_root / t.report).resolve(), json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    client.log_batch(parent_id, metrics=[Metric(f"best_{metric}", float(best["value"]), int(time.time() * 1000), 0)],
                     tags=[RunTag("genpipe.best_trial", best["trial_id"])])
    client.log_artifact(parent_id, str((repo_root / t.trials_csv).resolve()), "tune")
    client.set_terminated(parent_id, "FINISHED")
    print(f"tune: {len(rows)} trials ({counts['completed']} completed, {counts['stopped']} stopped early, "
          f"{counts['failed']} failed, {sum(skipped.values())} skipped) in {wall:.0f}s; best {metric} = "
          f"{best['value']:.4g} by {best['trial_id']}: {best['config']}", flush=True)
    return report


def dry_run(params: Params, repo_root: Path, resume: bool | None = None) -> dict:
    """What `run` would read, write and reuse (`genpipe tune --dry-run`): no sweep, a new one, or the
    interrupted one it continues; writes nothing (Ray is not started)."""
    from components.data.shards import MANIFEST
    from components.metrics.evaluators import INFO
    from components.options import OPTIONS_FILE, record_line, shown, tracking_uri, written

    root, t = Path(repo_root).resolve(), params.tune
    prepared = params.prepared_path(root)
    plan = {"reads": [], "reuses": [], "notes": [],
            "writes": [written(root / t.output_dir, root, f"{BEST_FILE}, {OPTIONS_FILE}"),
                       written(root / t.report, root, "the sweep's summary"),
                       written(root / t.trials_csv, root, "one row per trial")]
            + ([written(root / t.curves_csv, root, "learning curves")] if t.curves_csv else [])}
    if not t.enabled:
        plan["notes"].append(f"tune.enabled is false: no sweep; {BEST_FILE} says train uses params as they are")
        return plan
    if idle := t.idle_scheduler():
        plan["notes"].append(f"warning: {idle}")
    plan["reads"] = [record_line(prepared / MANIFEST, root, ("dataset", "content_hash"), "prepare"),
                     record_line(root / params.evaluator.output_dir / INFO, root, ("kind", "hash"),
                                 "evaluator")]
    if not (prepared / MANIFEST).is_file():
        plan["notes"].append("the sweep's name (and whether one can be resumed) needs the prepared data")
        return plan
    name = sweep_name(params, read_manifest(prepared))
    exp_path = sweep_storage(params, root) / name
    plan["writes"] += [written(exp_path, root, "Tune's state and trial checkpoints"),
                       f"MLflow: parent run {name} and a run per trial in experiment {params.experiment_name!r} at "
                       f"{tracking_uri(params, root)}"
                       + (f"; the best trial's generator registered as {sweep_model_name(params)}" if t.register_best
                          else "")]
    can_resume = _unfinished(exp_path)
    if resume and not can_resume:
        plan["notes"].append(f"the stage would stop: no interrupted sweep {name} to resume under "
                             f"{shown(exp_path.parent, root)}")
    elif can_resume and resume is not False:
        plan["reuses"].append(f"{shown(exp_path, root)}: resumes the interrupted sweep {name}")
    else:
        plan["notes"].append(f"starts sweep {name}: {t.search} search over {', '.join(t.space) or 'nothing'}, "
                             f"{t.scheduler} scheduler, {t.trial_steps} steps per trial")
    return plan
