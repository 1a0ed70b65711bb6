"""Family `ddpm`: a denoising diffusion model (Ho et al. 2020) on images: diffusers' UNet2DModel,
trained on ε or v, class-conditional with label dropout for classifier-free guidance, sampled by DDPM or
DDIM. Its section is `diffusion` (components/diffusion/settings.py, which the denoiser reads too); the
sampling keys may change after training (evaluate and the pyfunc sample as configured now). Network:
components/models/ddpm.py; step: components/training/diffusion_step.py."""
from __future__ import annotations

from components.diffusion.settings import SAMPLING_KEYS, DiffusionConfig
from components.families.base import DIFFUSION_SAMPLING_INPUTS, LABEL_INPUT, SAMPLE_INPUTS, Family


class Ddpm(Family):
    name = "ddpm"
    description = "a diffusion model"
    section, Section = "diffusion", DiffusionConfig
    task = ("components.training.diffusion_step", "DiffusionTask")
    plays_gan_game = False
    presets = ("ddpm",)
    pyfunc_inputs = {**SAMPLE_INPUTS, **LABEL_INPUT,
                     "steps": "DDIM steps (default as trained)", "guidance": "classifier-free guidance w",
                     "sampler": "ddpm | ddim", "eta": "DDIM η (0 deterministic, 1 ≈ DDPM)"}
    requirements = ("diffusers",)

    def build_generator(self, spec: dict):
        return self.network(DiffusionConfig(**spec["diffusion"]), spec["image_shape"], len(spec["class_names"]))

    @staticmethod
    def network(cfg: DiffusionConfig, image_shape, num_classes: int):
        """The denoiser; num_classes counts only when diffusion.class_conditional."""
        from components.models.ddpm import DiffusionModel

        return DiffusionModel(cfg, tuple(image_shape), num_classes if cfg.class_conditional else 0)

    def is_conditional(self, params) -> bool:
        return params.diffusion.class_conditional

    def net_conditional(self, g) -> bool:
        return g.conditional

    def sampling_options(self, params) -> dict:
        return {k: getattr(params.diffusion, k) for k in SAMPLING_KEYS}

    def draw(self, g, n, seed, labels, options, latent_dim):
        from components.sampling import sampler_samples

        return sampler_samples(g, n, seed, labels, options)

    def network_passes(self, g, options: dict) -> int:
        """UNet passes per sample: every timestep (ddpm) or sample_steps (ddim); guidance other than 0 and 1
        evaluates both branches (batched together, but two passes' work)."""
        steps = g.cfg.timesteps if options["sampler"] == "ddpm" else options["sample_steps"]
        return steps * (2 if g.conditional and options["guidance"] not in (0, 1) else 1)

    def pyfunc_sampling_options(self, inputs: dict, spec: dict) -> dict:
        """steps, sampler, eta, guidance from the request, validated as the diffusion section validates them
        (steps ≤ the model's timesteps bounds the work per sample), the error naming the request's key."""
        from pydantic import ValidationError

        from components.serving_inputs import RequestError

        options = {ours: inputs[key].item() if hasattr(inputs[key], "item") else inputs[key]  # numpy scalars
                   for key, ours in DIFFUSION_SAMPLING_INPUTS.items() if inputs.get(key) is not None}
        ours_to_input = {ours: key for key, ours in DIFFUSION_SAMPLING_INPUTS.items()}
        try:
            # strict: "50" or 1.5 steps are refused, not coerced
            DiffusionConfig.model_validate({**spec["diffusion"], **options}, strict=True)
        except ValidationError as e:
            err = e.errors()[0]
            key = ".".join(ours_to_input.get(str(p), str(p)) for p in err["loc"]) or "steps"
            raise RequestError(f"{key}: {err['msg']}".replace("sample_steps", "steps")) from None
        return options


FAMILY = Ddpm()
