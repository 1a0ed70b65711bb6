"""The evaluator of points (the 2D mixtures): count the known mixture's modes (components/metrics/modes.py).
Nothing to train: its record is the mixture and the protocol, hashed so the hash travels with every number."""
from __future__ import annotations

from components.metrics.evaluators.base import Evaluator, Scorer

# 2D mixtures (components/metrics/modes.py)
POINT_METRICS = {"modes": True, "high_quality": True, "reverse_kl": False}


class ModeScorer(Scorer):
    def _scores(self, points) -> dict:
        from components.metrics import modes

        return modes.mode_scores(points, self.info["centers"], self.info["sigma"], self.info["hq_sigmas"])

    def reference(self, test):
        return test.x  # points as stored

    def score(self, reference, fake, labels, params):
        return self._scores(fake.numpy())

    def floor(self, reference, params, metrics):
        floor = self._scores(reference)  # the held-out real points
        return {"floor_high_quality": floor["high_quality"], "floor_reverse_kl": floor["reverse_kl"]}


class ModeCounter(Evaluator):
    name = "mode_counter"
    recorded_kind = "modes"  # what its evaluator.json says (hashed: kept as it was)
    data_kinds = ("points",)
    description = "the mixture's mode counter"
    metrics = POINT_METRICS
    default_metric = "reverse_kl"
    floor_metrics = ("floor_high_quality", "floor_reverse_kl")
    family_ranks = False
    deps = ("components/metrics/modes.py", "components/metrics/uniform_kl.py")

    def plan(self, params, manifest, retrain=False):
        return f"records the mode counter of {manifest['dataset']}'s mixture (nothing to train)"

    def build(self, params, manifest, prepared, out_dir, retrain=False, pin=False):
        from components.metrics.modes import mode_counter_info

        info = self.write_info({**self.meta(params, manifest), **mode_counter_info(manifest["mixture"])}, out_dir)
        print(f"evaluator: mode counter for {manifest['dataset']} ({len(info['centers'])} modes, σ = {info['sigma']}); "
              f"hash {info['hash'][:12]}; written to {out_dir}")
        return info

    def scorer(self, evaluator_dir, info, prepared, manifest):
        return ModeScorer(self, info, prepared, manifest)
