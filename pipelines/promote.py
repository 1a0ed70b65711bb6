"""Stage `promote`: register the evaluated candidate as a model version and move the champion
alias to it only when it beats the current champion by more than the noise, measured alike
(components/tracking/promotion.py: the decision, the re-score of a champion measured under another
evaluator, the registry). The stage reads the candidate (train's summary, evaluate's report, which must
evaluate that candidate: an unevaluated model is never registered), writes `promote.report` and says
what moved. Rerun on a champion, it writes the report of the run that promoted it again, byte-identical."""
from __future__ import annotations

import json
from pathlib import Path

from components.atomic import atomic_write
from components.config import Params
from components.tracking.mlflow_store import require_reachable
from components.tracking.promotion import PromoteError, promote_candidate, promotion_metric
from pipelines.links import read_train_summary


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


def run(params: Params, repo_root: Path) -> dict:
    repo_root = Path(repo_root)
    summary = read_train_summary(params, repo_root)
    require_reachable(summary["tracking_uri"])  # it writes there: a dead server is said at once
    from components.evaluation import check_evaluator  # torch: imported when the stage runs

    check_evaluator(params, repo_root)  # numbers measured under another data's evaluator are never registered
    metric = promotion_metric(params, repo_root)
    report = _read_evaluation(params, repo_root, summary, metric)
    result, already = promote_candidate(params, repo_root, summary, report, metric)
    atomic_write(repo_root / params.promote.report, json.dumps(result, indent=2, sort_keys=True) + "\n")
    name, version, alias, reason = result["model_name"], result["version"], params.promote.alias, result["reason"]
    if already:
        print(f"promote: {name} version {version} (these weights) is already {alias!r}; nothing moved "
              f"(it was promoted because: {reason})")
    else:
        print(f"promote: {name} version {version} {'is now' if result['promoted'] else 'is not'} {alias!r} — {reason}")
    return result


def dry_run(params: Params, repo_root: Path) -> dict:
    """What `run` would read and change (`genpipe promote --dry-run`); writes nothing, touches no registry."""
    from components.data.shards import MANIFEST
    from components.options import RUN_ARTIFACT, record_line, written
    from pipelines.links import SUMMARY_FILE

    root, p = Path(repo_root), params.promote
    metric = p.metric or ("the family's default metric" if not (params.prepared_path(root) / MANIFEST).is_file()
                          else promotion_metric(params, root))
    return {"reads": [record_line(root / params.train.output_dir / SUMMARY_FILE, root,
                                  ("run_name", "mlflow_run_id", "model_uri"), "train"),
                      record_line(root / params.evaluate.report, root, ("model_uri", "evaluator_hash", metric),
                                  "evaluate")],
            "writes": [written(root / p.report, root, "the decision and its reasons"),
                       f"MLflow registry: the candidate as a version of {params.registered_model_name!r} (once per set "
                       f"of weights); alias {p.alias!r} moved to it only if it beats the champion on {metric} by more "
                       f"than {p.margin:g} × the noise",
                       f"MLflow: {RUN_ARTIFACT['promote']} on the candidate's run"],
            "reuses": [], "notes": []}
