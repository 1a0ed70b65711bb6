"""The DDPM denoiser: diffusers' UNet2DModel sized from the image shape, with a class embedding
(plus one null class for classifier-free guidance) when class-conditional. `sample` draws images
with the configured sampler; the exported model is this module (EMA weights when kept)."""
from __future__ import annotations

import torch
from torch import nn

from components.diffusion.settings import SAMPLING_KEYS
from components.models.unet import build_unet
from components.sampling import balanced_labels


class DiffusionModel(nn.Module):
    def __init__(self, cfg, image_shape: tuple[int, int, int], num_classes: int = 0):
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"ddpm needs images (C, H, W), got samples of shape {image_shape}; use mlp for points")
        self.cfg, self.image_shape, self.num_classes = cfg, tuple(image_shape), num_classes
        self.null_label = num_classes  # the extra embedding row label dropout trains
        self.unet = build_unet(cfg, image_shape, "diffusion", num_class_embeds=num_classes + 1 if num_classes else None)

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def forward(self, x: torch.Tensor, t, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditional and labels is None:
            labels = torch.full((x.shape[0],), self.null_label, device=x.device, dtype=torch.long)
        if not torch.is_tensor(t) or t.dim() == 0:
            t = torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)
        return self.unet(x, t, class_labels=labels if self.conditional else None).sample

    def sample(self, n: int, rng: torch.Generator, labels: torch.Tensor | None = None, **overrides) -> torch.Tensor:
        """n images in [-1, 1]. `labels` (n,) for a conditional model, else one balanced over classes;
        overrides: sampler, sample_steps, eta, guidance (default: the config the model was trained with)."""
        from components.diffusion.reverse import reverse

        unknown = set(overrides) - set(SAMPLING_KEYS)
        if unknown:
            raise ValueError(f"unknown sampling option(s) {sorted(unknown)}; allowed: {', '.join(SAMPLING_KEYS)}")
        s = {k: overrides[k] if overrides.get(k) is not None else getattr(self.cfg, k) for k in SAMPLING_KEYS}
        if self.conditional:
            labels = balanced_labels(n, self.num_classes) if labels is None else torch.as_tensor(labels).long()
            if labels.shape != (n,) or labels.min() < 0 or labels.max() >= self.num_classes:
                raise ValueError(f"labels must be {n} class indices in [0, {self.num_classes - 1}]")
        elif labels is not None:
            raise ValueError("labels given, but this diffusion model is unconditional "
                             "(trained with diffusion.class_conditional: false)")
        was_training = self.training
        self.eval()
        try:
            return reverse(self, self.cfg, n, rng, labels, sampler=s["sampler"], steps=int(s["sample_steps"]),
                           eta=float(s["eta"]), guidance=float(s["guidance"]))
        finally:
            self.train(was_training)
