"""What pix2pix and CycleGAN share: the `translation` section and the translator family (a U-Net G that
translates an input image, a PatchGAN D; the adversarial part plays the GAN game with train.objective and
D's regularisers). Networks: components/models/translation.py; steps: components/training/translation_step.py."""
from __future__ import annotations

from pydantic import Field

from components.families.base import Family
from components.section import Section

IMAGES_INPUT = {"images": "the batch to translate: N×C×H×W floats in [-1, 1] shaped like the dataset's inputs "
                          "(or uint8 0..255)"}


class TranslationConfig(Section):
    """model.family = pix2pix | cyclegan: image-to-image translation (components/models/translation.py).
    The adversarial part uses train.objective and D's regularisers like any GAN."""
    g_depth: int = Field(2, ge=1, le=6, description="U-Net down/up levels of the generator(s); each halves the side")
    d_layers: int = Field(2, ge=1, le=5, description="strided convs of the PatchGAN D (receptive field grows with it)")
    lambda_l1: float = Field(100.0, ge=0.0, description="pix2pix: weight of ‖G(x) - y‖₁ beside the adversarial loss")
    lambda_cycle: float = Field(10.0, ge=0.0, description="cyclegan: weight of ‖F(G(a)) - a‖₁ + ‖G(F(b)) - b‖₁")
    lambda_identity: float = Field(0.5, ge=0.0, description="cyclegan: identity loss ‖G(b) - b‖₁ + ‖F(a) - a‖₁, "
                                   "as a fraction of lambda_cycle (0 = off)")
    pool_size: int = Field(50, ge=0, le=10_000, description="cyclegan: past fakes D also sees (Shrivastava et al. "
                           "2017); 0 = off")



class Translator(Family):
    """A family that translates images rather than sampling from noise: evaluate translates the whole test
    split and scores the outputs (FID & co. against the targets, cond_accuracy: the output keeps its input's
    class), the pyfunc takes the batch to translate."""
    section, Section = "translation", TranslationConfig
    description = "an image-to-image translator"
    step_ratios = False
    packing = False

    def build_generator(self, spec: dict):
        from components.model_config import ModelConfig

        return self.networks(TranslationConfig(**spec["translation"]), ModelConfig(**spec["model"]),
                             spec["input_shape"], spec["image_shape"])[0]

    def networks(self, cfg, model_cfg, input_shape, output_shape, d_extra: int = 0):
        """(translator, discriminator) for inputs of input_shape → outputs of output_shape; D takes d_extra
        more input channels (the noise level of a diffusion-noised D)."""
        raise NotImplementedError

    def is_conditional(self, params) -> bool:
        return True  # the output should keep its input's class

    def generate(self, g, params, test, n, latent_dim=None):
        """The whole test split translated (n is ignored); its outputs should keep their inputs' labels."""
        from components.sampling import translate

        return translate(g, test.inputs), test.input_labels

    def scored_count(self, params, manifest):
        return manifest["splits"]["test"]["count"], "test pairs", "data.test_fraction"

    def predict(self, g, spec, inputs, limit):
        import numpy as np
        import torch

        from components import serving_inputs as req
        from components.sampling import translate

        self.refuse_unknown(inputs)
        reverse = req.flag(inputs, "reverse")
        expected = spec["image_shape"] if reverse else spec["input_shape"]
        shape = f"N×{'×'.join(map(str, expected))} ({'domain B' if reverse else 'the inputs'})"
        images = inputs.get("images")
        if images is None:
            raise req.RequestError(f"images: a {self.name} translator needs the batch to translate, {shape} "
                                   f"floats in [-1, 1] or uint8 0..255")
        try:
            x = np.asarray(images)
            x = x if x.dtype == np.uint8 else x.astype(np.float32)
        except (ValueError, TypeError):
            raise req.RequestError(f"images: expected {shape} numbers") from None
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or list(x.shape[1:]) != list(expected):
            raise req.RequestError(f"images: expected {shape}, got shape {x.shape}")
        if len(x) > limit:
            raise req.RequestError(f"images: {len(x)} images" + req.limit_note(limit))
        x = torch.from_numpy(x.astype(np.float32) / 127.5 - 1.0) if x.dtype == np.uint8 else torch.from_numpy(x)
        return translate(g, x, reverse=reverse).numpy().astype(np.float32)

    def report_grid(self, g, fake, test) -> bytes:
        """16 test inputs spread over the split (it is sorted by source row), each as input | output | third
        (`third_column`)."""
        import numpy as np

        from components.training.images import preview_png, side_by_side

        rows = np.linspace(0, len(fake) - 1, min(16, len(fake))).astype(int)
        return preview_png(side_by_side(test.inputs[rows], fake[rows], self.third_column(g, fake[rows], test, rows)),
                           cols=3)

    def third_column(self, g, fake, test, rows):
        raise NotImplementedError


class PairedTranslator(Translator):
    """A translator trained on (input, target) pairs (pix2pix, ddgan on pairs): scored against the targets
    by PSNR / SSIM / L1 and the bicubic baseline; its grid shows input | output | target."""
    pairing = "paired"
    own_metrics = {"psnr": True, "ssim": True, "l1": False}
    printed_extra = ("bicubic_psnr", "bicubic_ssim")
    default_metric_name = "psnr"
    pyfunc_inputs = IMAGES_INPUT

    def extra_metrics(self, g, params, test, fake, scores, classifier_a=None) -> dict:
        from components.metrics.translation import paired_scores

        return paired_scores(fake, test.x, test.inputs)

    def third_column(self, g, fake, test, rows):
        return test.x[rows]  # input | output | target
