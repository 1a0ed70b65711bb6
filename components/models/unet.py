"""The diffusion families' UNet: diffusers' UNet2DModel sized from the image shape and a diffusion section's
channels, layers_per_block and attention (components/diffusion/settings.py). ddpm's denoiser (ddpm.py) and
ddgan's generator (ddgan.py) are built here, each with its own conditioning."""
from __future__ import annotations

from diffusers import UNet2DModel


def unet_blocks(cfg, image_shape: tuple[int, int, int], section: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """UNet2DModel's down and up block types for cfg.channels levels (ddpm's denoiser, ddgan's generator);
    every level but the last halves the image, so the sides must allow it."""
    _, h, w = image_shape
    levels = len(cfg.channels)
    if h % 2 ** (levels - 1) or w % 2 ** (levels - 1):
        raise ValueError(f"{section}.channels has {levels} levels, so the UNet halves {h}×{w} images "
                         f"{levels - 1} times; the sides must be divisible by {2 ** (levels - 1)} (use fewer levels)")
    down, up = ["DownBlock2D"] * levels, ["UpBlock2D"] * levels
    if cfg.attention:  # attention where the feature map is smallest: cheapest, and global context there
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    return tuple(down), tuple(up)


def build_unet(cfg, image_shape: tuple[int, int, int], section: str, extra_in_channels: int = 0,
               **conditioning) -> UNet2DModel:
    """The UNet for (C, H, W) images of the `section` settings `cfg`: C channels out, C + extra_in_channels in
    (a translating ddgan's input image); `conditioning`: UNet2DModel's class-embedding arguments."""
    c, h, w = image_shape
    down, up = unet_blocks(cfg, image_shape, section)
    return UNet2DModel(sample_size=(h, w), in_channels=c + extra_in_channels, out_channels=c,
                       block_out_channels=tuple(cfg.channels), layers_per_block=cfg.layers_per_block,
                       down_block_types=down, up_block_types=up, norm_num_groups=8,
                       attention_head_dim=8, **conditioning)
