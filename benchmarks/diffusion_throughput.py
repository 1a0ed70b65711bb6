"""Training throughput of genpipe's diffusion loop against a plain diffusers-style loop (the shape of
diffusers' examples/unconditional_image_generation/train_unconditional.py: add_noise, UNet, MSE,
backward, clip, step, EMAModel) on the same UNet, batch, data and device, in one run.

Both are timed the same way, steady state: images per second between the end of a warm-up and the end
of the run, by wall clock (ours includes everything its loop does per step: seeded noise streams,
label dropout, the loss all-reduce check, logging). Alternates the two `--repeats` times and reports
the median of each.

    python benchmarks/diffusion_throughput.py                      # mnist5k, the ddpm preset, CPU, 1 thread
    python benchmarks/diffusion_throughput.py --device cuda --threads 4
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.config import load_params  # noqa: E402
from components.data.shards import load_split, read_manifest  # noqa: E402
from components.diffusion import process  # noqa: E402
from components.families import build_diffusion  # noqa: E402
from components.training.loop import Worker, train_model  # noqa: E402
from diffusion_report import device_name, sync, write_report  # noqa: E402  (beside this file)


def ours(params, prepared: Path, device: torch.device, warmup: int, steps: int) -> float:
    marks: dict[int, float] = {}

    class Timer:
        def log(self, step, metrics):
            marks[step] = time.perf_counter()

        def samples(self, *a):
            pass

        def checkpoint(self, *a):
            pass

    p = params.with_overrides({"train.max_steps": warmup + steps, "train.log_every": warmup if warmup else steps,
                               "train.checkpoint_every": 10**9, "train.sample_every": 10**6})
    if warmup + steps != p.train.max_steps or steps % warmup:
        raise SystemExit("--steps must be a multiple of --warmup")
    train_model(p, prepared, Worker(device=device), Timer())
    return steps * params.train.batch_size / (marks[warmup + steps] - marks[warmup])


def reference(params, prepared: Path, device: torch.device, warmup: int, steps: int) -> float:
    from diffusers.training_utils import EMAModel

    x_all, y_all = load_split(prepared, "train")
    x_all, y_all = torch.from_numpy(x_all), torch.from_numpy(y_all)
    manifest = read_manifest(prepared)
    torch.manual_seed(params.seed)
    model = build_diffusion(params.diffusion, manifest["image_shape"],
                            len(manifest["class_names"])).to(device)
    unet = model.unet
    opt = torch.optim.Adam(unet.parameters(), lr=params.train.lr_g,
                           betas=(params.train.beta1, params.train.beta2))
    ema = EMAModel(unet.parameters(), decay=params.train.ema_decay, use_ema_warmup=True)
    sched = process.noise_scheduler(params.diffusion)
    b, T = params.train.batch_size, params.diffusion.timesteps
    order = torch.randperm(len(x_all))
    t0 = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            sync(device)
            t0 = time.perf_counter()
        idx = order[(step * b) % (len(order) - b):][:b]
        clean = x_all[idx].to(device).float().div(127.5).sub(1)
        labels = y_all[idx].to(device)
        noise = torch.randn(clean.shape, device=device)
        t = torch.randint(0, T, (b,), device=device)
        pred = unet(sched.add_noise(clean, noise, t), t, class_labels=labels).sample
        loss = F.mse_loss(pred, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), params.diffusion.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.step(unet.parameters())
        if step % params.train.log_every == 0:
            loss.item()  # the example logs the loss at its logging interval
    sync(device)
    return steps * b / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="ddpm")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a Ray worker of the preset has 1)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="JSON report (default reports/diffusion/throughput_<device>.json)")
    a = ap.parse_args()
    params = load_params(REPO / "params.yaml", [f"preset={a.preset}", f"train.num_threads={a.threads}", *a.overrides])
    prepared = params.prepared_path(REPO)
    device = torch.device(a.device)
    torch.set_num_threads(a.threads)
    runs: dict[str, list[float]] = {"ours": [], "reference": []}
    for r in range(a.repeats):
        for name, fn in (("ours", ours), ("reference", reference)):
            runs[name].append(fn(params, prepared, device, a.warmup, a.steps))
            print(f"repeat {r}: {name} {runs[name][-1]:.1f} images/s", flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    report = {"device": device_name(device),
              "threads": a.threads, "batch_size": params.train.batch_size, "unet_channels": params.diffusion.channels,
              "image_shape": read_manifest(prepared)["image_shape"], "steps": a.steps, "warmup": a.warmup,
              "images_per_s": runs, "median": med, "ratio": med["ours"] / med["reference"]}
    out = write_report(report, a.out, f"throughput_{device.type}.json")
    print(f"ours {med['ours']:.1f} vs reference {med['reference']:.1f} images/s: ratio {report['ratio']:.3f} → {out}")


if __name__ == "__main__":
    main()
