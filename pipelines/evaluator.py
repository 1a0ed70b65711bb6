"""Stage `evaluator`: the feature network every metric is computed with. Metrics are comparable
only under the same evaluator, so its content hash travels with every metric written anywhere."""
from __future__ import annotations

import json
from pathlib import Path

from components.atomic import atomic_dir
from components.config import Params
from components.data.shards import load_rank_inputs, load_split, read_manifest
from components.data.kinds import kind_of
from components.evaluation import INPUT_DOMAIN
from components.metrics import feature_nets
from components.metrics.modes import mode_counter_info


def run(params: Params, repo_root: Path) -> dict:
    cfg = params.evaluator
    out_dir = (Path(repo_root) / cfg.output_dir).resolve()
    prepared = params.prepared_path(repo_root)
    manifest = read_manifest(prepared)
    meta = {"dataset": manifest["dataset"], "content_hash": manifest["content_hash"],
            "class_names": manifest["class_names"], "seed": params.seed}
    if kind_of(manifest).scored_by == "mode counter":
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
            # unpaired domains (CycleGAN): label preservation B → A needs a classifier of domain A too
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
