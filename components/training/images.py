"""Image grids for sample logging."""
from __future__ import annotations

import math

import numpy as np
import torch


def grid(images: torch.Tensor, pad: int = 2) -> np.ndarray:
    """N×C×H×W in [-1, 1] → one H'×W'×C uint8 array (C=1 squeezed to H'×W'), near-square layout."""
    x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
    n, c, h, w = x.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, c), dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        y0, x0 = pad + r * (h + pad), pad + q * (w + pad)
        out[y0 : y0 + h, x0 : x0 + w] = x[i].transpose(1, 2, 0)
    return out[..., 0] if c == 1 else out


def grid_png(images: torch.Tensor) -> bytes:
    """`grid` encoded as PNG bytes (for atomic writes and artifacts)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(grid(images)).save(buf, format="PNG")
    return buf.getvalue()
