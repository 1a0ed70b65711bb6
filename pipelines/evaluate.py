"""Stage `evaluate`: sample the candidate with a fixed seed and score it against the held-out split (or with
evaluate.reference train the train split: recorded in the report and as an MLflow tag) under the evaluator:
FID, KID, IS, precision/recall/density/coverage, class histogram KL and the real-vs-real floor (train split vs
test split, when both are large enough); for 2D mixtures modes captured, % high quality and reverse KL. The
family adds what it is for (cond_accuracy, PSNR/SSIM, label preservation, an ELBO…) and decides what its
samples are (components/families/); the scoring is components/evaluation.py."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import yaml

from components.atomic import atomic_write
from components.config import Params
from components.data.kinds import kind_of
from components.data.shards import read_manifest
from components.evaluation import TestSplit, input_classifier, measure, open_evaluator
from components.metrics.catalogue import SEED_STD
from components.options import OPTIONS_FILE, set_by
from components.training.checkpoint import load_generator
from components.training.images import uint8_npz
from components.tracking.mlflow_store import require_reachable
from components.tracking.names import REFERENCE_TAG
from pipelines.links import EVALUATOR_HASH_TAG, read_train_summary


class EvaluateError(ValueError):
    pass


def load_candidate(params: Params, repo_root: Path, origin: dict[str, str] | None = None
                   ) -> tuple[torch.nn.Module, dict]:
    """The exported generator, refused when it was trained with other weight settings than `params` (the
    resolved params: file → preset → tuned → --set). `origin`: dotted key → the layer that set it
    (components/options.set_by), so the refusal says where each value came from."""
    model_dir = (Path(repo_root) / params.train.output_dir).resolve()
    spec = json.loads((model_dir / "generator.json").read_text())
    configured = params.model.model_dump(mode="json")
    # a key the spec lacks came later (model.clusters): the model was trained at that key's default
    trained = {**type(params.model)().model_dump(mode="json"), **spec["model"]}
    differ = {f"model.{k}": (trained.get(k), configured.get(k))
              for k in sorted({*trained, *configured}) if trained.get(k) != configured.get(k)}
    differ.update(params.family.trained_differences(spec, params))  # sampling keys may differ
    if differ:
        configured_from = {} if origin is None else {k: origin.get(k, "default") for k in differ}
        raise EvaluateError(mismatch(model_dir, differ, _trained_from(model_dir, differ), configured_from))
    try:
        return load_generator(model_dir)
    except RuntimeError as e:  # state dict does not fit the architecture
        raise EvaluateError(f"the weights in {model_dir} do not match model {configured}: {e}") from None


def _trained_from(model_dir: Path, differ: dict[str, tuple]) -> dict[str, str]:
    """Dotted key → the layer that set the value the candidate was trained with, from the train stage's
    options beside it (only where they record that very value: a later run may have replaced the model)."""
    path = model_dir / OPTIONS_FILE
    doc = (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}

    def recorded(key: str):
        node = doc.get("params", {})
        try:
            for part in key.split("."):
                node = node[part]
        except (KeyError, TypeError):
            return _ABSENT
        return node

    return {k: doc.get("set_by", {}).get(k, "default") for k, (was, _) in differ.items() if recorded(k) == was}


_ABSENT = object()


def mismatch(model_dir: Path, differ: dict[str, tuple], trained_from: dict[str, str],
             configured_from: dict[str, str]) -> str:
    """The refusal: each differing key as trained and as configured, each value with the layer that set it
    where known ("default": no layer set it)."""
    def value(v, key: str, origin: dict[str, str]) -> str:
        return f"{v!r}" + (f" ({origin[key]})" if key in origin else "")

    rows = "; ".join(f"{k} trained with {value(was, k, trained_from)} but configured {value(now, k, configured_from)}"
                     for k, (was, now) in differ.items())
    return (f"the model in {model_dir} was trained with other settings than these params: {rows}; retrain "
            "with these params, or evaluate with the ones it was trained with")


def headline(report: dict, names: list[str]) -> dict:
    """What `dvc metrics show` compares: the family's metrics on this data, each with its error bar."""
    out = {}
    for name in names:
        if name in report:
            out[name] = report[name]
            if name + SEED_STD in report:
                out[name + SEED_STD] = report[name + SEED_STD]
    return out


def shown(metrics: dict, first: list[str]) -> list[str]:
    """What the console line shows: every number the measurement reported (each error bar beside its
    metric), in order: `first` (the headline metrics, then the floors and the family's extras), then the
    rest as measured (spreads, anything a scorer adds), then the costs."""
    rest = [k for k, v in metrics.items() if k not in first and k not in COSTS and not k.endswith(SEED_STD)
            and isinstance(v, (int, float))]
    return [*first, *rest, *COSTS]


def printed(report: dict, names: list[str]) -> str:
    """The console line: each name present ± its error bar, in order."""
    def one(key: str) -> str:
        spread = report.get(key + SEED_STD)
        return f"{key}={report[key]:.4g}" + (f"±{spread:.2g}" if spread is not None else "")

    return ", ".join(one(k) for k in names if isinstance(report.get(k), (int, float)))


# a sample's cost, printed after the metrics
COSTS = ("nfe", "sampling_seconds", "seconds_per_1k_samples", "eval_seconds")


def run(params: Params, repo_root: Path, layers=None) -> dict:
    """`layers` (components.options.Layers): where the params came from, named when the candidate is refused."""
    repo_root = Path(repo_root)
    started = time.perf_counter()
    family = params.family
    summary = read_train_summary(params, repo_root)
    require_reachable(summary["tracking_uri"])  # it writes there: a dead server is said at once
    g, spec = load_candidate(params, repo_root, None if layers is None else set_by(params, layers))
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
    keep = None
    if params.evaluate.mode_samples_file:
        def keep(samples):  # written at once: the set is large, and the metrics do not need it back
            atomic_write((repo_root / params.evaluate.mode_samples_file).resolve(), uint8_npz(samples))
    metrics, fake = measure(g, params, test, scorer, input_classifier(params, repo_root), keep)
    curve = family.quality_diversity(g, params, test, scorer)
    if curve is not None:
        metrics.update(curve_gains(curve, metrics, params.evaluate.curve_reference, repo_root))
    names = family.metric_names(params, kind_of(manifest).name)
    report = {**metrics, "evaluator_hash": info["hash"], "evaluator_kind": info["kind"],
              "reference": params.evaluate.reference,  # the real side: numbers under another are not compared
              "num_samples": len(fake), "seed": params.evaluate.seed,
              "error_seeds": params.evaluate.error_seeds,
              **scorer.evaluator.report_fields(params),
              "model_uri": summary["model_uri"], "mlflow_run_id": summary["mlflow_run_id"],
              **({"sampling": sampling} if sampling else {}),
              "eval_seconds": time.perf_counter() - started}

    report_path = (repo_root / params.evaluate.report).resolve()
    grid_path = (repo_root / params.evaluate.grid).resolve()
    atomic_write(grid_path, family.report_grid(g, fake, test))
    curve_path = (repo_root / params.evaluate.curve).resolve()
    if curve is not None:
        atomic_write(curve_path, curve_csv(curve))
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
                     tags=[RunTag(EVALUATOR_HASH_TAG, info["hash"]), RunTag(REFERENCE_TAG, params.evaluate.reference)])
    client.log_artifact(run_id, str(report_path), "evaluation")
    client.log_artifact(run_id, str(grid_path), "evaluation")
    if curve is not None:
        client.log_artifact(run_id, str(curve_path), "evaluation")
    first = [*names, *scorer.evaluator.floor_metrics, *family.printed_extra]
    print("evaluate: " + printed(report, shown(metrics, first))
          + f" (mean ± std over {params.evaluate.error_seeds} sampling seeds)")
    if curve is not None:
        print(f"quality–diversity curve ({min(params.evaluate.curve_samples, params.evaluate.num_samples)} "
              "samples per temperature; "
              f"{params.evaluate.curve}):\n" + curve_table(curve))
    return report


def curve_csv(curve: list[dict]) -> str:
    columns = list(curve[0])
    return ",".join(columns) + "\n" + "".join(",".join(f"{r[c]:.6g}" for c in columns) + "\n" for r in curve)


def curve_table(curve: list[dict]) -> str:
    return "\n".join("  " + ", ".join(f"{k}={v:.4g}" for k, v in row.items()) for row in curve)


def curve_gains(curve: list[dict], metrics: dict, reference: str | None, repo_root: Path) -> dict:
    """With evaluate.curve_reference (another model's curve, e.g. MLE's): this model's quality at its own
    sampling temperature minus the reference curve's at the same NLL_test (components/metrics/quality_diversity.py).
    NLL_oracle on oracle data (below zero: better than temperature-tuned MLE), else BLEU-4 (above zero: better)."""
    if reference is None:
        return {}
    import csv

    from components.metrics.quality_diversity import matched

    path = (repo_root / reference).resolve()
    try:
        with open(path, newline="") as f:
            ref = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    except (OSError, ValueError) as e:
        raise EvaluateError(f"evaluate.curve_reference = {reference!r}: cannot read a curve from {path}: {e}") from None
    key = "nll_oracle" if "nll_oracle" in metrics else "bleu4"
    if not ref or key not in ref[0] or "nll_test" not in ref[0]:
        raise EvaluateError(f"evaluate.curve_reference = {reference!r}: {path} has no nll_test and {key} columns "
                            "(a curve of a model on other data?)")
    at = matched(ref, "nll_test", metrics["nll_test"], key)
    return {f"matched_{key}": at.value, "matched_gain": metrics[key] - at.value,
            "matched_temperature": at.temperature, "matched_in_range": float(at.in_range)}


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
                      *([written(root / e.curve, root, "the quality–diversity curve")]
                        if params.family.tempered else []),
                       f"MLflow: eval/* metrics, the evaluator hash and reference tags, {RUN_ARTIFACT['evaluate']} and "
                       f"the report and grid on the candidate's run" + (
                           f" {json.loads(summary.read_text())['mlflow_run_id']}" if summary.is_file() else "")],
            "reuses": [],
            "notes": [f"{e.error_seeds} sampling seed(s) from seed {e.seed}; options beside the report as evaluate_"
                      f"{OPTIONS_FILE}"]}
