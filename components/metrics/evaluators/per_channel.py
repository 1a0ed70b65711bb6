"""evaluator.kind per_channel (Stacked MNIST, components/data/stacked.py): one digit classifier read on each
channel (components/metrics/stacked.py). Beside the image metrics it counts the digit tuples a generated set
covers (`modes`, `reverse_kl`), on `evaluate.mode_samples` samples as the papers do (26,000 in PacGAN)."""
from __future__ import annotations

import numpy as np

from components.metrics.evaluators.classifier import Classifier
from components.metrics.evaluators.feature_net import FeatureScorer

STACKED_SOURCE = "stacked_mnist"  # the source whose channels each hold one digit


class TupleScorer(FeatureScorer):
    def extra_samples(self, params, drawn):
        n = params.evaluate.mode_samples
        return n if n != drawn else None  # modes on PacGAN's 26,000 samples, beside the others on num_samples

    def set_scores(self, fake):
        return self.extractor.set_scores(self.extractor.logits(fake))


class PerChannel(Classifier):
    name = "per_channel"
    data_kinds = ("image",)
    description = "a digit classifier read on each channel (Stacked MNIST)"
    set_metrics = {"modes": True, "reverse_kl": False}
    classifies_inputs = False
    classes_need_test_images = False  # it reads digits: its classes, the digit tuples, need no held-out images
    takes_holdout = False  # it holds out a tenth of its digits itself
    deps = (*Classifier.deps, "components/metrics/stacked.py", "components/metrics/uniform_kl.py")

    def required_by(self, params):
        if params.data.source == STACKED_SOURCE and params.data.pairs is None:
            return f"data.source = {STACKED_SOURCE} is scored by reading one digit per channel"
        return None

    def check_config(self, params):
        if self.required_by(params) is None:
            raise ValueError(f"evaluator.kind = {self.name} reads one digit per channel of Stacked MNIST; "
                             f"data.source = {params.data.source!r} needs classifier or inception")

    def feature_dim(self, manifest):
        return manifest["image_shape"][0] * super().feature_dim(manifest)

    def network_shape(self, manifest):
        return [1, *manifest["image_shape"][1:]], 10  # one digit classifier, read on each channel

    def held_out(self, info, manifest):
        return f"{info['report']['held_out_digits']} held-out digits"

    def train(self, params, manifest, train_x, train_y, test_x, test_y, num_classes=None):
        # the distinct digits of the train split's channels; the same digits recur across splits, so the
        # accuracy is read on a tenth of them held out of the classifier's training (never seen)
        from components.metrics.stacked import PerChannelClassifier, digit_images

        singles, digits = digit_images(train_x, train_y)
        held = np.random.default_rng(params.evaluator.seed).permutation(len(singles)) < len(singles) // 10
        model, report = super().train(params, manifest, singles[~held], digits[~held], singles[held], digits[held],
                                      num_classes=10)
        report = {**report, "digit_images": len(singles), "held_out_digits": int(held.sum())}
        return PerChannelClassifier.around(model, manifest["image_shape"][0]), report

    scorer_class = TupleScorer

    def report_fields(self, params):
        return {"mode_samples": params.evaluate.mode_samples}
