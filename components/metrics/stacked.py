"""The Stacked MNIST mode counter (VEEGAN, PacGAN): a digit classifier reads each of a sample's three
channels, the digit triple is its mode (one of 1,000), and on N generated samples (26,000 in PacGAN)
- `modes` counts the triples that occur at least once;
- `reverse_kl` is KL(p ‖ uniform) = Σ p log(1000 p) of the triples' histogram p: 0 when every triple is
  equally frequent, log 1000 ≈ 6.91 when all samples are one triple.
The data is components/data/stacked.py. The evaluator is `PerChannelClassifier` (evaluator.kind
per_channel): one digit classifier read on each channel; its logits over the 1,000 triples are the sums
of the channels' log-probabilities, so the evaluate stage's class histogram is the triples' histogram and
its `class_kl` is the KL above."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from components.metrics.base import FEATURE_NETS, FeatureExtractor, Tensor
from components.metrics.classifier import FEATURE_DIM, WIDTHS, ClassifierNet
from components.metrics.uniform_kl import kl_to_uniform

PAPER_SAMPLES = 26_000
NUM_MODES = 1000


def triples(channel_digits: np.ndarray) -> np.ndarray:
    """(N, 3) digits per channel → mode index 100·d₁ + 10·d₂ + d₃."""
    d = np.asarray(channel_digits, dtype=np.int64)
    if d.ndim != 2 or d.shape[1] != 3 or d.min() < 0 or d.max() > 9:
        raise ValueError(f"expected (N, 3) digits in 0..9, got shape {d.shape}")
    return 100 * d[:, 0] + 10 * d[:, 1] + d[:, 2]


def mode_scores(modes: np.ndarray, num_modes: int = NUM_MODES) -> dict:
    """Modes hit and KL(p ‖ uniform) of the mode indices (N,) of a generated set."""
    modes = np.asarray(modes, dtype=np.int64)
    if len(modes) == 0:
        raise ValueError("mode scores need at least one sample")
    counts = np.bincount(modes, minlength=num_modes)
    return {"modes": int((counts > 0).sum()), "num_modes": num_modes, "reverse_kl": kl_to_uniform(counts),
            "max_reverse_kl": math.log(num_modes)}


def channel_kls(modes: np.ndarray, digits: int = 10, channels: int = 3) -> list[float]:
    """KL(p_c ‖ uniform) of each channel's digit histogram, from mode indices (N,). The triples' reverse KL
    is exactly their sum plus the channels' total correlation (≥ 0), so this splits a model's KL into digits
    drawn unevenly on each channel and digits paired unevenly across channels."""
    modes = np.asarray(modes, dtype=np.int64)
    return [kl_to_uniform(np.bincount(modes // digits ** (channels - 1 - c) % digits, minlength=digits))
            for c in range(channels)]


def stacked_mode_scores(channel_digits: np.ndarray) -> dict:
    """mode_scores of (N, 3) digits per channel."""
    return mode_scores(triples(channel_digits))


def read_channels(classify: Callable[[np.ndarray], np.ndarray], images: np.ndarray) -> np.ndarray:
    """The digit on each channel of (N, 3, H, W) images, by `classify` ((M, 1, H, W) → (M,) digits):
    the three channels are classified as one batch of 3N single-channel images."""
    n, c, h, w = images.shape
    if c != 3:
        raise ValueError(f"Stacked MNIST samples have 3 channels, got {c}")
    return np.asarray(classify(images.reshape(n * 3, 1, h, w))).reshape(n, 3)


@FEATURE_NETS.register("per_channel")
class PerChannelClassifier(FeatureExtractor):
    """(N, C, H, W) images whose channels are each one digit → features: the C channels' digit features
    side by side (C·feature_dim); logits over the 10^C digit tuples (100·d₁ + 10·d₂ + d₃ for C = 3):
    Σ_c log p(d_c | channel c), the joint log-probability when the channels are read independently."""

    kind = "per_channel"
    set_metrics = True

    def __init__(self, image_shape, digits: int = 10, feature_dim: int = FEATURE_DIM, widths=WIDTHS):
        super().__init__()
        c, h, w = image_shape
        self.image_shape, self.channels, self.digits = (c, h, w), c, digits
        self.digit = ClassifierNet((1, h, w), digits, feature_dim, widths)
        self.feature_dim, self.num_classes = c * feature_dim, digits ** c

    @classmethod
    def around(cls, digit: ClassifierNet, channels: int) -> "PerChannelClassifier":
        """The per-channel reader of a trained single-channel digit classifier."""
        _, h, w = digit.image_shape
        out = cls((channels, h, w), digit.num_classes, digit.feature_dim, digit.widths)
        out.digit.load_state_dict(digit.state_dict())
        return out.eval()

    def embed(self, x: Tensor) -> tuple[Tensor, Tensor]:
        n, c, h, w = x.shape
        feats, logits = self.digit.embed(x.reshape(n * c, 1, h, w))
        logp = F.log_softmax(logits.float(), 1).reshape(n, c, self.digits)
        joint = logp[:, 0]
        for k in range(1, c):  # outer sum: the first channel is the most significant digit
            joint = (joint[:, :, None] + logp[:, k, None, :]).reshape(n, -1)
        return feats.reshape(n, -1), joint

    def arch(self) -> dict:
        return {"image_shape": list(self.image_shape), "digits": self.digits,
                "feature_dim": self.digit.feature_dim, "widths": list(self.digit.widths)}

    def set_scores(self, logits: Tensor) -> dict:
        """Modes and KL of a generated set from its joint logits: their argmax is the tuple's mode index."""
        out = mode_scores(logits.argmax(1).numpy(), self.num_classes)
        return {k: out[k] for k in ("modes", "reverse_kl")}


def digit_images(images: np.ndarray, labels: np.ndarray, digits: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The distinct single-channel images of a stacked split (N, C, H, W) and their digits (from the tuple
    label), in a fixed order: Stacked MNIST repeats each source digit on many channels, so the digit
    classifier trains on each once."""
    n, c, h, w = images.shape
    singles = images.reshape(n * c, 1, h, w)
    tuple_digits = np.stack([(labels // digits ** (c - 1 - k)) % digits for k in range(c)], 1).reshape(-1)
    # each image as one opaque byte string: np.unique sorts those by memcmp, ~50× faster than axis=0 rows
    rows = np.ascontiguousarray(singles.reshape(n * c, -1)).view(np.dtype((np.void, h * w * singles.itemsize)))
    _, first = np.unique(rows.ravel(), return_index=True)
    first = np.sort(first)
    return np.ascontiguousarray(singles[first]), tuple_digits[first].astype(np.int64)
