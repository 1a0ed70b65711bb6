"""evaluator.kind inception: the standard FID InceptionV3 (components/metrics/inception.py) from the user's
local weights file, referenced by path and pinned by the file's hash. Its classes are ImageNet's, so it
scores no requested labels."""
from __future__ import annotations

from components.atomic import atomic_dir
from components.metrics.evaluators.feature_net import FeatureNetEvaluator


class Inception(FeatureNetEvaluator):
    name = "inception"
    description = "the user's InceptionV3 file"
    label_metrics = {}
    classifies_dataset = False
    deps = (*FeatureNetEvaluator.deps, "components/metrics/inception.py")

    def feature_dim(self, manifest):
        return 2048  # InceptionV3.feature_dim, without importing torch

    def check_config(self, params):
        if not params.evaluator.inception_weights:
            raise ValueError("evaluator.inception_weights (a local weights file) is required when evaluator.kind is "
                             "'inception'; weights are never downloaded")

    def plan(self, params, manifest, retrain=False):
        return f"checks the InceptionV3 file {params.evaluator.inception_weights} (by its hash); nothing to train"

    def build(self, params, manifest, prepared, out_dir, retrain=False, pin=False):
        from components.metrics import feature_nets

        self.check_size(params, manifest)
        model, _ = feature_nets.load_inception(params.evaluator.inception_weights)
        with atomic_dir(out_dir) as tmp:
            info = feature_nets.save_evaluator(model, {}, self.meta(params, manifest), tmp)
        print(f"evaluator: inception; hash {info['hash'][:12]}; written to {out_dir}")
        return info
