"""The diffusion families' settings, torch-free. `DiffusionSettings`: what ddpm's `diffusion` section and
ddgan's `ddgan` section share, written once: the noise process (T steps of a β schedule) and the UNet
(components/models/unet.py), with their validators. `DiffusionConfig`: ddpm's `diffusion` section, read by
its family (components/families/ddpm.py), its denoiser (components/models/ddpm.py), the noise process
(process.py) and the sampler (reverse.py); `SAMPLING_KEYS`: its keys that may change after training."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from components.section import SAMPLING, Section, keys_marked, sampling


class DiffusionSettings(Section):
    """A diffusion section: a noise process of `timesteps` steps on a β schedule, and diffusers' UNet2DModel.
    Each family declares the range and default of T, the schedules it offers, and whether attention and
    labels are on by default (the annotated keys without a value below); their place here keeps the keys'
    order in every section."""
    timesteps: int
    beta_schedule: str
    beta_start: float = Field(1e-4, gt=0.0, lt=1.0, description="linear schedule only")
    beta_end: float = Field(0.02, gt=0.0, lt=1.0, description="linear schedule only")
    channels: list[int] = Field([16, 32, 64], min_length=1, max_length=6,
                                description="UNet width per resolution; every level but the last halves the size")
    layers_per_block: int = Field(1, ge=1, le=8)
    attention: bool
    class_conditional: bool

    @field_validator("channels")
    @classmethod
    def _widths_positive(cls, v: list[int]) -> list[int]:
        if any(c < 8 or c % 8 for c in v):  # GroupNorm of 8 groups needs multiples of 8
            raise ValueError(f"every UNet width must be a positive multiple of 8 (GroupNorm of 8 groups), got {v}")
        return v

    @model_validator(mode="after")
    def _schedule_coherent(self) -> "DiffusionSettings":
        """linear rises from beta_start to beta_end, vp from beta_min to beta_max"""
        if self.beta_schedule == "linear" and not self.beta_start < self.beta_end:
            raise ValueError(f"beta_start = {self.beta_start} must be below beta_end = {self.beta_end}")
        if self.beta_schedule == "vp" and not self.beta_min < self.beta_max:
            raise ValueError(f"beta_min = {self.beta_min} must be below beta_max = {self.beta_max}")
        return self


class DiffusionConfig(DiffusionSettings):
    """model.family = ddpm: the noise process, the UNet (diffusers) and how samples are drawn.
    The sampling keys (SAMPLING_KEYS) may change after training: evaluate and pyfunc use them as given."""
    timesteps: int = Field(1000, ge=2, le=100_000, description="T of the forward process")
    beta_schedule: Literal["linear", "cosine"] = Field("linear", description="linear (Ho et al. 2020) | cosine "
                                                        "(Nichol & Dhariwal 2021)")
    attention: bool = Field(True, description="self-attention at the lowest resolution")
    class_conditional: bool = Field(True, description="condition on the dataset's labels (one model: conditional "
                                    "and, through label dropout, unconditional)")
    prediction: Literal["epsilon", "v"] = Field("epsilon", description="what the UNet predicts: the noise ε or v")
    cond_drop_prob: float = Field(0.1, ge=0.0, le=1.0, description="training: fraction of labels replaced by the "
                                  "null label (what classifier-free guidance needs)")
    grad_clip: float | None = Field(1.0, gt=0.0, description="max gradient norm; null = off")
    sampler: Literal["ddpm", "ddim"] = sampling("ddim", description="ddpm: ancestral, every step; ddim: sample_steps")
    sample_steps: int = sampling(50, ge=1, description="ddim only: denoising steps (ddpm uses all timesteps)")
    eta: float = sampling(1.0, ge=0.0, le=1.0, description="ddim only: 1 ≈ ddpm's noise; 0 deterministic (needs a "
                       "well-trained model: short runs leave residual noise on the deterministic path)")
    guidance: float = sampling(1.0, ge=0.0, le=50.0, description="classifier-free guidance w: ε_u + w(ε_c - ε_u); "
                            "0 = unconditional, 1 = conditional only, > 1 sharper classes")

    @model_validator(mode="after")
    def _steps_within_timesteps(self) -> "DiffusionConfig":
        if self.sampler == "ddim" and self.sample_steps > self.timesteps:
            raise ValueError(f"sample_steps = {self.sample_steps} exceeds timesteps = {self.timesteps}")
        return self


SAMPLING_KEYS = keys_marked(DiffusionConfig, SAMPLING)  # sampler, sample_steps, eta, guidance
