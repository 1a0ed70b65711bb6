"""Previews of generated samples for logging: an image grid, a scatter plot for 2D points, or sentences
set as text on a picture (the evaluate stage's report image of a text model)."""
from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images in [-1, 1] → uint8 pixels 0..255, the data's own encoding."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def uint8_npz(images: torch.Tensor) -> bytes:
    """An .npz holding `samples`: the images as uint8 (N, C, H, W), compressed (evaluate.mode_samples_file)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, samples=to_uint8(images))
    return buf.getvalue()


def grid(images: torch.Tensor, pad: int = 2, cols: int | None = None) -> np.ndarray:
    """N×C×H×W in [-1, 1] → one H'×W'×C uint8 array (C=1 squeezed to H'×W'); `cols` images per row,
    default a near-square layout."""
    x = to_uint8(images)
    n, c, h, w = x.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, c), dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        y0, x0 = pad + r * (h + pad), pad + q * (w + pad)
        out[y0 : y0 + h, x0 : x0 + w] = x[i].transpose(1, 2, 0)
    return out[..., 0] if c == 1 else out


def scatter(points: torch.Tensor, size: int = 256) -> np.ndarray:
    """N×D points (first two coordinates) as dark dots on a white size×size canvas, axes centred,
    scaled to the largest coordinate (at least ±1) plus a 10% margin."""
    xy = points[:, :2].detach().float().cpu().numpy()
    lim = 1.1 * max(1.0, float(np.abs(xy).max()) if len(xy) else 1.0)
    canvas = np.full((size, size), 255, dtype=np.uint8)
    canvas[size // 2, :] = canvas[:, size // 2] = 210  # axes
    cols = np.clip(((xy[:, 0] / lim + 1) * (size - 1) / 2).round().astype(int), 1, size - 2)
    rows = np.clip(((1 - xy[:, 1] / lim) * (size - 1) / 2).round().astype(int), 1, size - 2)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            canvas[rows + dr, cols + dc] = 0
    return canvas


def preview(samples: torch.Tensor, cols: int | None = None) -> np.ndarray:
    """Images (N, C, H, W) → grid; points (N, D) → scatter."""
    return grid(samples, cols=cols) if samples.dim() == 4 else scatter(samples)


def side_by_side(*columns: torch.Tensor) -> torch.Tensor:
    """Images of equal count (e.g. input | output | target), resized to the largest (nearest) and
    interleaved row by row: preview with cols=len(columns) shows each example on one row."""
    size = max(c.shape[-1] for c in columns)
    channels = max(c.shape[1] for c in columns)
    fit = [torch.nn.functional.interpolate(c, size=(size, size), mode="nearest").expand(-1, channels, -1, -1)
           for c in columns]
    return torch.stack(fit, 1).flatten(0, 1)


def preview_png(samples: torch.Tensor, cols: int | None = None) -> bytes:
    """`preview` encoded as PNG bytes (for atomic writes and artifacts)."""
    buf = io.BytesIO()
    Image.fromarray(preview(samples, cols)).save(buf, format="PNG")
    return buf.getvalue()


def text_png(lines: list[str], width: int = 900, line_height: int = 14) -> bytes:
    """Sentences, one per line, in PIL's built-in font on white (long lines are cut at the right edge)."""
    from PIL import ImageDraw

    im = Image.new("L", (width, line_height * len(lines) + 8), 255)
    draw = ImageDraw.Draw(im)
    for i, line in enumerate(lines):
        draw.text((4, 4 + i * line_height), line, fill=0)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
