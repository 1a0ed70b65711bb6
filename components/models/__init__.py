"""Generators and discriminators, built by name from `model.family` (one registry)."""
from __future__ import annotations

from typing import Callable

from torch import nn

from components.registry import Registry

# family name -> builder(model_cfg, image_shape (C, H, W)) -> (generator, discriminator)
MODELS: Registry[Callable[..., tuple[nn.Module, nn.Module]]] = Registry("model")


def build_gan(model_cfg, image_shape) -> tuple[nn.Module, nn.Module]:
    return MODELS.get(model_cfg.family)(model_cfg, tuple(image_shape))


from components.models import dcgan as _dcgan  # noqa: E402,F401  (registers its family)
