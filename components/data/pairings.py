"""Translation datasets derived from any image source by a named pairing (`data.pairs`):

    downsample  (box-averaged data.pair_size² image → the image): super-resolution, e.g. 7×7 → 28×28
    edges       (Sobel edge map of the image → the image): the pix2pix "edges → photo" task
    unpaired    (an image of data.source, an image of data.domain_b resized to the same size, or into a
                centred data.domain_b_box² box of it): two real domains for CycleGAN. Each image is used once and the two sides are drawn independently,
                so no row is a pair; the dataset has as many rows as the smaller domain.

The target (`samples`, `labels`) is what a translator produces; `inputs` is what it is given.
Adding a pairing is one function decorated with `@PAIRINGS.register("name")`."""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from components.registry import Registry

if TYPE_CHECKING:
    from components.config import DataConfig
    from components.data.source_data import SourceData

PAIRINGS: Registry[Callable[["SourceData", "DataConfig", int], "SourceData"]] = Registry("pairing")
EDGE_THRESHOLD = 1.0  # Sobel magnitude on [0, 1] images (a full-contrast step gives 4): a stroke's outline


def _images(data: SourceData, pairing: str) -> np.ndarray:
    if data.kind != "image":
        raise ValueError(f"data.pairs = {pairing!r} needs an image source, got {data.kind} samples")
    return data.samples


@PAIRINGS.register("downsample")
def downsample(data: SourceData, cfg: DataConfig, seed: int) -> SourceData:
    images = _images(data, "downsample")
    size = cfg.pair_size
    if size >= images.shape[2]:
        raise ValueError(f"data.pair_size = {size} must be below the image side {images.shape[2]} to downsample")
    small = np.stack([np.stack([np.asarray(Image.fromarray(ch).resize((size, size), Image.Resampling.BOX))
                                for ch in im]) for im in images])
    return replace(data, inputs=small.astype(np.uint8), input_labels=data.labels.copy(), pairing="downsample")


def sobel_edges(images: np.ndarray) -> np.ndarray:
    """uint8 (N, C, H, W) → uint8 edge maps (N, 1, H, W): 255 where the Sobel gradient magnitude of the
    channel-mean image exceeds EDGE_THRESHOLD, else 0."""
    x = torch.from_numpy(images).float().mean(1, keepdim=True) / 255.0
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    k = torch.stack([kx, kx.T])[:, None]
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k)
    return ((g.pow(2).sum(1, keepdim=True).sqrt() > EDGE_THRESHOLD) * 255).to(torch.uint8).numpy()


@PAIRINGS.register("edges")
def edges(data: SourceData, cfg: DataConfig, seed: int) -> SourceData:
    return replace(data, inputs=sobel_edges(_images(data, "edges")), input_labels=data.labels.copy(),
                   pairing="edges")


@PAIRINGS.register("unpaired")
def unpaired(data: SourceData, cfg: DataConfig, seed: int) -> SourceData:
    from components.data.sources import SOURCES

    a = _images(data, "unpaired")
    side, box = a.shape[2], cfg.domain_b_box
    if box is not None and box >= side:
        raise ValueError(f"data.domain_b_box = {box} must be below the image side {side}")
    b = SOURCES.get(cfg.domain_b)(cfg.model_copy(update={"source": cfg.domain_b, "image_size": box or side}))
    if box is not None and b.kind == "image":  # centred in the full frame, background (0) around it
        before = (side - box) // 2
        pad = ((0, 0), (0, 0), (before, side - box - before), (before, side - box - before))
        b = replace(b, samples=np.pad(b.samples, pad))
    if b.kind != "image" or b.samples.shape[1:] != a.shape[1:]:
        raise ValueError(f"data.domain_b = {cfg.domain_b!r} gives {b.samples.shape[1:]} samples; domain A "
                         f"({cfg.source}) has images {a.shape[1:]}: both domains need the same image shape")
    if b.class_names != data.class_names:
        raise ValueError(f"data.domain_b = {cfg.domain_b!r} has classes {b.class_names}, {cfg.source} has "
                         f"{data.class_names}: label preservation needs the same classes in both domains")
    n = min(len(a), len(b.samples))
    rng = np.random.default_rng(seed)
    pick_a, pick_b = rng.permutation(len(a))[:n], rng.permutation(len(b.samples))[:n]
    return replace(b, samples=b.samples[pick_b], labels=b.labels[pick_b], inputs=a[pick_a],
                   input_labels=data.labels[pick_a], pairing="unpaired")
