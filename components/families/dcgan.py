"""Family `dcgan`: a DCGAN on images (strided convs, BatchNorm), unconditional or class-conditional
(model.conditioning: concat | projection, train.matching_aware). Networks: components/models/dcgan.py;
its step: the GAN game (components/training/gan_loop.py)."""
from __future__ import annotations

from components.families.base import LABEL_INPUT, SAMPLE_INPUTS, LatentGan


class Dcgan(LatentGan):
    name = "dcgan"
    conditioning = True
    clusters = True
    presets = ("cgan", "labelfree")
    pyfunc_inputs = {**SAMPLE_INPUTS, **LABEL_INPUT}

    def networks(self, model_cfg, sample_shape, d_shape, num_classes):
        from components.models.dcgan import build

        return build(model_cfg, sample_shape, d_shape, num_classes)

    def is_conditional(self, params) -> bool:
        return params.model.conditional

    def net_conditional(self, g) -> bool:
        return g.conditional


FAMILY = Dcgan()
