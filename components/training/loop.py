"""The training loop every model family shares: data, steps, logging, samples, checkpoints. What a
step does is the family's `Task` (gan_loop.GanTask, diffusion_step.DiffusionTask). One readable
function, identical with or without Ray.

Randomness that must survive a resume is derived from (seed, rank, step/epoch) rather than
carried in RNG state, so a resumed run draws exactly the batches and noise an uninterrupted
run would have drawn, on every rank."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Protocol

import numpy as np
import torch
import torch.distributed as dist

from components.config import Params
from components.data.kinds import kind_of
from components.data.shards import rank_row_counts, read_manifest
from components.training import batches, checkpoint as ckpt
from components.training import fast

Tensor = torch.Tensor


class RealBatch(NamedTuple):
    x: Tensor  # samples in model space ([-1, 1] images; points as stored); translation: the targets
    labels: Tensor
    inputs: Tensor | None = None  # translation pairs: what x is translated from, in model space
    input_labels: Tensor | None = None


Batch = Callable[[int], RealBatch]  # i -> the i-th real batch of this step
PREVIEW_ROWS = 16  # translation previews: input | output | target rows


def first_examples(shown: RealBatch | None, real: RealBatch) -> RealBatch:
    """A translation preview's examples: the first rows of the first batch this process trained on, kept
    on the CPU (`shown` once kept, else taken from `real`)."""
    if shown is not None:
        return shown
    return RealBatch(*(None if t is None else t[:PREVIEW_ROWS].cpu() for t in real))


class NonFiniteLossError(RuntimeError):
    """`step`: the first step whose losses were not finite; `window`: the steps checked together
    (losses stay on the device between logging steps, so they are checked there)."""

    def __init__(self, step: int, metrics: dict[str, float], window: tuple[int, int] | None = None):
        self.step, self.window = step, window
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        where = "" if window is None else f"; found at step {window[1]} checking steps {window[0]}–{window[1]}"
        super().__init__(f"non-finite loss at step {step} ({shown}{where}); lower the learning rates or check the data")


class Callbacks(Protocol):
    """What the launcher does with progress. `log`/`samples` are called on rank 0 only;
    `checkpoint` on every rank (state is None except on rank 0) so collective reporters stay in step.
    An optional `ready(step)` is called once, just before the first step (a sweep times its start-up)."""

    def log(self, step: int, metrics: dict[str, float]) -> None: ...
    def samples(self, step: int, epoch: int, image: np.ndarray | str, suffix: str) -> None: ...  # suffix: the file's (data kind's)
    def checkpoint(self, step: int, state: dict | None, metrics: dict[str, float]) -> None: ...


class Task(Protocol):
    """One model family's training step and state (built, restored and DDP-wrapped by its constructor).
    The family names its Task (components/families/: `task`)."""

    stats: tuple[str, ...]  # names of the numbers `step` returns, averaged over ranks and log windows
    batches_per_step: int  # real batches one step consumes
    nets: dict[str, torch.nn.Module]  # checkpointed as state["<name>"]; "generator" is what is exported
    optimizers: dict[str, torch.optim.Optimizer]
    ema: object | None
    meta: dict  # checkpoint meta: what rebuilds the exported model (spec_meta)

    def step(self, step: int, total_steps: int, batch: Batch) -> Tensor: ...
    preview_cols: int | None  # images per row of the preview grid (None: near-square)
    # Optional `measured(step) -> tuple[str, ...]`: the stats that step measures, for a task whose steps
    # belong to phases (SeqGAN); each is averaged over the steps that measured it and logged only when some
    # did. Without it every step measures every stat.

    def preview(self) -> Tensor: ...  # images (N, C, H, W) or points


@dataclass(frozen=True)
class Worker:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")


@dataclass(frozen=True)
class Plan:
    steps_per_epoch: int
    total_steps: int
    rank_rows: tuple[int, ...] = ()  # each rank's train rows (footers read once: on S3 every read is a request)


def rows_per_batch(tc) -> int:
    """Real samples in one batch: batch_size, times train.pack for PacGAN, whose D judges batch_size packed
    inputs of `pack` samples each (G then draws as many), so that D sees as many inputs as an unpacked D."""
    return tc.batch_size * tc.pack


def plan(params: Params, prepared_dir: Path, world_size: int) -> Plan:
    """A step consumes batches_per_step batches (a GAN: d_steps_per_g_step D updates, each on its own
    batch of rows_per_batch rows). An epoch is one pass over the data, so with train.pack = m it has m
    times fewer steps: give max_steps to compare packed and unpacked runs at equal updates. Steps per epoch are equal on every rank (DDP needs the same number of collectives): the
    smallest rank share decides. The family decides how many steps a run takes. Raises ValueError if the
    family does not train on this kind of data or a step's data does not fit."""
    params.family.check_data(read_manifest(prepared_dir), str(prepared_dir))
    rows = rank_row_counts(prepared_dir, "train", world_size)
    tc = params.train
    per_step = rows_per_batch(tc) * tc.d_steps_per_g_step
    if min(rows) < per_step:
        what = f"train.batch_size = {tc.batch_size}" + (f" × train.pack = {tc.pack}" if tc.pack > 1 else "") + (
            f" × train.d_steps_per_g_step = {tc.d_steps_per_g_step}" if tc.d_steps_per_g_step > 1 else "")
        # Rows are dealt to workers in whole row groups: with enough rows overall, the groups are the cause.
        fix = ("lower data.row_group_rows and rerun prepare (rows go to workers in whole row groups, and this "
               "split's groups are too large to share evenly)" if sum(rows) >= per_step * world_size
               else "lower train.batch_size or scaling.num_workers")
        raise ValueError(
            f"{what} is larger than the data each of the "
            f"{world_size} worker(s) holds (smallest share: {min(rows)} samples of {sum(rows)}); {fix}"
        )
    spe = min(rows) // per_step
    return Plan(steps_per_epoch=spe, total_steps=params.family.total_steps(params, spe), rank_rows=tuple(rows))


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def stream_seed(seed: int, *parts: int) -> int:
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0])


def to_model_space(batch: Tensor) -> Tensor:
    """Stored samples → what G produces: uint8 images to [-1, 1]; points are stored as they are; token
    ids (int32) become int64 indices."""
    if batch.dtype == torch.uint8:
        return batch.float().div_(127.5).sub_(1.0)
    return batch.float() if batch.is_floating_point() else batch.long()


def set_learning_rates(cfg, step: int, total_steps: int, *pairs: tuple[torch.optim.Optimizer, float]) -> None:
    """train.lr_schedule as a pure function of the step, so a resumed run continues the same curve."""
    factor = 1.0 if cfg.lr_schedule == "constant" else 1.0 - step / total_steps
    for opt, base in pairs:
        for group in opt.param_groups:
            group["lr"] = base * factor


def build_task(params: Params, manifest: dict, worker: Worker, resume: dict | None,
               prepared_dir: Path | None = None) -> Task:
    """The family's Task; one whose class sets `reads_train_split` (dcgan with model.clusters) also gets the
    prepared folder, to fit what it derives from the whole train split."""
    import importlib

    seed_all(params.seed)  # identical initial weights on every rank
    distributed = worker.world_size > 1 and dist.is_available() and dist.is_initialized()
    # the family names its Task; imported when used, so a GAN worker never imports diffusers
    module, name = params.family.task
    cls = getattr(importlib.import_module(module), name)
    if getattr(cls, "reads_train_split", False):
        return cls(params, manifest, worker, resume, distributed, prepared_dir=prepared_dir)
    return cls(params, manifest, worker, resume, distributed)


def ddp(module: torch.nn.Module, device: torch.device, distributed: bool, **kwargs) -> torch.nn.Module:
    """`module` wrapped for DistributedDataParallel when the run is distributed, else as it is."""
    if not distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(module, device_ids=[device.index] if device.type == "cuda" else None, **kwargs)


def spec_meta(params: Params, manifest: dict, **extra) -> dict:
    """What an exported model needs to be rebuilt (checkpoint meta → generator.json)."""
    meta = {"model": params.model.model_dump(mode="json"), "image_shape": list(manifest["image_shape"]),
            "class_names": manifest["class_names"], "dataset": manifest["dataset"],
            "data_hash": manifest["content_hash"], "ema": bool(params.train.ema_decay), **params.family.spec(params),
            **extra}
    if "input_shape" in manifest:
        meta.update(input_shape=list(manifest["input_shape"]), pairing=manifest["pairing"])
    return meta


def train_model(params: Params, prepared_dir: Path, worker: Worker, callbacks: Callbacks,
                resume: dict | None = None) -> dict:
    tc = params.train
    torch.set_num_threads(tc.num_threads or params.scaling.cpus_per_worker)
    manifest = read_manifest(prepared_dir)
    steps = plan(params, prepared_dir, worker.world_size)
    dev = worker.device
    task = build_task(params, manifest, worker, resume, prepared_dir)
    start = int(resume["step"]) if resume is not None else 0
    meta = task.meta
    path = fast.FastPath.resolve(tc, dev)
    distributed = worker.world_size > 1 and dist.is_available() and dist.is_initialized()

    kind = kind_of(manifest)
    source = batches.pick(params, prepared_dir, manifest, worker, steps.rank_rows[worker.rank],
                          on_device=lambda nbytes: fast.device_data(tc, dev, nbytes), to_device=path.to_device)
    b, k_b = rows_per_batch(tc), task.batches_per_step

    def state_at(step: int) -> dict | None:
        if worker.rank != 0:
            return None
        return ckpt.capture(step=step, epoch=step // steps.steps_per_epoch, nets=task.nets,
                            optimizers=task.optimizers, meta=meta, ema=task.ema)

    stats_sum = torch.zeros(len(task.stats), dtype=torch.float64)
    measured = getattr(task, "measured", None)
    units = kind.units_per_row(manifest)  # images, points or tokens per row, for the rate metric
    column = {name: i for i, name in enumerate(task.stats)}
    counts = [0] * len(task.stats)  # this window's steps that measured each stat
    pending: list[Tensor] = []  # this window's per-step stats, still on the device (no host sync per step)
    window_start, window_steps = time.perf_counter(), 0
    last: dict[str, float] = {}

    def check(done: int) -> None:
        """The loop's one host sync: the pending stats to the host, averaged over ranks, checked finite."""
        rows = torch.stack(pending).double()
        if distributed:
            dist.all_reduce(rows)  # on the device (NCCL); every rank sees the same numbers and stops alike
            rows /= worker.world_size
        rows = rows.cpu()
        first = done - len(pending) + 1
        bad = (~torch.isfinite(rows).all(1)).nonzero()
        if len(bad):
            i = int(bad[0])
            raise NonFiniteLossError(first + i, dict(zip(task.stats, rows[i].tolist())), window=(first, done))
        for row in rows:  # summed step by step, as before: the same float64 numbers
            stats_sum.add_(row)
        pending.clear()

    if (ready := getattr(callbacks, "ready", None)) is not None:
        ready(start)
    for step in range(start, steps.total_steps):
        epoch, k = divmod(step, steps.steps_per_epoch)

        def batch(i: int) -> RealBatch:
            n = k * k_b + i  # this epoch's n-th batch
            x, labels, *pair = source.rows(epoch, n * b, (n + 1) * b, stream_seed)
            real = RealBatch(path.images(to_model_space(x)), labels)
            if not pair:
                return real
            return real._replace(inputs=path.images(to_model_space(pair[0])), input_labels=pair[1])

        pending.append(task.step(step, steps.total_steps, batch).detach())
        if measured is not None:  # a task whose phases measure different stats (seqgan)
            for name in measured(step):
                counts[column[name]] += 1
        done = step + 1
        window_steps += 1
        logging = done % tc.log_every == 0 or done == steps.total_steps
        if logging or done % tc.checkpoint_every == 0:  # never checkpoint unchecked weights
            check(done)

        if logging:
            elapsed = time.perf_counter() - window_start
            seen = counts if measured is not None else [window_steps] * len(task.stats)
            last = {name: s / n for name, s, n in zip(task.stats, stats_sum.tolist(), seen) if n}
            rows = window_steps * b * k_b * worker.world_size
            last[kind.rate_metric] = rows * units / elapsed
            last["epoch"] = epoch + (k + 1) / steps.steps_per_epoch
            if worker.rank == 0:
                callbacks.log(done, last)
            stats_sum.zero_()
            counts = [0] * len(task.stats)
            window_steps = 0
        end_of_epoch = k + 1 == steps.steps_per_epoch
        if worker.rank == 0 and ((end_of_epoch and (epoch + 1) % tc.sample_every == 0) or done == steps.total_steps):
            callbacks.samples(done, epoch + 1, kind.preview(task.preview(), task.preview_cols), kind.preview_suffix)
        if done % tc.checkpoint_every == 0 or done == steps.total_steps:
            callbacks.checkpoint(done, state_at(done), last)
        if window_steps == 0:
            window_start = time.perf_counter()  # throughput excludes logging, sampling, checkpoints
    return {"step": steps.total_steps, "started_at": start, **last}


@torch.no_grad()
def sample(g: torch.nn.Module, device: torch.device, *inputs: Tensor) -> Tensor:
    """A generator's output for its inputs (latents and labels, or images to translate), in eval mode
    (BatchNorm running statistics)."""
    g_local = getattr(g, "module", g)
    was_training = g_local.training
    g_local.eval()
    out = g_local(*(x.to(device) for x in inputs)).cpu()
    g_local.train(was_training)
    return out
