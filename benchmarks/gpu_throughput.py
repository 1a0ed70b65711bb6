"""GPU throughput of the training fast path: our loop (train_model in this process, Worker(device),
train.precision / channels_last / compile / device_data on their auto rules) against plain PyTorch
loops of the same networks, batch, data and device. Not part of the test suite.

  dcgan  our DCGAN at 32×32 (pytorch/examples' widths: nz 100, ngf = ndf = 64) vs a loop in the style
         of pytorch/examples dcgan/main.py: BCELoss on sigmoid(D), Adam, fp32, a CPU batch copied to
         the device each step, the losses read with .item() every step (main.py prints them).
  ddpm   the ddpm preset's UNet (components/presets/ddpm.yaml) at 32×32 vs a loop in the style of
         diffusers' examples/unconditional_image_generation: DDPMScheduler.add_noise, F.mse_loss,
         AdamW, fp32, gradient clipping, EMAModel, loss.item() every step (its progress bar).

Data: mnist5k resized to 32×32 by the source's own option (data.image_size: 32), prepared into a
temporary folder. cudnn.benchmark is on for both sides (main.py sets it). Figures: images/s in steady
state (wall clock between the end of --warmup steps and the end of the run, device synchronised; ours
is timed by its own logging callback, which follows its host sync) and peak GPU memory
(torch.cuda.max_memory_allocated), medians over --repeats alternating runs. Goal on a GPU: ours ≥ 1.5×
the reference for dcgan and ≥ 1.2× for ddpm.

    python benchmarks/gpu_throughput.py --device cuda [--steps 300]
    python benchmarks/gpu_throughput.py --device cpu --steps 20       # smoke check only
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.config import load_params  # noqa: E402
from components.data.shards import load_split, read_manifest  # noqa: E402
from components.families import build_diffusion, build_gan  # noqa: E402
from components.training import fast  # noqa: E402
from diffusion_report import device_name, sync  # noqa: E402  (beside this file)
from diffusion_throughput import ours  # noqa: E402  (our loop's images/s, timed between its logging steps)

GOALS = {"dcgan": 1.5, "ddpm": 1.2}
FAMILY_SETS = {"dcgan": ["preset=null", "model.latent_dim=100", "model.g_channels=64", "model.d_channels=64"],
               "ddpm": ["preset=ddpm"]}


def measured(device: torch.device, run) -> dict:
    """images/s from `run()` and the peak device memory it allocated."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    images_per_s = run()
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"images_per_s": images_per_s, "peak_mem_mib": peak}


def _batches(prepared: Path, seed: int):
    """The train split as main.py's DataLoader yields it: float images in [-1, 1] on the CPU."""
    x, y = load_split(prepared, "train")
    x = torch.from_numpy(x).float().div_(127.5).sub_(1.0)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return x, torch.from_numpy(y), order


def dcgan_reference(params, prepared: Path, device: torch.device, warmup: int, steps: int) -> float:
    x, _, order = _batches(prepared, params.seed)
    torch.manual_seed(params.seed)
    g, d = build_gan(params.model, read_manifest(prepared)["image_shape"])
    g, d = g.to(device), d.to(device)
    tc, b, nz = params.train, params.train.batch_size, params.model.latent_dim
    criterion = torch.nn.BCELoss()
    opt_d = torch.optim.Adam(d.parameters(), lr=tc.lr_d, betas=(tc.beta1, tc.beta2))
    opt_g = torch.optim.Adam(g.parameters(), lr=tc.lr_g, betas=(tc.beta1, tc.beta2))
    for step in range(warmup + steps):
        if step == warmup:
            sync(device)
            t0 = time.perf_counter()
        real = x[order[(step * b) % (len(x) - b):][:b]].to(device)
        # (1) D: maximise log D(x) + log(1 - D(G(z)))  (main.py's netD ends in a Sigmoid; ours gives logits)
        d.zero_grad()
        label = torch.full((b,), 1.0, device=device)
        output = torch.sigmoid(d(real)).view(-1)
        err_d_real = criterion(output, label)
        err_d_real.backward()
        d_x = output.mean().item()
        fake = g(torch.randn(b, nz, device=device))
        label.fill_(0.0)
        output = torch.sigmoid(d(fake.detach())).view(-1)
        err_d_fake = criterion(output, label)
        err_d_fake.backward()
        d_g_z1 = output.mean().item()
        opt_d.step()
        # (2) G: maximise log D(G(z))
        g.zero_grad()
        label.fill_(1.0)
        output = torch.sigmoid(d(fake)).view(-1)
        err_g = criterion(output, label)
        err_g.backward()
        d_g_z2 = output.mean().item()
        opt_g.step()
        _ = ((err_d_real + err_d_fake).item(), err_g.item(), d_x, d_g_z1, d_g_z2)  # main.py prints these
    sync(device)
    return steps * b / (time.perf_counter() - t0)


def ddpm_reference(params, prepared: Path, device: torch.device, warmup: int, steps: int) -> float:
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    x, y, order = _batches(prepared, params.seed)
    manifest = read_manifest(prepared)
    torch.manual_seed(params.seed)
    dc, tc, b = params.diffusion, params.train, params.train.batch_size
    unet = build_diffusion(dc, manifest["image_shape"], len(manifest["class_names"])).unet
    unet = unet.to(device)
    opt = torch.optim.AdamW(unet.parameters(), lr=tc.lr_g, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    ema = EMAModel(unet.parameters(), decay=tc.ema_decay, use_ema_warmup=True) if tc.ema_decay else None
    if ema is not None:
        ema.to(device)
    sched = DDPMScheduler(num_train_timesteps=dc.timesteps, beta_start=dc.beta_start, beta_end=dc.beta_end,
                          beta_schedule="linear")
    for step in range(warmup + steps):
        if step == warmup:
            sync(device)
            t0 = time.perf_counter()
        rows = order[(step * b) % (len(x) - b):][:b]
        clean, labels = x[rows].to(device), y[rows].to(device)
        noise = torch.randn(clean.shape, device=device)
        t = torch.randint(0, sched.config.num_train_timesteps, (b,), device=device).long()
        pred = unet(sched.add_noise(clean, noise, t), t, class_labels=labels).sample
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        if dc.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(unet.parameters(), dc.grad_clip)
        opt.step()
        opt.zero_grad()
        if ema is not None:
            ema.step(unet.parameters())
        _ = loss.detach().item()  # the example's progress bar shows the loss every step
    sync(device)
    return steps * b / (time.perf_counter() - t0)


REFERENCES = {"dcgan": dcgan_reference, "ddpm": ddpm_reference}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=300, help="timed steps per run (a multiple of --warmup)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (compile happens here); "
                    "default 25 on CUDA, 10 on CPU")
    ap.add_argument("--batch-size", type=int, default=64, help="the same for ours and the references")
    ap.add_argument("--repeats", type=int, default=2, help="alternating ours/reference pairs; medians reported")
    ap.add_argument("--families", default="dcgan,ddpm")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra params overrides")
    ap.add_argument("--out", default=None, help="JSON report; default reports/benchmarks/gpu_throughput.json "
                    "(gpu_throughput_cpu_smoke.json on CPU)")
    a = ap.parse_args()
    device = torch.device(a.device)
    if device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
        torch.backends.cudnn.benchmark = True
    warmup = a.warmup or (25 if device.type == "cuda" else 10)
    if a.steps % warmup:
        raise SystemExit(f"--steps {a.steps} must be a multiple of --warmup {warmup}")
    torch.set_num_threads(a.threads)

    report: dict = {"device": device_name(device),
                    "cpu_smoke": device.type == "cpu", "batch_size": a.batch_size, "steps": a.steps,
                    "warmup": warmup, "repeats": a.repeats, "torch": torch.__version__, "families": {}}
    with tempfile.TemporaryDirectory() as tmp:
        common = [f"data.prepared_dir={Path(tmp) / 'prepared'}", "data.source=mnist5k", "data.image_size=32",
                  f"train.batch_size={a.batch_size}", "train.epochs=100000", f"train.max_steps={warmup + a.steps}",
                  f"train.log_every={warmup}", "train.checkpoint_every=1000000000", "train.sample_every=1000000",
                  f"train.num_threads={a.threads}", *a.overrides]
        for family in a.families.split(","):
            params = load_params(REPO / "params.yaml", [*FAMILY_SETS[family], *common])
            prepared = params.prepared_path(Path(tmp))
            if not prepared.is_dir():
                from pipelines import prepare

                prepare.run(params, tmp)
            runs: dict[str, list[dict]] = {"ours": [], "reference": []}
            for r in range(a.repeats):
                for name, fn in (("ours", ours), ("reference", REFERENCES[family])):
                    runs[name].append(measured(device, lambda: fn(params, prepared, device, warmup, a.steps)))
                    peak = runs[name][-1]["peak_mem_mib"]
                    print(f"{family} repeat {r}: {name} {runs[name][-1]['images_per_s']:.1f} images/s"
                          + (f", peak {peak:.0f} MiB" if peak is not None else ""), flush=True)
            med = {k: statistics.median(m["images_per_s"] for m in v) for k, v in runs.items()}
            path = fast.FastPath.resolve(params.train, device)
            share = int(torch.from_numpy(load_split(prepared, "train")[0]).nbytes)
            report["families"][family] = {
                "image_shape": read_manifest(prepared)["image_shape"],
                "fast_path": {"bf16_autocast": path.amp, "channels_last": path.channels_last,
                              "compile": path.compile, "device_data": fast.device_data(params.train, device, share)},
                "runs": runs, "median_images_per_s": med,
                "peak_mem_mib": {k: max((m["peak_mem_mib"] or 0) for m in v) or None for k, v in runs.items()},
                "ratio": med["ours"] / med["reference"], "goal_ratio": GOALS[family]}
            print(f"{family}: ours {med['ours']:.1f} vs reference {med['reference']:.1f} images/s → "
                  f"{med['ours'] / med['reference']:.2f}× (goal ≥ {GOALS[family]}× on a GPU)", flush=True)
    name = "gpu_throughput_cpu_smoke.json" if report["cpu_smoke"] else "gpu_throughput.json"
    out = Path(a.out or REPO / "reports" / "benchmarks" / name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}" + (" (CPU smoke check: not the GPU figures)" if report["cpu_smoke"] else ""))


if __name__ == "__main__":
    main()
