"""Stage `evaluator`: the feature network every metric is computed with. Metrics are comparable
only under the same evaluator, so its content hash travels with every metric written anywhere.

The classifier evaluator is pinned (components/metrics/pins.py): when a pin of this definition is
kept in the repository, it is copied, so every clone on every machine measures with the same weights.
Otherwise it is trained here once; DVC caches it (share it with `dvc push`), and `--pin` keeps it in
the repository. `--retrain` trains anew even when pinned, and says which numbers it orphans."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from components.atomic import atomic_dir
from components.config import Params
from components.data.shards import load_rank_inputs, load_split, read_manifest
from components.data.kinds import kind_of
from components.metrics import feature_nets, pins, text_scorer
from components.metrics.modes import mode_counter_info
from components.metrics.stacked import PerChannelClassifier, digit_images


def run(params: Params, repo_root: Path, retrain: bool = False, pin: bool = False) -> dict:
    cfg = params.evaluator
    out_dir = (Path(repo_root) / cfg.output_dir).resolve()
    prepared = params.prepared_path(repo_root)
    manifest = read_manifest(prepared)
    meta = {"dataset": manifest["dataset"], "content_hash": manifest["content_hash"],
            "class_names": manifest["class_names"], "seed": cfg.seed}
    if kind_of(manifest).scored_by == "mode counter":
        # 2D mixtures are scored by counting modes against the known mixture: no network to train.
        info = {**meta, **mode_counter_info(manifest["mixture"])}
        with atomic_dir(out_dir) as tmp:
            (tmp / feature_nets.INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        print(f"evaluator: mode counter for {manifest['dataset']} ({len(info['centers'])} modes, σ = {info['sigma']}); "
              f"hash {info['hash'][:12]}; written to {out_dir}")
        return info
    if kind_of(manifest).scored_by == "text":
        # token data are scored by BLEU against the held-out split (and an oracle's NLL): nothing to train
        info = {**meta, **text_scorer.info(manifest)}
        with atomic_dir(out_dir) as tmp:
            (tmp / feature_nets.INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        print(f"evaluator: text scorer for {manifest['dataset']} (BLEU / Self-BLEU"
              + (", NLL_oracle" if manifest.get("oracle") else "") + f"); hash {info['hash'][:12]}; written to {out_dir}")
        return info
    check_enough_for_metrics(params, manifest)
    if cfg.kind == "inception":
        # Referenced by path and pinned by the file's hash; checked on this dataset's test split.
        model, _ = feature_nets.load_inception(cfg.inception_weights)
        with atomic_dir(out_dir) as tmp:
            info = feature_nets.save_evaluator(model, {}, meta, tmp)
        print(f"evaluator: inception; hash {info['hash'][:12]}; written to {out_dir}")
        return info
    defn = pins.definition(manifest, cfg)
    before = _hash_in(out_dir)
    pinned = None if retrain else pins.find(defn)
    if pinned is not None:
        pins.copy_pin(pinned, out_dir)
        _, info = feature_nets.load_evaluator(out_dir)  # re-checks the weights against the recorded hash
        how = f"pinned (components/metrics/pinned/{pinned.name})"
    else:
        info = _train_evaluator(params, manifest, prepared, meta, defn, out_dir)
        how = "trained on this machine" + ("" if pin else
              " (no pin of this definition: another machine would train other weights; `genpipe evaluator --pin` "
              "keeps this one for every clone, `dvc push` shares it through the DVC remote)")
    if pin:
        kept = pins.pin(out_dir, defn)
        how += f"; pinned as {kept}"
    acc = info.get("test_accuracy")
    held = (f"{info['report']['held_out_digits']} held-out digits" if cfg.kind == "per_channel"
            else f"{manifest['splits']['test']['count']} held-out images")
    print(f"evaluator: {cfg.kind} {how}" + (f", test accuracy {acc:.4f} on {held}" if acc is not None else "")
          + f"; hash {info['hash'][:12]}, definition "
          f"{pins.definition_hash(defn)[:12]}; written to {out_dir}")
    if retrain and before not in (None, info["hash"]):
        _say_orphaned(params, repo_root, before, info["hash"])
    return info


# Held-out images the metrics need per class at the least: precision/recall/density/coverage use
# k-nearest-neighbour balls (evaluate.prdc_k), and the evaluator's test accuracy is read per class.
MIN_TEST_PER_CLASS = 2


def check_enough_for_metrics(params: Params, manifest: dict) -> None:
    """Before any network is trained: the held-out split (the real side of FID/KID/PRDC) and the samples
    evaluate will score must outnumber the evaluator's feature dimension (else FID's covariance is
    singular), and every class must keep held-out images. The message says how many images that takes."""
    from components.metrics.classifier import FEATURE_DIM
    from components.metrics.inception import InceptionV3

    kind = params.evaluator.kind
    dim = {"inception": InceptionV3.feature_dim, "per_channel": manifest["image_shape"][0] * FEATURE_DIM}.get(kind, FEATURE_DIM)
    test, frac, total = manifest["splits"]["test"], manifest["test_fraction"], manifest["count"]
    problems = []
    if test["count"] <= dim:
        need = math.ceil((dim + 1) / frac)  # images in all at this test_fraction
        fix = (f"raise data.test_fraction to at least {math.ceil(100 * (dim + 1) / total) / 100:.2f} or bring "
               f"{need} images" if (dim + 1) / total <= 0.5 else f"bring at least {need} images at this "
               f"data.test_fraction (more than {dim} must be held out, and most of the data should train)")
        problems.append(
            f"the held-out split has {test['count']} images ({total} × data.test_fraction {frac}), and the "
            f"{params.evaluator.kind} evaluator's features are {dim}-dimensional: FID needs more than {dim} real "
            f"images, so {fix}")
    # (per_channel reads digits: its classes, the digit tuples, need no held-out images of their own)
    thin = [name for name, n in zip(manifest["class_names"], test.get("class_counts", []))
            if n < MIN_TEST_PER_CLASS and kind != "per_channel"]
    if thin:
        problems.append(f"classes {', '.join(thin[:10])} keep fewer than {MIN_TEST_PER_CLASS} held-out images; "
                        "add images of those classes or raise data.test_fraction")
    n, what, knob = params.family.scored_count(params, manifest)
    if n <= dim and knob != "data.test_fraction":
        problems.append(f"evaluate scores {n} {what}, not more than the feature dimension {dim}; raise {knob} "
                        f"above {dim}")
    if problems:
        raise ValueError(f"dataset {manifest['dataset']} is too small to be measured: " + "; ".join(problems)
                         + ". See docs/data.md#how-much-data-the-metrics-need")


def _hash_in(out_dir: Path) -> str | None:
    path = out_dir / feature_nets.INFO
    return json.loads(path.read_text()).get("hash") if path.is_file() else None


def _train_evaluator(params: Params, manifest: dict, prepared: Path, meta: dict, defn: dict, out_dir: Path) -> dict:
    meta = {**meta, "definition_hash": pins.definition_hash(defn)}
    model, report = _train(params, manifest, *load_split(prepared, "train"), *load_split(prepared, "test"))
    with atomic_dir(out_dir) as tmp:  # both evaluators of an unpaired dataset, or neither
        info = feature_nets.save_evaluator(model, report, meta, tmp)
        if defn["data"]["input_domain"]:
            # unpaired domains (CycleGAN): label preservation B → A needs a classifier of domain A too
            in_model, in_report = _train(params, manifest, *load_rank_inputs(prepared, "train"),
                                         *load_rank_inputs(prepared, "test"))
            in_info = feature_nets.save_evaluator(in_model, in_report, meta, tmp / feature_nets.INPUT_DOMAIN)
            print(f"evaluator (domain A, the inputs): test accuracy {in_info['test_accuracy']:.4f}; "
                  f"hash {in_info['hash'][:12]}")
    return info


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


def _train(params: Params, manifest: dict, train_x, train_y, test_x, test_y):
    cfg = params.evaluator
    num_classes = manifest["num_classes"]
    if cfg.kind == "per_channel":
        # the distinct digits of the train split's channels; the same digits recur across splits, so the
        # accuracy is read on a tenth of them held out of the classifier's training (never seen)
        singles, digits = digit_images(train_x, train_y)
        held = np.random.default_rng(cfg.seed).permutation(len(singles)) < len(singles) // 10
        train_x, train_y, test_x, test_y = singles[~held], digits[~held], singles[held], digits[held]
        num_classes = 10
    model, report = feature_nets.train_classifier(
        train_x, train_y, test_x, test_y, seed=cfg.seed, epochs=cfg.epochs, batch_size=cfg.batch_size,
        lr=cfg.lr, num_threads=params.scaling.num_workers * params.scaling.cpus_per_worker, num_classes=num_classes)
    if cfg.kind == "per_channel":
        report = {**report, "digit_images": len(singles), "held_out_digits": int(held.sum())}
        model = PerChannelClassifier.around(model, manifest["image_shape"][0])
    return model, report
