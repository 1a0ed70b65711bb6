"""Family `ddpm`: a denoising diffusion model (Ho et al. 2020) on images: diffusers' UNet2DModel,
trained on ε or v, class-conditional with label dropout for classifier-free guidance, sampled by DDPM or
DDIM. Its section is `diffusion`; the sampling keys may change after training (evaluate and the pyfunc
sample as configured now). Network: components/models/ddpm.py; step: components/training/diffusion_step.py."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from components.families.base import DIFFUSION_SAMPLING_INPUTS, LABEL_INPUT, SAMPLE_INPUTS, Family
from components.section import SAMPLING, Section, keys_marked, sampling


def unet_widths(v: list[int]) -> list[int]:
    """A UNet's widths per level (ddpm's denoiser, ddgan's generator): GroupNorm of 8 groups needs multiples of 8."""
    if any(c < 8 or c % 8 for c in v):
        raise ValueError(f"every UNet width must be a positive multiple of 8 (GroupNorm of 8 groups), got {v}")
    return v


def schedule_coherent(cfg) -> None:
    """The β schedule's bounds (ddpm, ddgan): linear rises from beta_start to beta_end, vp from beta_min to beta_max."""
    if cfg.beta_schedule == "linear" and not cfg.beta_start < cfg.beta_end:
        raise ValueError(f"beta_start = {cfg.beta_start} must be below beta_end = {cfg.beta_end}")
    if cfg.beta_schedule == "vp" and not cfg.beta_min < cfg.beta_max:
        raise ValueError(f"beta_min = {cfg.beta_min} must be below beta_max = {cfg.beta_max}")


class DiffusionConfig(Section):
    """model.family = ddpm: the noise process, the UNet (diffusers) and how samples are drawn.
    The sampling keys (SAMPLING_KEYS) may change after training: evaluate and pyfunc use them as given."""
    timesteps: int = Field(1000, ge=2, le=100_000, description="T of the forward process")
    beta_schedule: Literal["linear", "cosine"] = Field("linear", description="linear (Ho et al. 2020) | cosine "
                                                        "(Nichol & Dhariwal 2021)")
    beta_start: float = Field(1e-4, gt=0.0, lt=1.0, description="linear schedule only")
    beta_end: float = Field(0.02, gt=0.0, lt=1.0, description="linear schedule only")
    prediction: Literal["epsilon", "v"] = Field("epsilon", description="what the UNet predicts: the noise ε or v")
    channels: list[int] = Field([16, 32, 64], min_length=1, max_length=6,
                                description="UNet width per resolution; every level but the last halves the size")
    layers_per_block: int = Field(1, ge=1, le=8)
    attention: bool = Field(True, description="self-attention at the lowest resolution")
    class_conditional: bool = Field(True, description="condition on the dataset's labels (one model: conditional "
                                    "and, through label dropout, unconditional)")
    cond_drop_prob: float = Field(0.1, ge=0.0, le=1.0, description="training: fraction of labels replaced by the "
                                  "null label (what classifier-free guidance needs)")
    grad_clip: float | None = Field(1.0, gt=0.0, description="max gradient norm; null = off")
    sampler: Literal["ddpm", "ddim"] = sampling("ddim", description="ddpm: ancestral, every step; ddim: sample_steps")
    sample_steps: int = sampling(50, ge=1, description="ddim only: denoising steps (ddpm uses all timesteps)")
    eta: float = sampling(1.0, ge=0.0, le=1.0, description="ddim only: 1 ≈ ddpm's noise; 0 deterministic (needs a "
                       "well-trained model: short runs leave residual noise on the deterministic path)")
    guidance: float = sampling(1.0, ge=0.0, le=50.0, description="classifier-free guidance w: ε_u + w(ε_c - ε_u); "
                            "0 = unconditional, 1 = conditional only, > 1 sharper classes")

    @field_validator("channels")
    @classmethod
    def _widths_positive(cls, v: list[int]) -> list[int]:
        return unet_widths(v)

    @model_validator(mode="after")
    def _schedule_coherent(self) -> "DiffusionConfig":
        schedule_coherent(self)
        if self.sampler == "ddim" and self.sample_steps > self.timesteps:
            raise ValueError(f"sample_steps = {self.sample_steps} exceeds timesteps = {self.timesteps}")
        return self


SAMPLING_KEYS = keys_marked(DiffusionConfig, SAMPLING)  # sampler, sample_steps, eta, guidance


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
