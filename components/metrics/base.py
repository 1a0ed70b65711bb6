"""The one interface every metric uses to see images: a frozen feature network.

Metrics compare *sets* of images through a network's features (FID, KID, PRDC) and class logits
(Inception Score, class histogram). Both come from one forward pass per batch, computed once per set and
reused by every metric, so a network is never run twice on the same images.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from components.registry import Registry

Tensor = torch.Tensor

# kind name -> FeatureExtractor subclass, constructed from the JSON-able `arch()` it reports.
FEATURE_NETS: Registry[type["FeatureExtractor"]] = Registry("feature network")


def to_unit_range(images: Tensor | np.ndarray) -> Tensor:
    """uint8 [0, 255] → float32 [-1, 1], the same mapping the GAN trains on; float input passes through."""
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8:
        return x.float().div_(127.5).sub_(1.0)
    return x.float()


class FeatureExtractor(nn.Module):
    """Float images in [-1, 1] (N×C×H×W; uint8 also accepted) → features N×D and logits N×K.

    Subclasses set `feature_dim`, `num_classes`, implement `embed` (one batch, both outputs) and `arch`
    (constructor keyword arguments), and register under their `kind`.
    """

    kind: ClassVar[str]
    # True: the weights live in the evaluator folder (safetensors). False: they are the user's file,
    # referenced by path and verified by hash (a 100 MB InceptionV3 is not copied into every output).
    stores_weights: ClassVar[bool] = True
    batch_size: int = 500
    feature_dim: int
    num_classes: int
    image_shape: tuple[int, int, int] | None = None  # None: any shape the network can resize
    # True: set_scores has metrics of its own, measured on evaluate.mode_samples samples (Stacked MNIST's modes)
    set_metrics: ClassVar[bool] = False

    @classmethod
    def from_arch(cls, **arch) -> "FeatureExtractor":
        """The network an evaluator.json's `arch` describes (weights loaded when they live outside it)."""
        return cls(**arch)

    def embed(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def arch(self) -> dict:
        raise NotImplementedError

    @torch.no_grad()
    def features_and_logits(self, images: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
        """Both outputs for a whole set, in batches of `batch_size`, eval mode, no autograd."""
        self.eval()  # BatchNorm running statistics, no dropout: a set's features must not depend on batching
        x = to_unit_range(images)
        if x.dim() != 4:
            raise ValueError(f"expected images N×C×H×W, got shape {tuple(x.shape)}")
        if self.image_shape and tuple(x.shape[1:]) != tuple(self.image_shape):
            # Global pooling would accept other sizes and return features from a distribution never trained on.
            want, got = ("×".join(map(str, s)) for s in (self.image_shape, x.shape[1:]))
            raise ValueError(f"this {self.kind} evaluator was built for {want} images, got {got}")
        parts = [self.embed(chunk) for chunk in x.split(self.batch_size)]
        if not parts:
            return torch.empty(0, self.feature_dim), torch.empty(0, self.num_classes)
        return torch.cat([f for f, _ in parts]), torch.cat([logit for _, logit in parts])

    def set_scores(self, logits: Tensor) -> dict:
        """Metrics of a generated set that only this evaluator defines (per_channel: modes and KL of the
        digit tuples), from the set's logits; none by default."""
        return {}

    def features(self, images: Tensor | np.ndarray) -> Tensor:
        return self.features_and_logits(images)[0]

    def logits(self, images: Tensor | np.ndarray) -> Tensor:
        return self.features_and_logits(images)[1]
