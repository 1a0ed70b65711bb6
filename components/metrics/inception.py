"""The standard FID network: InceptionV3 as converted from TensorFlow's 2015-12-05 graph
(`pt_inception-2015-12-05-6726825d.pth`, used by pytorch-fid, torch-fidelity and torchmetrics).

Why our own module rather than torch-fidelity's: torch-fidelity 0.4 imports torchvision at package
import, and no torchvision wheel imports beside our pinned torch. This is the same architecture (module
and parameter names match the weights file key for key, so the file loads strictly), including the
TensorFlow quirks that make FIDs comparable with published numbers: TF1 bilinear resizing to 299×299,
average pools that ignore padding, a max pool in the last block and unbiased logits for the IS.

Weights come only from a local file (`evaluator.inception_weights`), never from the network.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from components.metrics.base import FEATURE_NETS, FeatureExtractor, Tensor

INPUT_SIZE = 299
MISSING_WEIGHTS = (
    "the inception evaluator needs evaluator.inception_weights: a local pt_inception-2015-12-05 weights file "
    "(pt_inception-2015-12-05-6726825d.pth from pytorch-fid / torch-fidelity releases); it is never downloaded"
)


def resize_like_tf1(x: Tensor, size: int) -> Tensor:
    """TensorFlow 1.x `resize_bilinear(align_corners=False)`: source coordinate = dst · in/out, with no
    half-pixel offset (unlike torch's interpolate). Written as two interpolation matrices, out = Ry·x·Rxᵀ."""

    def matrix(n_in: int) -> Tensor:
        src = torch.arange(size, dtype=torch.float64) * (n_in / size)
        lo = src.floor().long()
        frac = (src - lo).to(x.dtype)
        m = torch.zeros(size, n_in, dtype=x.dtype)
        rows = torch.arange(size)
        m[rows, lo] += 1 - frac
        m[rows, (lo + 1).clamp(max=n_in - 1)] += frac
        return m

    return torch.einsum("oh,nchw,pw->ncop", matrix(x.shape[2]), x, matrix(x.shape[3]))


class BasicConv2d(nn.Module):
    def __init__(self, c_in: int, c_out: int, **conv):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, bias=False, **conv)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)  # TF's epsilon

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _chain(x: Tensor, *layers: nn.Module) -> Tensor:
    for layer in layers:
        x = layer(x)
    return x


def _avg_pool(x: Tensor) -> Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)  # TF averages real pixels only


class InceptionA(nn.Module):
    def __init__(self, c_in: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(c_in, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(c_in, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(c_in, pool_features, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch1x1(x),
            _chain(x, self.branch5x5_1, self.branch5x5_2),
            _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
            self.branch_pool(_avg_pool(x)),
        ], 1)


class InceptionB(nn.Module):
    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(c_in, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch3x3(x),
            _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class InceptionC(nn.Module):
    def __init__(self, c_in: int, c7: int):
        super().__init__()
        row, col = dict(kernel_size=(1, 7), padding=(0, 3)), dict(kernel_size=(7, 1), padding=(3, 0))
        self.branch1x1 = BasicConv2d(c_in, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(c_in, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, **row)
        self.branch7x7_3 = BasicConv2d(c7, 192, **col)
        self.branch7x7dbl_1 = BasicConv2d(c_in, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, **row)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, **row)
        self.branch_pool = BasicConv2d(c_in, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch1x1(x),
            _chain(x, self.branch7x7_1, self.branch7x7_2, self.branch7x7_3),
            _chain(x, self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                   self.branch7x7dbl_5),
            self.branch_pool(_avg_pool(x)),
        ], 1)


class InceptionD(nn.Module):
    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(c_in, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(c_in, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            _chain(x, self.branch3x3_1, self.branch3x3_2),
            _chain(x, self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class InceptionE(nn.Module):
    def __init__(self, c_in: int, max_pool: bool):
        super().__init__()
        # The TF graph's last block (Mixed_7c) max-pools where the paper average-pools; FID keeps the quirk.
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(c_in, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(c_in, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(c_in, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(c_in, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch3x3_1(x)
        b = _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2)
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(a), self.branch3x3_2b(a),
            self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b),
            self.branch_pool(pooled),
        ], 1)


@FEATURE_NETS.register("inception")
class InceptionV3(FeatureExtractor):
    """`InceptionV3()` is the bare architecture (random weights); `from_arch(weights_path=…)` loads a file."""

    kind = "inception"
    stores_weights = False
    batch_size = 50  # 299×299 activations: 500 images would need tens of GB
    feature_dim = 2048  # pool_3, the FID/KID/PRDC features
    num_classes = 1008  # the TF graph's 1008-way softmax (1000 ImageNet classes + unused)

    def __init__(self):
        super().__init__()
        self.weights_path: str | None = None
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, c7=128)
        self.Mixed_6c = InceptionC(768, c7=160)
        self.Mixed_6d = InceptionC(768, c7=160)
        self.Mixed_6e = InceptionC(768, c7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)
        self.requires_grad_(False)

    @classmethod
    def from_arch(cls, weights_path: str | Path | None = None) -> "InceptionV3":
        if not weights_path:
            raise ValueError(MISSING_WEIGHTS)
        net = cls()
        try:
            net.load_state_dict(read_state_dict(weights_path))  # strict: every key and shape must match
        except RuntimeError as e:
            raise ValueError(f"{weights_path} is not pt_inception-2015-12-05 InceptionV3 weights: {e}") from None
        net.weights_path = str(weights_path)
        return net.eval()

    def arch(self) -> dict:
        return {"weights_path": self.weights_path}

    def embed(self, x: Tensor) -> tuple[Tensor, Tensor]:
        c = x.shape[1]
        if c not in (1, 3):
            raise ValueError(f"the inception evaluator takes 1- or 3-channel images, got {c} channels")
        # The reference pipeline sees uint8 images: quantise [-1, 1] to 0..255 (dataset images round-trip
        # exactly), resize in that range, then TF's (x - 128) / 128 input scaling.
        x = ((x + 1) * 127.5).round_().clamp_(0, 255)
        x = (resize_like_tf1(x, INPUT_SIZE) - 128) / 128
        x = x.expand(-1, 3, -1, -1)  # grey → RGB: the same plane three times
        x = _chain(x, self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3)
        x = _chain(F.max_pool2d(x, 3, stride=2), self.Conv2d_3b_1x1, self.Conv2d_4a_3x3)
        x = _chain(F.max_pool2d(x, 3, stride=2), self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a,
                   self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                   self.Mixed_7c)
        feats = x.mean(dim=(2, 3))
        # "logits_unbiased" (no fc bias), what torch-fidelity and torchmetrics feed the Inception Score.
        return feats, feats @ self.fc.weight.T


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors only: safetensors, or a torch file loaded with weights_only=True (no code is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"evaluator.inception_weights: no file at {path}; {MISSING_WEIGHTS}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — any unreadable file gets the same named error
        raise ValueError(f"cannot read InceptionV3 weights {path}: {e}") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a state dict of tensors (expected pt_inception-2015-12-05 weights)")
    return state
