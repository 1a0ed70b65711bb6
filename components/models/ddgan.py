"""The Denoising Diffusion GAN's networks. G(x_t, t, z[, y]) → x̂_0 is diffusers' UNet2DModel: z (and a
label embedding) is mapped to the width of the timestep embedding and added to it (class_embed_type
"identity"), so every ResNet block is modulated by (t, z, y), a lighter form of the reference's AdaGN
z-injection. D is the DCGAN discriminator on the channel-stacked pair (x_{t-1}, x_t) with a projection
head (Miyato & Koyama 2018) on the timestep (on timestep × class when class-conditional).
`DdganGenerator.sample` is the exported sampler: exactly T generator passes.

On translation pairs (super-resolution, edges → digit) both networks are conditioned on the input image,
resized to the target's size (bicubic, as pix2pix) and stacked on channels: G sees (x_t, input), D judges
(x_{t-1}, x_t, input). `translate` is then the sampler, one output per input."""
from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import torch
from torch import nn

from components.diffusion import process
from components.models.dcgan import Discriminator, init_weights
from components.models.translation import to_size
from components.models.unet import build_unet
from components.sampling import balanced_labels


def content_seeds(images: torch.Tensor) -> list[int]:
    """One seed per image from its float32 pixels (one copy to the CPU for the batch): a translation's
    noise, so an input gives one output in any batch, position or chunk."""
    pixels = images.detach().to("cpu", torch.float32).contiguous().numpy()
    return [int.from_bytes(hashlib.blake2b(x.tobytes(), digest_size=8).digest(), "little") >> 1 for x in pixels]


def _normal(rng: torch.Generator | Sequence[torch.Generator], n: int) -> Callable[[tuple], torch.Tensor]:
    """shape → N(0, I) of that shape (n first), from one generator, or row by row from n (one per sample)."""
    if isinstance(rng, torch.Generator):
        return lambda shape: torch.randn(shape, generator=rng)
    if len(rng) != n:
        raise ValueError(f"{len(rng)} generators for {n} samples: give one generator, or one per sample")
    return lambda shape: torch.stack([torch.randn(shape[1:], generator=r) for r in rng])


class DdganGenerator(nn.Module):
    def __init__(self, cfg, latent_dim: int, image_shape: tuple[int, int, int], num_classes: int = 0,
                 input_shape: tuple[int, int, int] | None = None):
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"ddgan needs images (C, H, W), got samples of shape {image_shape}; use mlp for points")
        self.cfg, self.latent_dim, self.image_shape, self.num_classes = cfg, latent_dim, tuple(image_shape), num_classes
        self.input_shape = None if input_shape is None else tuple(input_shape)
        c_cond = 0 if input_shape is None else input_shape[0]
        width = cfg.channels[0] * 4  # UNet2DModel's time-embedding width
        self.z_map = nn.Sequential(nn.Linear(latent_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.label_embedding = nn.Embedding(num_classes, width) if num_classes else None
        self.unet = build_unet(cfg, image_shape, "ddgan", c_cond, class_embed_type="identity")
        self.schedule = process.noise_scheduler(cfg)  # only its β and ᾱ tensors are read

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def translates(self) -> bool:
        return self.input_shape is not None

    def condition(self, inputs: torch.Tensor) -> torch.Tensor:
        """The input image as G and D see it: resized to the target's size."""
        return to_size(inputs, self.image_shape[1:])

    def forward(self, xt: torch.Tensor, t: torch.Tensor, z: torch.Tensor, labels: torch.Tensor | None = None,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        """x̂_0 in [-1, 1] for each (x_t, t, z[, y][, the resized input image `cond`])."""
        code = self.z_map(z)
        if self.conditional:
            if labels is None:
                raise ValueError("this ddgan is class-conditional: give labels")
            code = code + self.label_embedding(labels.long())
        if self.translates:
            if cond is None:
                raise ValueError("this ddgan translates: give the resized input image (`condition(inputs)`)")
            xt = torch.cat([xt, cond], 1)
        return torch.tanh(self.unet(xt, t, class_labels=code).sample)

    @torch.no_grad()
    def translate(self, inputs: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        """One output per input image, in T generator passes; each image's noise is seeded by its pixels."""
        if reverse:
            raise ValueError("reverse: a ddgan translates one way, input → target")
        return self.sample(len(inputs), [torch.Generator().manual_seed(k) for k in content_seeds(inputs)], inputs=inputs)

    @torch.no_grad()
    def sample(self, n: int, rng: torch.Generator | Sequence[torch.Generator], labels: torch.Tensor | None = None,
               inputs: torch.Tensor | None = None) -> torch.Tensor:
        """n images in [-1, 1]: x_{T-1} ~ N(0, I), then per t = T-1…0 one pass x̂_0 = G(x_t, t, z) with a
        fresh z and x_{t-1} ~ q(x_{t-1} | x_t, x̂_0); at t = 0 that is x̂_0 itself. All noise from `rng`, or
        from n generators, one per sample (on the CPU: a seed gives the same samples on any device). A
        translating ddgan needs its n `inputs`."""
        if self.translates != (inputs is not None):
            raise ValueError("this ddgan translates: give one input image per sample" if self.translates else
                             "inputs given, but this ddgan samples from noise (it was not trained on pairs)")
        if inputs is not None and tuple(inputs.shape) != (n, *self.input_shape):
            raise ValueError(f"inputs must be {n}×{'×'.join(map(str, self.input_shape))}, got {tuple(inputs.shape)}")
        if self.conditional:
            labels = balanced_labels(n, self.num_classes) if labels is None else torch.as_tensor(labels).long()
            if labels.shape != (n,) or labels.min() < 0 or labels.max() >= self.num_classes:
                raise ValueError(f"labels must be {n} class indices in [0, {self.num_classes - 1}]")
        elif labels is not None:
            raise ValueError("labels given, but this ddgan is unconditional (ddgan.class_conditional: false)")
        dev = next(self.parameters()).device
        was_training = self.training
        self.eval()
        try:
            labels = None if labels is None else labels.to(dev)
            cond = None if inputs is None else self.condition(inputs.to(dev))
            normal = _normal(rng, n)
            x = normal((n, *self.image_shape)).to(dev)
            for step in reversed(range(self.cfg.timesteps)):
                t = torch.full((n,), step, dtype=torch.long, device=dev)
                x0 = self(x, t, normal((n, self.latent_dim)).to(dev), labels, cond)
                x = process.posterior_sample(self.schedule, x0, x, t, normal(x.shape).to(dev))
            return x.clamp_(-1, 1)
        finally:
            self.train(was_training)


def pair_condition(t: torch.Tensor, labels: torch.Tensor | None, timesteps: int) -> torch.Tensor:
    """What D's projection head is conditioned on: t, or (y, t) as one index y·T + t."""
    return t if labels is None else labels.long() * timesteps + t


def build_discriminator(cfg, d_channels: int, image_shape: tuple[int, int, int], num_classes: int = 0,
                        input_channels: int = 0) -> nn.Module:
    """D(pair, condition): one logit per (x_{t-1}, x_t) pair stacked on channels, with the resized input
    image's `input_channels` after them when translating."""
    c, h, w = image_shape
    d = Discriminator(d_channels, (2 * c + input_channels, h, w), cfg.timesteps * max(num_classes, 1), "projection")
    d.apply(init_weights)
    return d
