"""Family `ddgan`: the Denoising Diffusion GAN (Xiao, Kreis & Vahdat, ICLR 2022). A few large denoising
steps, each a conditional GAN: G(x_t, t, z) predicts x̂_0, x_{t-1} is drawn from the posterior
q(x_{t-1} | x_t, x̂_0), and a t-conditioned D judges the pair (x_{t-1}, x_t). Samples take exactly T
generator passes. It plays the GAN game (objective, label smoothing, D:G ratio, R1 — lazily every
`ddgan.r1_every` D steps — and EMA from `train`); its noise process is ddpm's (components/diffusion/
process.py). Network: components/models/ddgan.py; step: components/training/ddgan_step.py.

On paired data (`data.pairs`: downsample, edges) the same family translates: G and D are also conditioned
on the input image, evaluate translates the test inputs in T passes each and scores them as pix2pix is
scored (PSNR / SSIM against the targets and bicubic). `Ddgan.variant` picks that form by the pairing."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from components.diffusion.settings import DiffusionSettings
from components.families.base import LABEL_INPUT, SAMPLE_INPUTS, Family
from components.families.translation import PairedTranslator


class DdganConfig(DiffusionSettings):
    """model.family = ddgan: the noise process (T steps), the generator's UNet (its channels, layers_per_block
    and attention are G's) and lazy R1. The latent size is model.latent_dim, D's width model.d_channels."""
    timesteps: int = Field(4, ge=1, le=64, description="T: denoising steps, i.e. generator passes per sample "
                           "(T = 1 is a plain GAN on x_0)")
    beta_schedule: Literal["vp", "linear", "cosine"] = Field(
        "vp", description="vp: the VP SDE's β(s) integrated over T steps (Xiao et al. 2022), ends near pure noise "
        "for any T; linear / cosine: ddpm's schedules (need a large T, or beta_end raised, to reach noise)")
    attention: bool = Field(False, description="self-attention at G's lowest resolution")
    class_conditional: bool = Field(False, description="condition G and D on the dataset's labels")
    beta_min: float = Field(0.1, gt=0.0, description="vp only: β(0)")
    beta_max: float = Field(20.0, gt=0.0, description="vp only: β(1)")
    r1_every: int = Field(1, ge=1, le=1000, description="lazy R1 (Karras et al. 2020): the penalty train.r1 "
                          "is applied every r1_every D steps, scaled by r1_every; 1 = every step")


class _DdganRules(Family):
    """What both forms of the family share: the section, the task, the refusals, the cost of a sample."""
    name = "ddgan"
    section, Section = "ddgan", DdganConfig
    task = ("components.training.ddgan_step", "DdganTask")
    step_ratios = True
    packing = False  # D judges (x_{t-1}, x_t) pairs, each at its own t
    presets = ("ddgan", "ddgan_sr")
    requirements = ("diffusers",)

    def validate(self, params) -> None:
        if params.data.pairs == "unpaired":
            raise ValueError("model.family = 'ddgan' with data.pairs = 'unpaired': ddgan samples from noise "
                             "(data.pairs: null) or translates paired data (downsample, edges); unpaired "
                             "translation is cyclegan's")
        super().validate(params)
        if params.train.gradient_penalty:
            raise ValueError("train.gradient_penalty: ddgan's D judges a pair at a timestep, and WGAN-GP's "
                             "interpolates do not mix pairs of different t; use train.r1 (lazy with ddgan.r1_every)")
        if params.train.diffusion_d:
            raise ValueError("train.diffusion_d: ddgan's D already judges pairs from a diffusion at a timestep it "
                             "conditions on; the diffusion-noised D is for the one-step GANs (set it to false)")

    def variant(self, pairing: str | None) -> Family:
        return DDGAN_TRANSLATOR if pairing is not None else DDGAN

    @staticmethod
    def network(cfg: DdganConfig, latent_dim: int, image_shape, num_classes: int, input_shape=None):
        """The generator (the sampler); num_classes counts only when ddgan.class_conditional; input_shape:
        the input images of a translating ddgan."""
        from components.models.ddgan import DdganGenerator

        return DdganGenerator(cfg, latent_dim, tuple(image_shape), num_classes if cfg.class_conditional else 0,
                              None if input_shape is None else tuple(input_shape))

    def build_generator(self, spec: dict):
        return self.network(DdganConfig(**spec["ddgan"]), spec["model"]["latent_dim"], spec["image_shape"],
                            len(spec["class_names"]), spec.get("input_shape"))

    def refuse_unknown(self, inputs: dict) -> None:
        from components.families.base import DIFFUSION_SAMPLING_INPUTS

        asked = [k for k in inputs if k in DIFFUSION_SAMPLING_INPUTS]
        if asked:  # a diffusion model, but not ddpm's samplers: say why it has none
            from components.serving_inputs import RequestError

            raise RequestError(f"{', '.join(asked)}: ddpm's sampling options; a ddgan samples in exactly the "
                               "ddgan.timesteps steps its generator was trained for; a ddgan model takes "
                               f"{', '.join(self.pyfunc_inputs)}")
        super().refuse_unknown(inputs)

    def network_passes(self, g, options: dict) -> int:
        return g.cfg.timesteps


class Ddgan(_DdganRules):
    """Samples from noise, unconditional or class-conditional."""
    description = "a denoising diffusion GAN"
    pyfunc_inputs = {**SAMPLE_INPUTS, **LABEL_INPUT}

    def is_conditional(self, params) -> bool:
        return params.ddgan.class_conditional

    def net_conditional(self, g) -> bool:
        return g.conditional

    def draw(self, g, n, seed, labels, options, latent_dim):
        from components.sampling import sampler_samples

        return sampler_samples(g, n, seed, labels)


class DdganTranslator(_DdganRules, PairedTranslator):
    """Translates paired data (super-resolution, edges → digit), conditioned on the input image."""
    description = "a denoising diffusion GAN translator"

    def validate(self, params) -> None:
        super().validate(params)
        if params.ddgan.class_conditional:
            raise ValueError("ddgan.class_conditional: a ddgan on paired data is conditioned on its input image, "
                             "not on labels (set it to false)")


DDGAN, DDGAN_TRANSLATOR = Ddgan(), DdganTranslator()
FAMILY = DDGAN
