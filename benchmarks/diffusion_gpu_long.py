"""The ddpm preset trained longer on one GPU, in process (no Ray), exported to OUT_DIR: checks that
deterministic DDIM (η = 0) works on a better-trained model (README, "Diffusion models").

    python benchmarks/diffusion_gpu_long.py /tmp/long 6000
    python benchmarks/diffusion_samplers.py --model /tmp/long --device cuda --sampler ddim:50:0 --sampler ddim:50:1
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.config import load_params  # noqa: E402
from components.training import checkpoint as ckpt  # noqa: E402
from components.training.loop import Worker, train_model  # noqa: E402


class _KeepLast:
    state: dict | None = None

    def log(self, step, metrics):
        print(step, metrics, flush=True)

    def samples(self, *args):
        pass

    def checkpoint(self, step, state, metrics):
        self.state = state


def main() -> None:
    out, steps = Path(sys.argv[1]), int(sys.argv[2])
    params = load_params(REPO / "params.yaml", [
        "preset=ddpm", f"train.max_steps={steps}", "train.epochs=100000", "train.batch_size=128",
        "scaling.num_workers=1", "train.checkpoint_every=1000000", "train.sample_every=1000000",
        "train.log_every=1000", "train.num_threads=8"])
    keep = _KeepLast()
    started = time.time()
    train_model(params, params.prepared_path(REPO), Worker(device=torch.device("cuda")), keep)
    print("train seconds", time.time() - started, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    ckpt.write_generator(keep.state, out)


if __name__ == "__main__":
    main()
