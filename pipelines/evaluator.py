"""Stage `evaluator`: the feature network every metric is computed with. Metrics are comparable
only under the same evaluator, so its content hash travels with every metric written anywhere.

The classifier evaluator is pinned (components/metrics/pins.py): when a pin of this definition is
kept in the repository, it is copied, so every clone on every machine measures with the same weights.
Otherwise it is trained here once; DVC caches it (share it with `dvc push`), and `--pin` keeps it in
the repository. `--retrain` trains anew even when pinned, and says which numbers it orphans."""
from __future__ import annotations

import json
from pathlib import Path

from components.config import Params
from components.data.shards import read_manifest
from components.metrics.evaluators import INFO, evaluator_of


def run(params: Params, repo_root: Path, retrain: bool = False, pin: bool = False) -> dict:
    out_dir = (Path(repo_root) / params.evaluator.output_dir).resolve()
    prepared = params.prepared_path(repo_root)
    manifest = read_manifest(prepared)
    before = _hash_in(out_dir)
    info = evaluator_of(params, manifest).build(params, manifest, prepared, out_dir, retrain=retrain, pin=pin)
    if retrain and before not in (None, info["hash"]):
        _say_orphaned(params, repo_root, before, info["hash"])
    return info


def _hash_in(out_dir: Path) -> str | None:
    path = out_dir / INFO
    return json.loads(path.read_text()).get("hash") if path.is_file() else None


def _say_orphaned(params: Params, repo_root: Path, old: str, new: str) -> None:
    """What a retrained evaluator leaves behind: numbers measured under the old one."""
    lines = [f"evaluator: replaced evaluator {old[:12]} by {new[:12]}; numbers measured under {old[:12]} are not "
             f"comparable with new ones:"]
    report = Path(repo_root) / params.evaluate.report
    if report.is_file() and json.loads(report.read_text()).get("evaluator_hash") == old:
        lines.append(f"  {params.evaluate.report} (rerun `genpipe evaluate`)")
    try:
        from mlflow.tracking import MlflowClient

        from components.tracking.mlflow_store import resolve_uri
        from pipelines.links import EVALUATOR_HASH_TAG

        name = params.registered_model_name
        versions = MlflowClient(resolve_uri(params.tracking.uri, repo_root)).search_model_versions(f"name = '{name}'")
        stale = sorted(int(v.version) for v in versions if v.tags.get(EVALUATOR_HASH_TAG) not in (None, new))
        if stale:
            lines.append(f"  versions {', '.join(map(str, stale))} of registered model {name!r}: `genpipe promote` "
                         "re-scores the champion under the new evaluator before comparing")
    except Exception as e:  # the registry is advisory here; the evaluator is already written
        lines.append(f"  (the model registry could not be read: {e})")
    print("\n".join(lines))


def dry_run(params: Params, repo_root: Path, retrain: bool = False, pin: bool = False) -> dict:
    """What `run` would read, write and reuse (`genpipe evaluator --dry-run`); writes nothing."""
    from components.data.shards import MANIFEST
    from components.metrics import pins
    from components.options import OPTIONS_FILE, record_line, written

    out_dir = (Path(repo_root) / params.evaluator.output_dir).resolve()
    prepared = params.prepared_path(repo_root)
    plan = {"reads": [record_line(prepared / MANIFEST, repo_root, ("dataset", "content_hash"), "prepare")],
            "writes": [written(out_dir, repo_root, f"{INFO}, the network if any, {OPTIONS_FILE}")], "reuses": [],
            "notes": [f"there now: {record_line(out_dir / INFO, repo_root, ('kind', 'hash'), 'evaluator')}"]
            if (out_dir / INFO).is_file() else []}
    if not (prepared / MANIFEST).is_file():
        plan["notes"].append("which evaluator, and how it is made, depends on the prepared data")
        return plan
    manifest = read_manifest(prepared)
    evaluator = evaluator_of(params, manifest)
    defn = evaluator.definition(params, manifest)
    pinned = defn is not None and not retrain and pins.find(defn) is not None
    plan["reuses" if pinned else "notes"].insert(0, evaluator.plan(params, manifest, retrain))
    if pin and defn is not None:
        plan["writes"].append(written(pins.pin_dir(defn), repo_root, "--pin: kept in git for every clone"))
    return plan
