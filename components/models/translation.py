"""Image-to-image translators (model.family, `translation` section):

    pix2pix   (Isola et al. 2017) a U-Net generator G: input → target and a PatchGAN D that judges
              (input, image) pairs patch by patch
    cyclegan  (Zhu et al. 2017) two U-Net generators G: A → B and F: B → A, and PatchGANs D_A, D_B

An input smaller than the target (super-resolution) is first resized to the target size with
bicubic interpolation, inside the model, so a translator accepts inputs as the dataset stores them.
Widths are model.g_channels (G's first level, doubling with depth) and model.d_channels."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn



def to_size(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize to `size` (no-op when already there); also the super-resolution baseline."""
    return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=size, mode="bicubic", align_corners=False)


class UNet(nn.Module):
    """pix2pix's U-Net: `depth` stride-2 4×4 conv levels down (LeakyReLU 0.2, norm but on the first),
    transposed convs up (ReLU, norm) with a skip from the matching down level, tanh output."""

    def __init__(self, c_in: int, c_out: int, size: tuple[int, int], width: int, depth: int, norm: type[nn.Module]):
        super().__init__()
        h, w = size
        if h % 2**depth or w % 2**depth:
            raise ValueError(f"translation.g_depth = {depth} halves {h}×{w} images {depth} times; the sides must "
                             f"be divisible by {2**depth} (lower g_depth)")
        self.size = (h, w)
        widths = [width * 2 ** min(i, 3) for i in range(depth)]
        self.down = nn.ModuleList()
        for i, c in enumerate(widths):
            layers = [nn.Conv2d(c_in if i == 0 else widths[i - 1], c, 4, 2, 1, bias=i == 0)]
            self.down.append(nn.Sequential(*layers, *([] if i == 0 else [norm(c)]), nn.LeakyReLU(0.2)))
        self.up = nn.ModuleList()
        for i in reversed(range(depth)):
            c_up_in = widths[i] * (1 if i == depth - 1 else 2)  # the innermost level has no skip
            c_up_out = c_out if i == 0 else widths[i - 1]
            last = i == 0
            self.up.append(nn.Sequential(nn.ConvTranspose2d(c_up_in, c_up_out, 4, 2, 1, bias=last),
                                         *([nn.Tanh()] if last else [norm(c_up_out), nn.ReLU()])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_size(x, self.size)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        skips.pop()  # the innermost output is x itself
        for block in self.up:
            x = block(x)
            if skips:
                x = torch.cat([x, skips.pop()], 1)
        return x


class PatchGAN(nn.Module):
    """`layers` stride-2 4×4 convs then a 3×3 conv to one logit per patch; returns (B, patches).
    With `cond` (pix2pix) it judges the image concatenated with its (resized) input."""

    def __init__(self, c_in: int, size: tuple[int, int], width: int, layers: int, norm: type[nn.Module]):
        super().__init__()
        h, w = size
        if min(h, w) // 2**layers < 1:
            raise ValueError(f"translation.d_layers = {layers} is too deep for {h}×{w} images (lower it)")
        self.size = (h, w)
        mods: list[nn.Module] = []
        c = c_in
        for i in range(layers):
            out = width * 2 ** min(i, 3)
            mods += [nn.Conv2d(c, out, 4, 2, 1, bias=i == 0), *([] if i == 0 else [norm(out)]), nn.LeakyReLU(0.2)]
            c = out
        mods.append(nn.Conv2d(c, 1, 3, 1, 1))
        self.body = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None:
            x = torch.cat([to_size(cond, self.size), x], 1)
        return self.body(x).flatten(1)


class Translator(nn.Module):
    """What pix2pix exports: translate(x) = G(x)."""

    def __init__(self, g: nn.Module, input_shape, output_shape):
        super().__init__()
        self.g, self.input_shape, self.output_shape = g, tuple(input_shape), tuple(output_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.g(x)

    def translate(self, x: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        if reverse:
            raise ValueError("pix2pix translates one way (input → target); reverse is for cyclegan")
        return self(x)


class CycleGenerators(nn.Module):
    """G: A → B and F: B → A. forward(a, b) runs every generator pass of a CycleGAN step in one call
    (so one DDP wrapper syncs both): G(a), F(G(a)), F(b), G(F(b)) and, for the identity loss, G(b), F(a)."""

    def __init__(self, a2b: nn.Module, b2a: nn.Module, input_shape, output_shape):
        super().__init__()
        self.a2b, self.b2a = a2b, b2a
        self.input_shape, self.output_shape = tuple(input_shape), tuple(output_shape)

    def forward(self, a: torch.Tensor, b: torch.Tensor, identity: bool = False) -> dict[str, torch.Tensor]:
        fake_b, fake_a = self.a2b(a), self.b2a(b)
        out = {"fake_b": fake_b, "rec_a": self.b2a(fake_b), "fake_a": fake_a, "rec_b": self.a2b(fake_a)}
        if identity:
            out.update(idt_b=self.a2b(b), idt_a=self.b2a(a))
        return out

    def translate(self, x: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        return self.b2a(x) if reverse else self.a2b(x)


class CycleDiscriminators(nn.Module):
    """D_A judges domain A images, D_B domain B; forward(a, b) → (D_A(a), D_B(b))."""

    def __init__(self, d_a: nn.Module, d_b: nn.Module):
        super().__init__()
        self.d_a, self.d_b = d_a, d_b

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.d_a(a), self.d_b(b)


def _image_shapes(family: str, input_shape, output_shape) -> None:
    if len(input_shape) != 3 or len(output_shape) != 3:
        raise ValueError(f"{family} translates images (C, H, W); got {input_shape} → {output_shape}")


def pix2pix(cfg, model_cfg, input_shape, output_shape, d_extra: int = 0) -> tuple[nn.Module, nn.Module]:
    _image_shapes("pix2pix", input_shape, output_shape)
    size = tuple(output_shape[1:])
    g = UNet(input_shape[0], output_shape[0], size, model_cfg.g_channels, cfg.g_depth, nn.BatchNorm2d)
    d = PatchGAN(input_shape[0] + output_shape[0] + d_extra, size, model_cfg.d_channels, cfg.d_layers, nn.BatchNorm2d)
    return Translator(g, input_shape, output_shape), d


def cyclegan(cfg, model_cfg, input_shape, output_shape, d_extra: int = 0) -> tuple[nn.Module, nn.Module]:
    _image_shapes("cyclegan", input_shape, output_shape)
    if tuple(input_shape) != tuple(output_shape):
        raise ValueError(f"cyclegan needs both domains at one shape, got {input_shape} and {output_shape}")
    c, *size = output_shape
    # InstanceNorm, as CycleGAN: per-image statistics, so a batch mixes no domain statistics
    unet = lambda: UNet(c, c, tuple(size), model_cfg.g_channels, cfg.g_depth, nn.InstanceNorm2d)  # noqa: E731
    patch = lambda: PatchGAN(c + d_extra, tuple(size), model_cfg.d_channels, cfg.d_layers, nn.InstanceNorm2d)  # noqa: E731
    return (CycleGenerators(unet(), unet(), input_shape, output_shape), CycleDiscriminators(patch(), patch()))
