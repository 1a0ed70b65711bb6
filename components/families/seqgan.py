"""Family `seqgan`: a text GAN trained by policy gradients (Yu, Zhang, Wang & Yu, AAAI 2017). An LSTM
generator is pre-trained by maximum likelihood; a CNN discriminator with a highway layer is pre-trained on
real vs generated sequences; then G is a policy whose reward for each token is D's belief that the sequence
is real, estimated for unfinished prefixes by Monte Carlo roll-outs of a lagged copy of G (REINFORCE).
`seqgan.reward` replaces D's reward by a constant or random one, to measure what D contributes.

One run is three phases of one step counter: seqgan.pretrain_steps MLE updates, seqgan.d_pretrain_steps D
steps, seqgan.adversarial_steps policy-gradient steps (each followed by train.d_steps_per_g_step D updates on
fresh negatives). The MLE phase reads neither the reward nor the roll-out or adversarial keys, so runs that
differ only there start their adversarial phase from the same pre-trained G, bit for bit (the D:G ratio does
change it: a step's batches are drawn in groups of train.d_steps_per_g_step, and an MLE step uses the first).
Networks: components/models/seqgan.py; step: components/training/seqgan_step.py."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from components.families.base import GAN_TRAIN_KEYS
from components.families.text import TextFamily
from components.section import Section, sampling

# train keys of the image GAN game a text GAN has no use for (its D sees discrete tokens)
_IMAGE_GAN_KEYS = tuple(k for k in GAN_TRAIN_KEYS if k not in ("d_steps_per_g_step", "label_smoothing"))


class SeqganConfig(Section):
    """model.family = seqgan: sizes of G (LSTM) and D (CNN), the three phases and the reward."""
    g_embed: int = Field(32, ge=1, le=4096, description="G's token embedding size")
    g_hidden: int = Field(32, ge=1, le=4096, description="G's LSTM hidden size")
    d_embed: int = Field(64, ge=1, le=4096, description="D's token embedding size")
    d_widths: list[int] = Field([1, 2, 3, 4, 5, 8, 10, 15, 20], min_length=1, max_length=32,
                                description="D's convolution widths (tokens); widths over data.seq_len are left out")
    d_filters: list[int] = Field([50, 50, 50, 50, 50, 50, 50, 50, 50], min_length=1, max_length=32,
                                 description="filters per width, one per entry of d_widths")
    d_dropout: float = Field(0.25, ge=0.0, lt=1.0, description="dropout before D's output layer")
    pretrain_steps: int = Field(2000, ge=0, description="MLE updates of G (teacher forcing) before anything else")
    pretrain_lr: float = Field(0.01, gt=0.0, le=1.0, description="Adam learning rate of the MLE phase (the reference's 0.01)")
    d_pretrain_steps: int = Field(300, ge=0, description="steps of D updates (train.d_steps_per_g_step each) on real vs "
                                  "generated sequences before the adversarial phase")
    d_epochs: int = Field(1, ge=1, le=100, description="passes of D over each step's real batches and fresh "
                          "negatives (the reference's 3): sampling a negative costs more than judging it")
    adversarial_steps: int = Field(100, ge=0, description="policy-gradient updates of G, each followed by "
                                   "train.d_steps_per_g_step D updates")
    rollouts: int = Field(16, ge=1, le=256, description="Monte Carlo completions per prefix (the reference's 16)")
    rollout_update: float = Field(0.8, ge=0.0, le=1.0, description="the roll-out policy lags G: after each G update "
                                  "its weights become u·roll-out + (1 - u)·G (the reference's 0.8)")
    reward: Literal["discriminator", "constant", "random"] = Field(
        "discriminator", description="the reward of a sequence: D's belief that it is real (SeqGAN), or the "
        "controls 1 (constant) and U(0, 1) (random) that show what D contributes")
    baseline: bool = Field(False, description="subtract each position's mean reward over the batch (variance reduction)")
    grad_clip: float | None = Field(5.0, gt=0.0, description="max gradient norm of G in both phases (the reference's 5); null = off")
    temperature: float = sampling(1.0, gt=0.0, le=10.0, description="sampling temperature of evaluate and the pyfunc")

    @model_validator(mode="after")
    def _filters_per_width(self):
        if len(self.d_widths) != len(self.d_filters):
            raise ValueError(f"d_filters has {len(self.d_filters)} entries but d_widths has {len(self.d_widths)}: "
                             "give one filter count per width")
        if min(self.d_widths) < 1 or min(self.d_filters) < 1:
            raise ValueError("d_widths and d_filters must be positive")
        return self


class Seqgan(TextFamily):
    name = "seqgan"
    description = "a text GAN (token sequences)"
    section, Section = "seqgan", SeqganConfig
    task = ("components.training.seqgan_step", "SeqganTask")
    presets = ("seqgan_oracle", "seqgan_text", "seqgan_coco")

    refused_train_keys = (*_IMAGE_GAN_KEYS, "ema_decay", "lr_schedule")  # its phases keep their rates
    refused_because = "judges discrete tokens"
    phases = ("pretrain_steps", "d_pretrain_steps", "adversarial_steps")

    def validate(self, params) -> None:
        super().validate(params)
        from components.objectives import OBJECTIVES

        if not OBJECTIVES.get(params.train.objective).has_targets:
            raise ValueError(f"train.objective = {params.train.objective!r}: seqgan's reward is D's belief that a "
                             "sequence is real, which needs an objective with real/fake targets (nonsaturating, "
                             "minimax, lsgan)")

    # ---------------------------------------------------------------------------------- the model
    def build_generator(self, spec: dict):
        from components.models.seqgan import Generator

        cfg = spec["seqgan"]
        g = Generator(len(spec["vocabulary"]), spec["image_shape"][0], cfg["g_embed"], cfg["g_hidden"])
        g.vocabulary = spec["vocabulary"]  # decodes its samples (pyfunc, report)
        return g


FAMILY = Seqgan()
