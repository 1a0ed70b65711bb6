"""Promotion: register an evaluated candidate as a model version and move the champion alias to it only
when it beats the current champion by more than the noise, measured alike (the `promote` stage).

- Same evaluator: the champion's recorded numbers are compared. Another evaluator (retrained, or a
  new definition): the champion is re-scored from its registered model under the candidate's
  evaluator (components/evaluation.measure, as evaluate does), the numbers are kept on the champion
  version (`genpipe.rescore.<evaluator>`; its earlier tags stay) and compared. Numbers from different
  evaluators are never compared. Nor are numbers against different real sides (evaluate.reference, the
  `genpipe.eval_reference` tag; a version without it was scored against the test split): a champion scored
  against another split is re-scored like one of another evaluator.
- Noise: each side's metric carries its error bar (std over sampling seeds); the alias moves only when
  the improvement exceeds promote.margin × the std of the difference, and the reason says so.
- The registry is only touched once everything is checked: a candidate whose logged model is incomplete
  or corrupt raises before anything is registered or moved. A champion whose files are missing or corrupt
  cannot be loaded, so a verified candidate replaces it without a comparison (the reason says so).
- Idempotent: the same weights (by hash) are one version however often promote runs; when it is
  already the champion, the decision of the run that promoted it is kept (as the version's
  `genpipe.promotion` tag) and returned again — same version, alias untouched."""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from components.config import Params
from components.data.kinds import kind_of
from components.data.shards import read_manifest
from components.metrics.catalogue import SEED_STD, greater_is_better
from components.tracking.logged_model import download_generator, logged_generator_problems
from components.tracking.names import EVALUATOR_HASH_TAG, MODEL_URI_TAG, REFERENCE_TAG, WEIGHTS_TAG

DECISION_TAG = "genpipe.promotion"  # on a promoted version: the decision that moved the alias to it (JSON)
RESCORE_TAG = "genpipe.rescore."  # + evaluator hash: the version's metrics re-measured under that evaluator
DEFAULT_REFERENCE = "test"  # what numbers recorded before evaluate.reference were compared with


def reference_of(record) -> str:
    """The split a report's (or a version's tags') numbers compare samples with (evaluate.reference)."""
    return record.get("reference", record.get(REFERENCE_TAG, DEFAULT_REFERENCE))


def _rescore_tag(evaluator: str, reference: str) -> str:
    """Where a re-score under this evaluator and real side is kept (the test split's: the tag it always had)."""
    return RESCORE_TAG + evaluator + ("" if reference == DEFAULT_REFERENCE else f".{reference}")


class PromoteError(ValueError):
    pass


def promotion_metric(params: Params, repo_root: Path) -> str:
    """promote.metric, else the family's default metric on this data (the one tune ranks trials by)."""
    if params.promote.metric:
        return params.promote.metric
    return params.family.default_metric(kind_of(read_manifest(params.prepared_path(repo_root))).name)


def _version_for(client: MlflowClient, name: str, model_uri: str, weights: str | None):
    """The version already registered for this candidate or for the same weights logged again by a
    rerun (a rerun must not register them twice)."""
    for mv in client.search_model_versions(f"name = '{name}'"):
        if mv.tags.get(MODEL_URI_TAG) == model_uri or (weights and mv.tags.get(WEIGHTS_TAG) == weights):
            return mv
    return None


def _weights_of(params: Params, repo_root: Path) -> str | None:
    from components.training.checkpoint import GENERATOR_SPEC, WEIGHTS_KEY

    spec = json.loads(((repo_root / params.train.output_dir) / GENERATOR_SPEC).read_text())
    return (spec.get(WEIGHTS_KEY) or {}).get("sha256")


def _champion(client: MlflowClient, name: str, alias: str):
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def decide(metric: str, candidate: tuple[float, float | None], champion: tuple[float, float | None],
           margin: float) -> tuple[bool, str]:
    """(promote?, reason): (value, error bar) of each side under the same evaluator. The alias moves only
    when the improvement exceeds margin × the std of the difference (a missing error bar counts as 0)."""
    (value, std), (best, best_std) = candidate, champion
    gain = value - best if greater_is_better(metric) else best - value
    noise = math.hypot(std or 0.0, best_std or 0.0)
    better = gain > margin * noise and gain > 0

    def shown(v, e):
        return f"{v:.6g}" + (f" ± {e:.2g}" if e is not None else "")

    verdict = "beats" if better else ("does not beat" if gain <= 0 else "is within the noise of")
    reason = f"candidate {metric} {shown(value, std)} {verdict} champion {shown(best, best_std)}"
    if gain > 0 and noise > 0:
        reason += f" (improvement {gain:.3g} {'>' if better else '≤'} margin {margin:g} × {noise:.3g}, the std of the difference)"
    return better, reason


def _champion_numbers(params: Params, repo_root: Path, client: MlflowClient, uri: str, champion, report: dict,
                      metric: str) -> tuple[float | None, float | None, dict | None]:
    """(value, error bar, the re-score when there was one) of the champion under the candidate's evaluator."""
    evaluator, reference = report["evaluator_hash"], reference_of(report)
    if champion.tags.get(EVALUATOR_HASH_TAG) == evaluator and reference_of(champion.tags) == reference:
        raw = champion.tags.get(f"metric.{metric}")
        std = champion.tags.get(f"metric.{metric}{SEED_STD}")
        return (None if raw is None else float(raw)), (None if std is None else float(std)), None
    tag = _rescore_tag(evaluator, reference)
    rescored = json.loads(champion.tags[tag]) if tag in champion.tags else None
    if rescored is None:
        rescored = _rescore(params, repo_root, uri, champion, evaluator, reference)
        client.set_model_version_tag(champion.name, champion.version, tag, json.dumps(rescored, sort_keys=True))
    return rescored.get(metric), rescored.get(metric + SEED_STD), rescored


def _rescore(params: Params, repo_root: Path, uri: str, champion, evaluator: str, reference: str) -> dict:
    """The champion's registered generator measured as evaluate measures a candidate, under the evaluator
    of this workspace and against the real side of these params (both must be the candidate's)."""
    import time

    from components.evaluation import TestSplit, input_classifier, measure, open_evaluator
    from components.training.checkpoint import load_generator

    if params.evaluate.reference != reference:  # before any work: the champion would be scored against another split
        raise PromoteError(f"the candidate was scored with evaluate.reference {reference}, but these params say "
                           f"{params.evaluate.reference}: its champion cannot be re-scored alike; run `genpipe "
                           "evaluate` again with these params")
    started = time.perf_counter()
    scorer = open_evaluator(params, repo_root)
    if scorer.hash != evaluator:
        raise PromoteError(f"the candidate was evaluated under evaluator {evaluator[:12]}, but "
                           f"{params.evaluator.output_dir} holds {scorer.hash[:12]}; run `genpipe evaluate` again")
    prepared = params.prepared_path(repo_root)
    with tempfile.TemporaryDirectory() as tmp:
        g, spec = load_generator(download_generator(uri, champion.tags.get(MODEL_URI_TAG) or champion.source, Path(tmp)))
    if spec["model"]["family"] != params.model.family:
        raise PromoteError(f"the champion (version {champion.version}) is a {spec['model']['family']} model; "
                           f"this candidate is {params.model.family}: they cannot share a registered model name")
    metrics, _ = measure(g, params, TestSplit.load(prepared), scorer, input_classifier(params, repo_root))
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not k.endswith("seconds")}
    print(f"promote: re-scored the champion (version {champion.version}, measured under evaluator "
          f"{(champion.tags.get(EVALUATOR_HASH_TAG) or '?')[:12]} against the {reference_of(champion.tags)} split) "
          f"under evaluator {evaluator[:12]} against the {reference} split in {time.perf_counter() - started:.1f}s",
          flush=True)
    return {**numbers, "evaluator_hash": evaluator, "reference": reference, "error_seeds": params.evaluate.error_seeds}


def _check_candidate(uri: str, model_uri: str) -> None:
    problems = logged_generator_problems(uri, model_uri)
    if problems:
        raise PromoteError(f"the candidate {model_uri} cannot be promoted: its logged model is incomplete or corrupt: "
                           + "; ".join(problems) + ". Nothing was registered and no alias moved; run `genpipe train` "
                           "again to log the model anew")


def _recorded_decision(mv, metric: str, value: float, report: dict) -> dict | None:
    """The decision of the run that made this version champion, if it judged this same evaluation."""
    try:
        recorded = json.loads(mv.tags.get(DECISION_TAG, "null"))
    except ValueError:
        return None
    if not isinstance(recorded, dict) or (recorded.get("metric"), recorded.get("candidate_value"),
                                          recorded.get("evaluator_hash"), reference_of(recorded)) != (
            metric, value, report["evaluator_hash"], reference_of(report)):
        return None
    return recorded


def promote_candidate(params: Params, repo_root: Path, summary: dict, report: dict,
                      metric: str) -> tuple[dict, bool]:
    """Register the candidate of `summary` (train's) judged by `report` (evaluate's) and move the alias
    when it wins: (the promotion report, whether these weights were already the champion)."""
    alias, name, margin = params.promote.alias, params.registered_model_name, params.promote.margin
    value, value_std = float(report[metric]), report.get(metric + SEED_STD)
    uri, model_uri = summary["tracking_uri"], summary["model_uri"]
    weights = _weights_of(params, repo_root)
    client = MlflowClient(uri)
    _check_candidate(uri, model_uri)  # before the registry is touched at all

    champion = _champion(client, name, alias)
    mv = _version_for(client, name, model_uri, weights)
    already = champion is not None and mv is not None and champion.version == mv.version
    champion_value = champion_std = rescored = recorded = None
    if already:  # a rerun: nothing moves; report what the promoting run reported
        promoted, reason = True, "already the champion"
        recorded = _recorded_decision(mv, metric, value, report)
    elif champion is None:
        promoted, reason = True, "no current champion"
    elif broken := logged_generator_problems(uri, champion.tags.get(MODEL_URI_TAG) or champion.source):
        promoted = True
        reason = (f"the champion (version {champion.version}) cannot be loaded: " + "; ".join(broken)
                  + "; the verified candidate replaces it without a metric comparison")
    else:
        champion_value, champion_std, rescored = _champion_numbers(params, repo_root, client, uri, champion,
                                                                   report, metric)
        if champion_value is None:
            promoted, reason = False, f"the champion has no {metric} to compare with"
        else:
            promoted, reason = decide(metric, (value, value_std), (champion_value, champion_std), margin)
            if rescored is not None:
                reason += (f" (champion re-scored under evaluator {report['evaluator_hash'][:12]}"
                           + ("" if reference_of(report) == DEFAULT_REFERENCE else
                              f" against the {reference_of(report)} split") + ")")

    if mv is None:
        tags = {MODEL_URI_TAG: model_uri, EVALUATOR_HASH_TAG: report["evaluator_hash"],
                REFERENCE_TAG: reference_of(report),
                "mlflow_run_id": summary["mlflow_run_id"], **({WEIGHTS_TAG: weights} if weights else {}),
                **{f"metric.{k}": str(v) for k, v in report.items() if isinstance(v, (int, float)) and k != "seed"}}
        mlflow.set_tracking_uri(uri)
        mv = mlflow.register_model(model_uri, name, tags=tags)
    decision = recorded or {"metric": metric, "candidate_value": value, "candidate_std": value_std,
                            "evaluator_hash": report["evaluator_hash"], "reference": reference_of(report),
                            "champion_value": champion_value,
                            "champion_std": champion_std, "margin": margin, "reason": reason,
                            **({"champion_rescore": rescored, "champion_evaluator_hash":
                                champion.tags.get(EVALUATOR_HASH_TAG)} if rescored is not None else {})}
    if promoted and not already:
        client.set_model_version_tag(name, mv.version, DECISION_TAG, json.dumps(decision, sort_keys=True))
        client.set_registered_model_alias(name, alias, mv.version)
    elif not already:  # registered, not promoted: the version keeps why
        client.set_model_version_tag(name, mv.version, "genpipe.not_promoted", json.dumps(decision, sort_keys=True))

    result = {"model_name": name, "version": int(mv.version), "promoted": promoted,
              "champion_version": int(mv.version) if promoted else (int(champion.version) if champion else None),
              **decision}
    return result, already
