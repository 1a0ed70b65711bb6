"""The GPU fast path of the training loop (train.precision, channels_last, compile, device_data),
resolved for one device. "auto" turns each on where it pays (CUDA) and leaves CPU runs exactly as
they were; every piece is a torch feature (autocast, memory formats, nn.Module.compile)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

COMPILE_BACKEND = "inductor"  # tests use "eager": the same wiring without code generation
DEVICE_DATA_LIMIT = 1 << 30  # auto device_data: a rank's share under 1 GiB


def _on(value, device: torch.device) -> bool:
    return device.type == "cuda" if value == "auto" else bool(value)


def bf16_supported(device: torch.device) -> bool:
    # natively (Ampere or newer): emulated bf16 is slower than fp32
    return device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)


@dataclass(frozen=True)
class FastPath:
    device: torch.device
    amp: bool = False  # bf16 autocast around forwards and losses
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def resolve(cls, tc, device: torch.device) -> "FastPath":
        amp = tc.precision == "bf16" or (tc.precision == "auto" and bf16_supported(device))
        return cls(device, amp, _on(tc.channels_last, device), _on(tc.compile, device))

    def autocast(self):
        """Forwards and losses under bf16 autocast when on; backward and optimizer steps stay outside."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def prepare(self, module: nn.Module) -> nn.Module:
        """On the device, NHWC when channels_last (only 4-D weights change; state_dict keys do not)."""
        module = module.to(self.device)
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def images(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def compiled(self, module: nn.Module) -> nn.Module:
        """What a step calls: torch.compile of `module` (of its DDP wrapper when distributed, torch's
        guidance). Tasks keep the plain module for checkpoints (no `_orig_mod.` keys), EMA and sampling."""
        return torch.compile(module, backend=COMPILE_BACKEND) if self.compile else module

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """A CPU tensor (seeded noise, a data batch) on the device without a host sync: pinned memory
        and an async copy on CUDA (the caching host allocator keeps the buffer until the copy is done)."""
        if self.device.type != "cuda":
            return x.to(self.device)
        return x.pin_memory().to(self.device, non_blocking=True)


def unwrap(module: nn.Module) -> nn.Module:
    """The network inside compile and DDP wrappers."""
    module = getattr(module, "_orig_mod", module)
    return getattr(module, "module", module)


def device_data(tc, device: torch.device, share_bytes: int) -> bool:
    """train.device_data: keep the rank's share of the dataset on its device."""
    if tc.device_data == "auto":
        return device.type == "cuda" and share_bytes < DEVICE_DATA_LIMIT
    return bool(tc.device_data)


def double_backprop(tc) -> bool:
    """GP and R1 differentiate D's gradient: compiled graphs (AOTAutograd) cannot, so D stays eager."""
    return bool(tc.gradient_penalty or tc.r1)
