"""The GAN training loop: one readable function, identical with or without Ray.

Randomness that must survive a resume is derived from (seed, rank, step/epoch) rather than
carried in RNG state, so a resumed run draws exactly the batches and noise an uninterrupted
run would have drawn, on every rank."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from components.config import Params
from components.data.shards import load_rank_share, rank_row_counts, read_manifest
from components.models import build_gan
from components.training import checkpoint as ckpt
from components.training.ema import EMA
from components.training.gan_step import STATS, GanGame, instance_noise_std, set_learning_rates
from components.training.images import preview


class NonFiniteLossError(RuntimeError):
    def __init__(self, step: int, metrics: dict[str, float]):
        self.step = step
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        super().__init__(f"non-finite loss at step {step} ({shown}); lower the learning rates or check the data")


class Callbacks(Protocol):
    """What the launcher does with progress. `log`/`samples` are called on rank 0 only;
    `checkpoint` on every rank (state is None except on rank 0) so collective reporters stay in step."""

    def log(self, step: int, metrics: dict[str, float]) -> None: ...
    def samples(self, step: int, epoch: int, image: np.ndarray) -> None: ...
    def checkpoint(self, step: int, state: dict | None, metrics: dict[str, float]) -> None: ...


@dataclass(frozen=True)
class Worker:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")


@dataclass(frozen=True)
class Plan:
    steps_per_epoch: int
    total_steps: int


def plan(params: Params, prepared_dir: Path, world_size: int) -> Plan:
    """A step is one round of the game: d_steps_per_g_step D updates, each on its own batch, then
    g_steps_per_d_step G updates. Steps per epoch are equal on every rank (DDP needs the same number
    of collectives): the smallest rank share decides. Raises ValueError if a step's data does not fit."""
    rows = rank_row_counts(prepared_dir, "train", world_size)
    tc = params.train
    per_step = tc.batch_size * tc.d_steps_per_g_step
    if min(rows) < per_step:
        what = f"train.batch_size = {tc.batch_size}" + (
            f" × train.d_steps_per_g_step = {tc.d_steps_per_g_step}" if tc.d_steps_per_g_step > 1 else "")
        raise ValueError(
            f"{what} is larger than the data each of the "
            f"{world_size} worker(s) holds (smallest share: {min(rows)} samples of {sum(rows)}); lower "
            "train.batch_size or scaling.num_workers"
        )
    spe = min(rows) // per_step
    total = spe * params.train.epochs
    if params.train.max_steps is not None:
        total = min(total, params.train.max_steps)
    return Plan(steps_per_epoch=spe, total_steps=total)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _stream_seed(seed: int, *parts: int) -> int:
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0])


def to_model_space(batch: torch.Tensor) -> torch.Tensor:
    """Stored samples → what G produces: uint8 images to [-1, 1]; points are stored as they are."""
    return batch.float().div_(127.5).sub_(1.0) if batch.dtype == torch.uint8 else batch.float()


def train_gan(params: Params, prepared_dir: Path, worker: Worker, callbacks: Callbacks, resume: dict | None = None) -> dict:
    tc = params.train
    torch.set_num_threads(tc.num_threads or params.scaling.cpus_per_worker)
    manifest = read_manifest(prepared_dir)
    sample_shape = tuple(manifest["image_shape"])
    steps = plan(params, prepared_dir, worker.world_size)
    dev = worker.device

    _seed_all(params.seed)  # identical initial weights on every rank
    g, d = build_gan(params.model, sample_shape, pack=tc.pack, spectral_norm=tc.spectral_norm)
    g, d = g.to(dev), d.to(dev)
    opt_g = torch.optim.Adam(g.parameters(), lr=tc.lr_g, betas=(tc.beta1, tc.beta2))
    opt_d = torch.optim.Adam(d.parameters(), lr=tc.lr_d, betas=(tc.beta1, tc.beta2))
    ema = EMA(g, tc.ema_decay) if tc.ema_decay else None
    start = 0
    if resume is not None:
        ckpt.restore(resume, g=g, d=d, opt_g=opt_g, opt_d=opt_d, ema=ema)
        start = int(resume["step"])
    distributed = worker.world_size > 1 and dist.is_available() and dist.is_initialized()
    if distributed:
        # G and D wrapped separately; no buffer sync in forward because D runs several forwards
        # per step and BatchNorm buffers would otherwise be re-broadcast between them.
        ids = [dev.index] if dev.type == "cuda" else None
        g = DDP(g, device_ids=ids, forward_sync_buffers=False)
        d = DDP(d, device_ids=ids, forward_sync_buffers=False)
    game = GanGame(g, d, opt_g, opt_d, tc, ema)

    samples, _ = load_rank_share(prepared_dir, "train", worker.rank, worker.world_size)
    data = torch.from_numpy(samples)  # uint8 images stay uint8 in memory; scaled per batch
    noise = torch.Generator(device="cpu")
    b, zdim, k_d, k_g = tc.batch_size, params.model.latent_dim, tc.d_steps_per_g_step, tc.g_steps_per_d_step
    fixed_z = torch.randn(tc.sample_grid, zdim, generator=torch.Generator().manual_seed(params.seed))
    meta = {"model": params.model.model_dump(mode="json"), "image_shape": list(sample_shape),
            "class_names": manifest["class_names"], "dataset": manifest["dataset"],
            "data_hash": manifest["content_hash"], "objective": tc.objective, "ema": ema is not None}

    def state_at(step: int) -> dict | None:
        if worker.rank != 0:
            return None
        return ckpt.capture(step=step, epoch=step // steps.steps_per_epoch, g=g, d=d, opt_g=opt_g, opt_d=opt_d,
                            meta=meta, ema=ema)

    def latents(stream: int, step: int, i: int) -> torch.Tensor:
        noise.manual_seed(_stream_seed(params.seed, stream, worker.rank, step, i))
        return torch.randn(b, zdim, generator=noise).to(dev, non_blocking=True)

    sums = torch.zeros(len(STATS), dtype=torch.float64)
    window_start, window_steps = time.perf_counter(), 0
    last: dict[str, float] = {}
    order = None
    for step in range(start, steps.total_steps):
        epoch, k = divmod(step, steps.steps_per_epoch)
        if order is None or k == 0:
            order = torch.randperm(len(data), generator=torch.Generator().manual_seed(_stream_seed(params.seed, 1, worker.rank, epoch)))
        noise_std = instance_noise_std(tc, step, steps.total_steps)
        set_learning_rates(tc, step, steps.total_steps, opt_g, opt_d)
        g.train(), d.train()
        d_stats = torch.zeros(4, device=dev)
        for i in range(k_d):
            rows = order[(k * k_d + i) * b : (k * k_d + i + 1) * b]
            real = to_model_space(data[rows].to(dev, non_blocking=True))
            # The last D step keeps G's graph: the first G step reuses that fake batch.
            with torch.set_grad_enabled(i == k_d - 1):
                fake = g(latents(2, step, i))
            d_stats += game.d_step(real, fake, noise_std, noise) / k_d
        g_loss = torch.zeros((), device=dev)
        for j in range(k_g):
            g_loss += game.g_step(fake if j == 0 else g(latents(3, step, j)), noise_std, noise, step) / k_g

        stats = torch.cat([d_stats[:1], g_loss[None], d_stats[1:]]).double().cpu()
        if distributed:
            dist.all_reduce(stats)  # every rank sees the same numbers, so all stop at the same step
            stats /= worker.world_size
        done = step + 1
        if not torch.isfinite(stats).all():
            raise NonFiniteLossError(done, dict(zip(STATS, stats.tolist())))
        sums += stats
        window_steps += 1

        if done % tc.log_every == 0 or done == steps.total_steps:
            elapsed = time.perf_counter() - window_start
            last = dict(zip(STATS, (sums / window_steps).tolist()))
            last.update(images_per_s=window_steps * b * k_d * worker.world_size / elapsed,
                        epoch=epoch + (k + 1) / steps.steps_per_epoch)
            if worker.rank == 0:
                callbacks.log(done, last)
            sums.zero_()
            window_steps = 0
        if worker.rank == 0 and (k + 1 == steps.steps_per_epoch or done == steps.total_steps):
            callbacks.samples(done, epoch + 1, preview(sample(game.sampler, fixed_z, dev)))
        if done % tc.checkpoint_every == 0 or done == steps.total_steps:
            callbacks.checkpoint(done, state_at(done), last)
        if window_steps == 0:
            window_start = time.perf_counter()  # throughput excludes logging, sampling, checkpoints
    return {"step": steps.total_steps, "started_at": start, **last}


@torch.no_grad()
def sample(g: torch.nn.Module, z: torch.Tensor, device: torch.device) -> torch.Tensor:
    g_local = getattr(g, "module", g)
    was_training = g_local.training
    g_local.eval()
    out = g_local(z.to(device)).cpu()
    g_local.train(was_training)
    return out
