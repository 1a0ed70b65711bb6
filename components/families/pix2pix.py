"""Family `pix2pix`: paired image-to-image translation (Isola et al. 2017): U-Net G, PatchGAN D on
(input, image) pairs, loss = adversarial + λ·L1. Trains on data.pairs: downsample (super-resolution) or
edges; reports PSNR / SSIM / L1 against the targets and the bicubic baseline."""
from __future__ import annotations

from components.families.translation import Translator

IMAGES_INPUT = {"images": "the batch to translate: N×C×H×W floats in [-1, 1] shaped like the dataset's inputs "
                          "(or uint8 0..255)"}


class Pix2pix(Translator):
    name = "pix2pix"
    task = ("components.training.translation_step", "Pix2PixTask")
    pairing = "paired"
    presets = ("pix2pix_sr", "pix2pix_edges")
    own_metrics = {"psnr": True, "ssim": True, "l1": False}
    default_metric_name = "psnr"
    pyfunc_inputs = IMAGES_INPUT

    def networks(self, cfg, model_cfg, input_shape, output_shape, d_extra: int = 0):
        from components.models.translation import pix2pix

        return pix2pix(cfg, model_cfg, tuple(input_shape), tuple(output_shape), d_extra)

    def extra_metrics(self, g, params, test, fake, scores, classifier_a=None) -> dict:
        from components.metrics.translation import paired_scores

        return paired_scores(fake, test.x, test.inputs)

    def third_column(self, g, fake, test, rows):
        return test.x[rows]  # input | output | target


FAMILY = Pix2pix()
