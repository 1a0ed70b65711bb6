"""Family `cyclegan`: unpaired translation between two domains (Zhu et al. 2017): two U-Net generators,
two PatchGAN Ds, cycle-consistency and identity losses, a pool of past fakes. Trains on data.pairs:
unpaired; reports label preservation both ways (the classifier evaluator of each domain) and the cycle
error. Needs the classifier evaluator: its classes are what label preservation checks."""
from __future__ import annotations

from components.families.translation import IMAGES_INPUT, Translator


class Cyclegan(Translator):
    name = "cyclegan"
    task = ("components.training.translation_step", "CycleGanTask")
    pairing = "unpaired"
    presets = ("cyclegan",)
    own_metrics = {"label_preservation": True, "cycle_l1": False}  # both directions averaged
    printed_extra = ("label_preservation_ab", "label_preservation_ba")
    default_metric_name = "label_preservation"
    input_evaluator = True
    pyfunc_inputs = {**IMAGES_INPUT, "reverse": "true translates domain B → A (default A → B)"}

    def validate(self, params) -> None:
        super().validate(params)
        from components.metrics.evaluators import EVALUATORS

        if not EVALUATORS.get(params.evaluator.kind).classifies_inputs:
            raise ValueError(f"evaluator.kind = {params.evaluator.kind!r}: CycleGAN's label preservation needs the "
                             "classifier evaluator (a classifier of each domain's own classes)")

    def networks(self, cfg, model_cfg, input_shape, output_shape, d_extra: int = 0):
        from components.models.translation import cyclegan

        return cyclegan(cfg, model_cfg, tuple(input_shape), tuple(output_shape), d_extra)

    def extra_metrics(self, g, params, test, fake, scores, classifier_a=None) -> dict:
        from components.metrics.translation import cycle_scores

        return cycle_scores(g, test.inputs, test.x, fake, test.labels, classifier_a, scores["cond_accuracy"])

    def third_column(self, g, fake, test, rows):
        from components.sampling import translate

        return translate(g, fake, reverse=True)  # a | G(a) | F(G(a)): no row is a pair


FAMILY = Cyclegan()
