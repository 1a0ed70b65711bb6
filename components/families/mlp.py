"""Family `mlp`: a GAN of MLPs on flat samples, the 2D mixtures (ring8, grid25) of the mode-collapse
benchmark. Networks: components/models/mlp.py; its step: the GAN game."""
from __future__ import annotations

from components.families.base import LatentGan


class Mlp(LatentGan):
    name = "mlp"
    data_kinds = ("points",)
    presets = ("ring8", "grid25")
    clusters = True

    def networks(self, model_cfg, sample_shape, d_shape, num_classes):
        from components.models.mlp import build

        return build(model_cfg, sample_shape, d_shape, num_classes)


FAMILY = Mlp()
