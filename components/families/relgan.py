"""Family `relgan`: a text GAN trained through a Gumbel-softmax relaxation (Nie, Narodytska & Patel, ICLR 2019;
reference weilinie/RelGAN). A relational-memory generator is pre-trained by maximum likelihood; then G emits
soft one-hots softmax(β·(logits + Gumbel noise)) that a CNN discriminator over several embedded
representations judges, so D's gradient reaches G directly (no policy gradient, no roll-outs). The loss is
the relativistic standard GAN's; β rises from 1 to relgan.beta_max over the adversarial phase.

One run is two phases of one step counter: relgan.pretrain_steps MLE updates, then relgan.adversarial_steps
steps of one G update and train.d_steps_per_g_step D updates (the reference's 5). The MLE phase reads none
of the adversarial keys, so runs that differ only there start their adversarial phase from the same
pre-trained G, bit for bit (the D:G ratio does change it: a step's batches are drawn in groups of
train.d_steps_per_g_step, and an MLE step uses the first).
Networks: components/models/relgan.py; step: components/training/relgan_step.py."""
from __future__ import annotations

from pydantic import Field, model_validator

from components.families.base import GAN_TRAIN_KEYS
from components.families.text import TextFamily
from components.section import Section, sampling

# train keys of the image GAN game that RelGAN's fixed loss and token D have no use for
_REFUSED_TRAIN_KEYS = (*(k for k in GAN_TRAIN_KEYS if k != "d_steps_per_g_step"), "objective", "ema_decay", "lr_schedule")


class RelganConfig(Section):
    """model.family = relgan: sizes of G (relational memory) and D (multi-representation CNN), the two phases
    and the relaxation's inverse temperature."""
    g_embed: int = Field(32, ge=1, le=4096, description="G's token embedding size")
    mem_slots: int = Field(1, ge=1, le=64, description="rows of G's relational memory")
    heads: int = Field(2, ge=1, le=64, description="attention heads of G's relational memory")
    head_size: int = Field(256, ge=1, le=4096, description="units per head (a memory row is heads × head_size)")
    d_embed: int = Field(64, ge=1, le=4096, description="D's token embedding size, split into num_rep representations")
    num_rep: int = Field(64, ge=1, le=4096, description="D's representations: d_embed / num_rep units each, each judged")
    d_widths: list[int] = Field([2, 3, 4, 5], min_length=1, max_length=32,
                                description="D's convolution widths (tokens); widths over data.seq_len are left out")
    d_filters: list[int] = Field([300, 300, 300, 300], min_length=1, max_length=32,
                                 description="filters per width, one per entry of d_widths")
    d_dropout: float = Field(0.25, ge=0.0, lt=1.0, description="dropout before D's output layers")
    pretrain_steps: int = Field(3000, ge=0, description="MLE updates of G (teacher forcing) before the adversarial phase")
    pretrain_lr: float = Field(0.01, gt=0.0, le=1.0, description="Adam learning rate of the MLE phase (the reference's 0.01)")
    adversarial_steps: int = Field(3000, ge=0, description="adversarial steps: one G update (Adam train.lr_g) and "
                                   "train.d_steps_per_g_step D updates (Adam train.lr_d) each")
    beta_max: float = Field(100.0, ge=1.0, le=1e4, description="the relaxation's inverse temperature at the end: β rises "
                            "as beta_max^(i/adversarial_steps) (the paper's exponential schedule)")
    grad_clip: float | None = Field(5.0, gt=0.0, description="max gradient norm of G and D (the reference's 5); null = off")
    temperature: float = sampling(1.0, gt=0.0, le=10.0, description="sampling temperature of evaluate and the pyfunc")

    @model_validator(mode="after")
    def _shapes(self):
        if len(self.d_widths) != len(self.d_filters):
            raise ValueError(f"d_filters has {len(self.d_filters)} entries but d_widths has {len(self.d_widths)}: "
                             "give one filter count per width")
        if min(self.d_widths) < 1 or min(self.d_filters) < 1:
            raise ValueError("d_widths and d_filters must be positive")
        if self.d_embed % self.num_rep:
            raise ValueError(f"d_embed = {self.d_embed} is not a multiple of num_rep = {self.num_rep}: each "
                             "representation takes d_embed / num_rep units")
        return self


class Relgan(TextFamily):
    name = "relgan"
    description = "a text GAN (token sequences)"
    section, Section = "relgan", RelganConfig
    task = ("components.training.relgan_step", "RelganTask")
    presets = ("relgan_oracle", "relgan_coco")

    refused_train_keys = _REFUSED_TRAIN_KEYS
    refused_because = "trains with the relativistic standard loss on relaxed tokens"
    phases = ("pretrain_steps", "adversarial_steps")

    def build_generator(self, spec: dict):
        from components.models.relgan import Generator

        cfg = spec["relgan"]
        g = Generator(len(spec["vocabulary"]), spec["image_shape"][0], cfg["g_embed"], cfg["mem_slots"],
                      cfg["heads"], cfg["head_size"])
        g.vocabulary = spec["vocabulary"]  # decodes its samples (pyfunc, report)
        return g


FAMILY = Relgan()
