"""Stage `evaluator`: the feature network every metric is computed with. Metrics are comparable
only under the same evaluator, so its content hash travels with every metric written anywhere."""
from __future__ import annotations

import json
from pathlib import Path

from components.atomic import atomic_dir
from components.config import Params
from components.data.shards import load_rank_inputs, load_split, read_manifest
from components.metrics import feature_nets
from components.metrics.modes import mode_counter_info

INPUT_DOMAIN = "input_domain"  # subfolder: the classifier of an unpaired dataset's inputs (domain A)


def run(params: Params, repo_root: Path) -> dict:
    cfg = params.evaluator
    out_dir = (Path(repo_root) / cfg.output_dir).resolve()
    prepared = params.prepared_path(repo_root)
    manifest = read_manifest(prepared)
    meta = {"dataset": manifest["dataset"], "content_hash": manifest["content_hash"],
            "class_names": manifest["class_names"], "seed": params.seed}
    if manifest.get("kind") == "points":
        # 2D mixtures are scored by counting modes against the known mixture: no network to train.
        info = {**meta, **mode_counter_info(manifest["mixture"])}
        with atomic_dir(out_dir) as tmp:
            (tmp / feature_nets.INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        print(f"evaluator: mode counter for {manifest['dataset']} ({len(info['centers'])} modes, σ = {info['sigma']}); "
              f"hash {info['hash'][:12]}; written to {out_dir}")
        return info
    if cfg.kind == "inception":
        # Referenced by path and pinned by the file's hash; checked on this dataset's test split.
        model, _ = feature_nets.load_inception(cfg.inception_weights)
        report = {}
    else:
        model, report = _train(params, manifest, *load_split(prepared, "train"), *load_split(prepared, "test"))
    with atomic_dir(out_dir) as tmp:  # both evaluators of an unpaired dataset, or neither
        info = feature_nets.save_evaluator(model, report, meta, tmp)
        if manifest.get("pairing") == "unpaired":
            # CycleGAN's label preservation B → A needs a classifier of domain A (the inputs) too
            in_model, in_report = _train(params, manifest, *load_rank_inputs(prepared, "train"),
                                         *load_rank_inputs(prepared, "test"))
            in_info = feature_nets.save_evaluator(in_model, in_report, meta, tmp / INPUT_DOMAIN)
            print(f"evaluator (domain A, the inputs): test accuracy {in_info['test_accuracy']:.4f}; "
                  f"hash {in_info['hash'][:12]}")
    acc = info.get("test_accuracy")
    print(f"evaluator: {cfg.kind}" + (f", test accuracy {acc:.4f} on {manifest['splits']['test']['count']} held-out "
          f"images" if acc is not None else "") + f"; hash {info['hash'][:12]}; written to {out_dir}")
    return info


def _train(params: Params, manifest: dict, train_x, train_y, test_x, test_y):
    cfg = params.evaluator
    return feature_nets.train_classifier(
        train_x, train_y, test_x, test_y, seed=params.seed, epochs=cfg.epochs, batch_size=cfg.batch_size,
        lr=cfg.lr, num_threads=params.scaling.num_workers * params.scaling.cpus_per_worker,
        num_classes=manifest["num_classes"])


def open_input_evaluator(params: Params, repo_root: Path):
    """An unpaired dataset's classifier of domain A (the inputs), as (FeatureExtractor, info)."""
    return feature_nets.load_evaluator((Path(repo_root) / params.evaluator.output_dir / INPUT_DOMAIN).resolve())


def open_evaluator(params: Params, repo_root: Path):
    """The evaluator the `evaluator` stage wrote, as (FeatureExtractor, info) — what `evaluate` scores with.
    For a points dataset the extractor is None and info is the mode counter's."""
    out_dir = (Path(repo_root) / params.evaluator.output_dir).resolve()
    path = out_dir / feature_nets.INFO
    info = json.loads(path.read_text()) if path.is_file() else {}
    if info.get("kind") == "modes":
        return None, info
    return feature_nets.load_evaluator(out_dir)
