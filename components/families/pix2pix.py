"""Family `pix2pix`: paired image-to-image translation (Isola et al. 2017): U-Net G, PatchGAN D on
(input, image) pairs, loss = adversarial + λ·L1. Trains on data.pairs: downsample (super-resolution) or
edges; reports PSNR / SSIM / L1 against the targets and the bicubic baseline (PairedTranslator)."""
from __future__ import annotations

from components.families.translation import PairedTranslator


class Pix2pix(PairedTranslator):
    name = "pix2pix"
    task = ("components.training.translation_step", "Pix2PixTask")
    presets = ("pix2pix_sr", "pix2pix_edges")

    def networks(self, cfg, model_cfg, input_shape, output_shape, d_extra: int = 0):
        from components.models.translation import pix2pix

        return pix2pix(cfg, model_cfg, tuple(input_shape), tuple(output_shape), d_extra)


FAMILY = Pix2pix()
