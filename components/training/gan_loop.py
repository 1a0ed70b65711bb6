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
from components.objectives import OBJECTIVES
from components.training import checkpoint as ckpt
from components.training.images import grid


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
    """Steps per epoch are equal on every rank (DDP needs the same number of collectives):
    the smallest rank share decides. Raises ValueError if a batch does not fit."""
    rows = rank_row_counts(prepared_dir, "train", world_size)
    b = params.train.batch_size
    if min(rows) < b:
        raise ValueError(
            f"train.batch_size = {b} is larger than the data each of the {world_size} worker(s) holds "
            f"(smallest share: {min(rows)} images of {sum(rows)}); lower train.batch_size or scaling.num_workers"
        )
    spe = min(rows) // b
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


def train_gan(params: Params, prepared_dir: Path, worker: Worker, callbacks: Callbacks, resume: dict | None = None) -> dict:
    tc = params.train
    torch.set_num_threads(tc.num_threads or params.scaling.cpus_per_worker)
    manifest = read_manifest(prepared_dir)
    image_shape = tuple(manifest["image_shape"])
    steps = plan(params, prepared_dir, worker.world_size)
    dev = worker.device

    _seed_all(params.seed)  # identical initial weights on every rank
    g, d = build_gan(params.model, image_shape)
    g, d = g.to(dev), d.to(dev)
    opt_g = torch.optim.Adam(g.parameters(), lr=tc.lr_g, betas=(tc.beta1, tc.beta2))
    opt_d = torch.optim.Adam(d.parameters(), lr=tc.lr_d, betas=(tc.beta1, tc.beta2))
    start = 0
    if resume is not None:
        ckpt.restore(resume, g=g, d=d, opt_g=opt_g, opt_d=opt_d)
        start = int(resume["step"])
    distributed = worker.world_size > 1 and dist.is_available() and dist.is_initialized()
    if distributed:
        # G and D wrapped separately; no buffer sync in forward because D runs several forwards
        # per step and BatchNorm buffers would otherwise be re-broadcast between them.
        ids = [dev.index] if dev.type == "cuda" else None
        g = DDP(g, device_ids=ids, forward_sync_buffers=False)
        d = DDP(d, device_ids=ids, forward_sync_buffers=False)
    d_local = getattr(d, "module", d)  # G step: no D gradient all-reduce needed

    images_u8, _ = load_rank_share(prepared_dir, "train", worker.rank, worker.world_size)
    data = torch.from_numpy(images_u8)  # uint8 stays uint8 in memory; scaled per batch
    objective = OBJECTIVES.get(tc.objective)
    noise = torch.Generator(device="cpu")
    b, zdim = tc.batch_size, params.model.latent_dim
    fixed_z = torch.randn(tc.sample_grid, zdim, generator=torch.Generator().manual_seed(params.seed))
    meta = {"model": params.model.model_dump(mode="json"), "image_shape": list(image_shape),
            "class_names": manifest["class_names"], "dataset": manifest["dataset"],
            "data_hash": manifest["content_hash"], "objective": tc.objective}

    def state_at(step: int) -> dict | None:
        if worker.rank != 0:
            return None
        return ckpt.capture(step=step, epoch=step // steps.steps_per_epoch, g=g, d=d, opt_g=opt_g, opt_d=opt_d, meta=meta)

    sums = torch.zeros(4, dtype=torch.float64)
    window_start, window_steps = time.perf_counter(), 0
    last: dict[str, float] = {}
    order = None
    for step in range(start, steps.total_steps):
        epoch, k = divmod(step, steps.steps_per_epoch)
        if order is None or k == 0:
            order = torch.randperm(len(data), generator=torch.Generator().manual_seed(_stream_seed(params.seed, 1, worker.rank, epoch)))
        real = data[order[k * b : (k + 1) * b]].to(dev, non_blocking=True).float().div_(127.5).sub_(1.0)
        noise.manual_seed(_stream_seed(params.seed, 2, worker.rank, step))
        z = torch.randn(b, zdim, generator=noise).to(dev, non_blocking=True)

        g.train(), d.train()
        fake = g(z)
        # D step: real and fake in separate forwards, so D's BatchNorm never mixes their statistics
        # (mixed batches let D separate them by batch stats and starve G). Safe under DDP because
        # buffers are not synced in forward (forward_sync_buffers=False) between the two forwards.
        l_real, l_fake = d(real), d(fake.detach())
        d_loss = objective.d_loss(l_real, l_fake)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        # G step through the updated D (its local copy; D's grads are discarded next step).
        g_loss = objective.g_loss(d_local(fake))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()

        stats = torch.stack([d_loss.detach(), g_loss.detach(), objective.belief(l_real.detach()).mean(),
                             objective.belief(l_fake.detach()).mean()]).double().cpu()
        if distributed:
            dist.all_reduce(stats)  # every rank sees the same numbers, so all stop at the same step
            stats /= worker.world_size
        done = step + 1
        if not torch.isfinite(stats).all():
            raise NonFiniteLossError(done, dict(zip(("d_loss", "g_loss", "d_real", "d_fake"), stats.tolist())))
        sums += stats
        window_steps += 1

        if done % tc.log_every == 0 or done == steps.total_steps:
            elapsed = time.perf_counter() - window_start
            mean = (sums / window_steps).tolist()
            last = {"d_loss": mean[0], "g_loss": mean[1], "d_real": mean[2], "d_fake": mean[3],
                    "images_per_s": window_steps * b * worker.world_size / elapsed, "epoch": epoch + (k + 1) / steps.steps_per_epoch}
            if worker.rank == 0:
                callbacks.log(done, last)
            sums.zero_()
            window_steps = 0
        if worker.rank == 0 and (k + 1 == steps.steps_per_epoch or done == steps.total_steps):
            callbacks.samples(done, epoch + 1, grid(sample(g, fixed_z, dev)))
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
