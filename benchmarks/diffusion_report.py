"""What the diffusion benchmarks share: the device's name, timing fences and the JSON report."""
from __future__ import annotations

import json
from pathlib import Path

import torch

REPORT_DIR = Path(__file__).resolve().parents[1] / "reports" / "diffusion"


def device_name(device: torch.device) -> str:
    return str(device) if device.type == "cpu" else torch.cuda.get_device_name(device)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def write_report(report: dict, out: str | None, default_name: str) -> Path:
    path = Path(out) if out else REPORT_DIR / default_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
