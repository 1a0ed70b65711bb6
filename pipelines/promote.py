"""Stage `promote`: register the evaluated candidate as a model version and move the champion
alias to it only when it beats the current champion under the same evaluator.

The registry is only touched once everything is checked: a candidate without a matching
evaluation, or whose logged model's files are missing or do not match their recorded hash, raises
before anything is registered or moved. A champion whose own files are missing or corrupt cannot be
loaded, so a verified candidate replaces it without a metric comparison (the reason says so).

Idempotent: a rerun finds the version already registered for the candidate (by its model URI tag)
and, when it is already the champion, writes the report of the run that promoted it (kept as the
version's `genpipe.promotion` tag) — same version, alias untouched, byte-identical report."""
from __future__ import annotations

import json
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from components.atomic import atomic_write
from components.config import Params
from components.data.kinds import kind_of
from components.data.shards import read_manifest
from components.metrics.catalogue import greater_is_better
from components.tracking.logged_model import logged_generator_problems
from pipelines.links import EVALUATOR_HASH_TAG, MODEL_URI_TAG, read_train_summary

DECISION_TAG = "genpipe.promotion"  # on a promoted version: the decision that moved the alias to it (JSON)


class PromoteError(ValueError):
    pass


def promotion_metric(params: Params, repo_root: Path) -> str:
    """promote.metric, else the family's default metric on this data (the one tune ranks trials by)."""
    if params.promote.metric:
        return params.promote.metric
    return params.family.default_metric(kind_of(read_manifest(params.prepared_path(repo_root))).name)


def _read_evaluation(params: Params, repo_root: Path, summary: dict, metric: str) -> dict:
    path = (repo_root / params.evaluate.report).resolve()
    if not path.is_file():
        raise PromoteError(f"the candidate {summary['model_uri']} has no evaluation ({path} is missing); "
                           "run `genpipe evaluate` first — an unevaluated model is never registered")
    report = json.loads(path.read_text())
    if report.get("model_uri") != summary["model_uri"]:
        raise PromoteError(f"{path} evaluates {report.get('model_uri')}, not the candidate {summary['model_uri']}; "
                           "run `genpipe evaluate` again")
    if metric not in report:
        raise PromoteError(f"promote.metric = {metric!r} is not in {path}")
    return report


def _version_for(client: MlflowClient, name: str, model_uri: str):
    """The version already registered for this candidate (a rerun must not register it twice)."""
    for mv in client.search_model_versions(f"name = '{name}'"):
        if mv.tags.get(MODEL_URI_TAG) == model_uri:
            return mv
    return None


def _champion(client: MlflowClient, name: str, alias: str):
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def decide(value: float, report: dict, champion, metric: str, greater_is_better: bool) -> tuple[bool, float | None, str]:
    """(promote?, champion's value, reason) for a candidate against the current champion version."""
    if champion is None:
        return True, None, "no current champion"
    if champion.tags.get(EVALUATOR_HASH_TAG) != report["evaluator_hash"]:
        return False, None, "the champion was evaluated under a different evaluator; metrics are not comparable"
    raw = champion.tags.get(f"metric.{metric}")
    if raw is None:
        return False, None, f"the champion has no {metric} to compare with"
    best = float(raw)
    better = value > best if greater_is_better else value < best
    return better, best, f"candidate {metric} {value:.6g} {'beats' if better else 'does not beat'} champion {best:.6g}"


def _check_candidate(uri: str, model_uri: str) -> None:
    problems = logged_generator_problems(uri, model_uri)
    if problems:
        raise PromoteError(f"the candidate {model_uri} cannot be promoted: its logged model is incomplete or corrupt: "
                           + "; ".join(problems) + ". Nothing was registered and no alias moved; run `genpipe train` "
                           "again to log the model anew")


def _recorded_decision(mv, metric: str, value: float, report: dict) -> tuple[float | None, str] | None:
    """(champion value, reason) of the run that made this version champion, if it judged this same evaluation."""
    try:
        recorded = json.loads(mv.tags.get(DECISION_TAG, "null"))
    except ValueError:
        return None
    if not isinstance(recorded, dict) or (recorded.get("metric"), recorded.get("candidate_value"),
                                          recorded.get("evaluator_hash")) != (metric, value, report["evaluator_hash"]):
        return None
    return recorded.get("champion_value"), recorded.get("reason", "already the champion")


def run(params: Params, repo_root: Path) -> dict:
    repo_root = Path(repo_root)
    summary = read_train_summary(params, repo_root)
    metric = promotion_metric(params, repo_root)
    report = _read_evaluation(params, repo_root, summary, metric)
    alias, name = params.promote.alias, params.registered_model_name
    value = float(report[metric])
    uri, model_uri = summary["tracking_uri"], summary["model_uri"]
    client = MlflowClient(uri)
    _check_candidate(uri, model_uri)  # before the registry is touched at all

    champion = _champion(client, name, alias)
    mv = _version_for(client, name, model_uri)
    already = champion is not None and mv is not None and champion.version == mv.version
    if already:  # a rerun: nothing moves; report what the promoting run reported
        promoted = True
        champion_value, reason = _recorded_decision(mv, metric, value, report) or (value, "already the champion")
    else:
        broken = []
        if champion is not None:
            broken = logged_generator_problems(uri, champion.tags.get(MODEL_URI_TAG) or champion.source)
        if broken:
            promoted, champion_value = True, None
            reason = (f"the champion (version {champion.version}) cannot be loaded: " + "; ".join(broken)
                      + "; the verified candidate replaces it without a metric comparison")
        else:
            promoted, champion_value, reason = decide(value, report, champion, metric, greater_is_better(metric))

    if mv is None:
        tags = {MODEL_URI_TAG: model_uri, EVALUATOR_HASH_TAG: report["evaluator_hash"],
                "mlflow_run_id": summary["mlflow_run_id"],
                **{f"metric.{k}": str(v) for k, v in report.items() if isinstance(v, (int, float)) and k != "seed"}}
        mlflow.set_tracking_uri(uri)
        mv = mlflow.register_model(model_uri, name, tags=tags)
    if promoted and not already:
        decision = {"metric": metric, "candidate_value": value, "evaluator_hash": report["evaluator_hash"],
                    "champion_value": champion_value, "reason": reason}
        client.set_model_version_tag(name, mv.version, DECISION_TAG, json.dumps(decision, sort_keys=True))
        client.set_registered_model_alias(name, alias, mv.version)

    result = {"model_name": name, "version": int(mv.version), "promoted": promoted,
              "champion_version": int(mv.version) if promoted else (int(champion.version) if champion else None),
              "metric": metric, "candidate_value": value, "champion_value": champion_value, "reason": reason,
              "evaluator_hash": report["evaluator_hash"]}
    atomic_write(repo_root / params.promote.report, json.dumps(result, indent=2, sort_keys=True) + "\n")
    if already:
        print(f"promote: {name} version {mv.version} is already {alias!r}; nothing moved — {reason}")
    else:
        print(f"promote: {name} version {mv.version} {'is now' if promoted else 'is not'} {alias!r} — {reason}")
    return result
