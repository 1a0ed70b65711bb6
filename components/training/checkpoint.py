"""Training state as tensors and plain data only, so every load is `weights_only=True`."""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from components.atomic import atomic_dir

STATE_FILE = "state.pt"
FORMAT_VERSION = 1


def _unwrap(m: torch.nn.Module) -> torch.nn.Module:
    return getattr(m, "module", m)  # DistributedDataParallel keeps the model in .module


def capture(*, step: int, epoch: int, nets: dict, optimizers: dict, meta: dict, ema=None) -> dict:
    """nets: name → module ("generator" is what gets exported; a GAN adds "discriminator");
    optimizers: name → optimizer. Both are restored by the same names."""
    np_state = np.random.get_state()
    extra = {"generator_ema": ema.model.state_dict()} if ema is not None else {}
    return {**extra,
        "format_version": FORMAT_VERSION,
        "step": step,
        "epoch": epoch,
        **{name: _unwrap(m).state_dict() for name, m in nets.items()},
        **{name: opt.state_dict() for name, opt in optimizers.items()},
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
            "python": json.dumps(random.getstate()),
        },
        "meta": meta,
    }


def restore(state: dict, *, nets: dict, optimizers: dict, ema=None) -> None:
    if (ema is not None) != ("generator_ema" in state):
        saved = "has an" if "generator_ema" in state else "has no"
        raise ValueError(f"the checkpoint {saved} EMA generator but train.ema_decay is "
                         f"{'on' if ema is not None else 'off'}; resume with the same train.ema_decay")
    missing = [k for k in (*nets, *optimizers) if k not in state]
    if missing:
        raise ValueError(f"the checkpoint has no {', '.join(missing)}: it was written by another model family "
                         f"({state.get('meta', {}).get('model', {}).get('family', '?')})")
    for name, m in nets.items():
        _unwrap(m).load_state_dict(state[name])
    if ema is not None:
        ema.model.load_state_dict(state["generator_ema"])
    for name, opt in optimizers.items():
        opt.load_state_dict(state[name])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    py = json.loads(rng["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))


def save(state: dict, directory: str | Path) -> Path:
    path = Path(directory) / STATE_FILE
    torch.save(state, path)
    return path


def load(directory: str | Path) -> dict:
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint state at {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


class LocalCheckpoints:
    """Checkpoints of a run without Ray: `<root>/checkpoint_<step>/state.pt`, newest `keep` kept."""

    def __init__(self, root: str | Path, keep: int):
        self.root = Path(root)
        self.keep = keep

    def _all(self) -> list[Path]:
        return sorted(self.root.glob("checkpoint_*")) if self.root.is_dir() else []

    def latest(self) -> Path | None:
        found = self._all()
        return found[-1] if found else None

    def save(self, state: dict) -> Path:
        target = self.root / f"checkpoint_{state['step']:09d}"
        with atomic_dir(target) as tmp:
            save(state, tmp)
        for stale in self._all()[: -self.keep]:
            shutil.rmtree(stale, ignore_errors=True)
        return target


GENERATOR_WEIGHTS = "generator.safetensors"
GENERATOR_SPEC = "generator.json"


def write_generator(state: dict, out_dir: str | Path) -> Path:
    """Final generator as safetensors + a JSON spec (model config, image shape) — enough to rebuild it.
    The EMA weights when the run kept them (what samples and evaluation should use).
    Writes into `out_dir` as is: wrap in `atomic_dir` for an all-or-nothing output."""
    out_dir = Path(out_dir)
    weights = {k: v.contiguous() for k, v in state.get("generator_ema", state["generator"]).items()}
    save_file(weights, str(out_dir / GENERATOR_WEIGHTS))
    spec = {"step": state["step"], "epoch": state["epoch"], **state["meta"]}
    (out_dir / GENERATOR_SPEC).write_text(json.dumps(spec, indent=2, sort_keys=True))
    return out_dir


def _build_generator(spec: dict, weights: dict) -> torch.nn.Module:
    from components.models import build_generator

    g = build_generator(spec)
    g.load_state_dict(weights)
    return g.eval()


def generator_from_state(state: dict) -> torch.nn.Module:
    """The generator of an in-memory training state (eval mode): EMA weights when kept, as exported."""
    return _build_generator(state["meta"], state.get("generator_ema", state["generator"]))


def load_generator(model_dir: str | Path):
    """Rebuild the exported generator (eval mode) from its folder; no pickle involved."""
    model_dir = Path(model_dir)
    spec = json.loads((model_dir / GENERATOR_SPEC).read_text())
    return _build_generator(spec, load_file(str(model_dir / GENERATOR_WEIGHTS))), spec
