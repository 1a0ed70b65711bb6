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
from components.metrics import scores
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


# what the stage prints (every metric is in the report)
_PRINTED = ("fid", "fid_floor", "fid_over_floor", "kid_mean", "is_mean", "precision", "recall", "density", "coverage",
            "class_kl", "cond_accuracy", "psnr", "bicubic_psnr", "ssim", "bicubic_ssim", "label_preservation_ab",
            "label_preservation_ba", "cycle_l1", "nelbo", "modes", "high_quality", "reverse_kl", "floor_high_quality",
            "nfe", "seconds_per_1k_samples", "eval_seconds")


def headline(report: dict, names: list[str]) -> dict:
    """What `dvc metrics show` compares: the family's metrics on this data, each with its error bar."""
    out = {}
    for name in names:
        if name in report:
            out[name] = report[name]
            if name + SEED_STD in report:
                out[name + SEED_STD] = report[name + SEED_STD]
    return out


def _printed(key: str, report: dict) -> str:
    spread = report.get(key + SEED_STD)
    return f"{key}={report[key]:.4g}" + (f"±{spread:.2g}" if spread is not None else "")


def run(params: Params, repo_root: Path) -> dict:
    repo_root = Path(repo_root)
    started = time.perf_counter()
    family = params.family
    summary = read_train_summary(params, repo_root)
    require_reachable(summary["tracking_uri"])  # it writes there: a dead server is said at once
    g, spec = load_candidate(params, repo_root)
    extractor, info = open_evaluator(params, repo_root)
    prepared = params.prepared_path(repo_root)
    manifest = read_manifest(prepared)
    if spec["data_hash"] != manifest["content_hash"]:
        raise EvaluateError(f"the candidate was trained on data {spec['data_hash'][:12]} but {prepared} holds "
                            f"{manifest['content_hash'][:12]}; rerun the pipeline")
    if extractor is not None:  # features need more samples than dimensions: checked before sampling
        n, what, knob = family.scored_count(params, manifest)
        scores.check_sample_size(n, extractor.feature_dim, what, knob=knob)
    test = TestSplit.load(prepared)
    sampling = family.sampling_options(params)
    metrics, fake = measure(g, params, prepared, test, extractor, info, input_classifier(params, repo_root))
    report = {**metrics, "evaluator_hash": info["hash"], "evaluator_kind": info["kind"],
              "num_samples": len(fake), "seed": params.evaluate.seed,
              "error_seeds": params.evaluate.error_seeds,
              **({"mode_samples": params.evaluate.mode_samples} if info["kind"] == "per_channel" else {}),
              "model_uri": summary["model_uri"], "mlflow_run_id": summary["mlflow_run_id"],
              **({"sampling": sampling} if sampling else {}),
              "eval_seconds": time.perf_counter() - started}

    report_path = (repo_root / params.evaluate.report).resolve()
    grid_path = (repo_root / params.evaluate.grid).resolve()
    atomic_write(grid_path, family.report_grid(g, fake, test))
    atomic_write(report_path, json.dumps(report, indent=2, sort_keys=True) + "\n")
    atomic_write((repo_root / params.evaluate.headline).resolve(),
                 json.dumps(headline(report, family.metric_names(params, kind_of(manifest).name)), indent=2) + "\n")

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
    print("evaluate: " + ", ".join(_printed(k, report) for k in _PRINTED if k in report)
          + f" (mean ± std over {params.evaluate.error_seeds} sampling seeds)")
    return report
