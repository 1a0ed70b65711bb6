"""Stage `evaluate`: sample the candidate with a fixed seed and score it against the held-out split under
the evaluator: FID, KID, IS, precision/recall/density/coverage, class histogram KL and the real-vs-real
floor (train split vs test split); for 2D mixtures modes captured, % high quality and reverse KL. The
family adds what it is for (cond_accuracy, PSNR/SSIM, label preservation, an ELBO…) and decides what its
samples are (components/families/); the scoring is components/evaluation.py."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from components.atomic import atomic_write
from components.config import Params
from components.data.kinds import kind_of
from components.data.shards import read_manifest
from components.evaluation import TestSplit, input_classifier, measure, open_evaluator
from components.metrics.catalogue import SEED_STD
from components.training.checkpoint import load_generator
from components.tracking.mlflow_store import require_reachable
from pipelines.links import EVALUATOR_HASH_TAG, read_train_summary


class EvaluateError(ValueError):
    pass


def load_candidate(params: Params, repo_root: Path) -> tuple[torch.nn.Module, dict]:
    model_dir = (Path(repo_root) / params.train.output_dir).resolve()
    spec = json.loads((model_dir / "generator.json").read_text())
    configured = params.model.model_dump(mode="json")
    if spec["model"] != configured:
        raise EvaluateError(f"the generator in {model_dir} was trained with model {spec['model']}, "
                            f"but params.yaml configures model {configured}; retrain or fix the model section")
    if (why := params.family.check_trained(spec, params)) is not None:  # sampling keys may differ
        raise EvaluateError(f"the model in {model_dir} {why}")
    try:
        return load_generator(model_dir)
    except RuntimeError as e:  # state dict does not fit the architecture
        raise EvaluateError(f"the weights in {model_dir} do not match model {configured}: {e}") from None


def headline(report: dict, names: list[str]) -> dict:
    """What `dvc metrics show` compares: the family's metrics on this data, each with its error bar."""
    out = {}
    for name in names:
        if name in report:
            out[name] = report[name]
            if name + SEED_STD in report:
                out[name + SEED_STD] = report[name + SEED_STD]
    return out


def printed(report: dict, names: list[str]) -> str:
    """The console line: each name present ± its error bar, in order."""
    def one(key: str) -> str:
        spread = report.get(key + SEED_STD)
        return f"{key}={report[key]:.4g}" + (f"±{spread:.2g}" if spread is not None else "")

    return ", ".join(one(k) for k in names if isinstance(report.get(k), (int, float)))


# a sample's cost, printed after the metrics
COSTS = ("nfe", "seconds_per_1k_samples", "eval_seconds")


def run(params: Params, repo_root: Path) -> dict:
    repo_root = Path(repo_root)
    started = time.perf_counter()
    family = params.family
    summary = read_train_summary(params, repo_root)
    require_reachable(summary["tracking_uri"])  # it writes there: a dead server is said at once
    g, spec = load_candidate(params, repo_root)
    prepared = params.prepared_path(repo_root)
    manifest = read_manifest(prepared)
    if spec["data_hash"] != manifest["content_hash"]:
        raise EvaluateError(f"the candidate was trained on data {spec['data_hash'][:12]} but {prepared} holds "
                            f"{manifest['content_hash'][:12]}; rerun the pipeline")
    scorer = open_evaluator(params, repo_root)
    scorer.check_sample_size(*family.scored_count(params, manifest))  # before sampling
    info = scorer.info
    test = TestSplit.load(prepared)
    sampling = family.sampling_options(params)
    metrics, fake = measure(g, params, test, scorer, input_classifier(params, repo_root))
    names = family.metric_names(params, kind_of(manifest).name)
    report = {**metrics, "evaluator_hash": info["hash"], "evaluator_kind": info["kind"],
              "num_samples": len(fake), "seed": params.evaluate.seed,
              "error_seeds": params.evaluate.error_seeds,
              **scorer.evaluator.report_fields(params),
              "model_uri": summary["model_uri"], "mlflow_run_id": summary["mlflow_run_id"],
              **({"sampling": sampling} if sampling else {}),
              "eval_seconds": time.perf_counter() - started}

    report_path = (repo_root / params.evaluate.report).resolve()
    grid_path = (repo_root / params.evaluate.grid).resolve()
    atomic_write(grid_path, family.report_grid(g, fake, test))
    atomic_write(report_path, json.dumps(report, indent=2, sort_keys=True) + "\n")
    atomic_write((repo_root / params.evaluate.headline).resolve(),
                 json.dumps(headline(report, names), indent=2) + "\n")

    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(summary["tracking_uri"])
    run_id = summary["mlflow_run_id"]
    ts = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(f"eval/{k}", float(v), ts, 0) for k, v in metrics.items()
                                      if isinstance(v, (int, float))],
                     tags=[RunTag(EVALUATOR_HASH_TAG, info["hash"])])
    client.log_artifact(run_id, str(report_path), "evaluation")
    client.log_artifact(run_id, str(grid_path), "evaluation")
    shown = [*names, *scorer.evaluator.floor_metrics, *family.printed_extra, *COSTS]
    print("evaluate: " + printed(report, shown) + f" (mean ± std over {params.evaluate.error_seeds} sampling seeds)")
    return report


def dry_run(params: Params, repo_root: Path) -> dict:
    """What `run` would read and write (`genpipe evaluate --dry-run`); writes nothing."""
    from components.data.shards import MANIFEST
    from components.metrics.evaluators import INFO
    from components.options import OPTIONS_FILE, RUN_ARTIFACT, record_line, written
    from pipelines.links import SUMMARY_FILE

    root, e = Path(repo_root), params.evaluate
    summary = root / params.train.output_dir / SUMMARY_FILE
    return {"reads": [record_line(summary, root, ("run_name", "mlflow_run_id", "model_uri", "steps"), "train"),
                      record_line(root / params.evaluator.output_dir / INFO, root, ("kind", "hash"), "evaluator"),
                      record_line(params.prepared_path(root) / MANIFEST, root, ("dataset", "content_hash"), "prepare")],
            "writes": [written(root / e.report, root, "every metric"), written(root / e.headline, root, "the headline"),
                       written(root / e.grid, root, "samples"),
                       f"MLflow: eval/* metrics, the evaluator hash tag, {RUN_ARTIFACT['evaluate']} and the report "
                       f"and grid on the candidate's run" + (
                           f" {json.loads(summary.read_text())['mlflow_run_id']}" if summary.is_file() else "")],
            "reuses": [],
            "notes": [f"{e.error_seeds} sampling seed(s) from seed {e.seed}; options beside the report as evaluate_"
                      f"{OPTIONS_FILE}"]}
