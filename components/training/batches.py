"""Where a rank's real batches come from: its whole share held in memory (or on the device), or its share
streamed a window of row groups at a time, so a dataset larger than a worker's memory trains in bounded
memory. Both read the rank's own row groups (components/data/shards.py) from a local folder or a URI.

The rule (`pick`): data.stream = memory | streamed forces one; auto holds the share in memory when its
decoded size fits data.memory_budget_mb (default: a quarter of the node's physical memory), else streams.

Batches are a pure function of (seed, rank, epoch, batch index) in both, so a resumed run draws exactly
the batches an uninterrupted one would. In memory: one permutation of the share per epoch. Streamed: the
rank's row groups in a permuted order per epoch, cut into windows of data.stream_window_rows rows, each
window's rows permuted; batch n is rows [n·b, (n+1)·b) of that stream (a shuffle as good as the window)."""
from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torch

from components.data.kinds import kind_of
from components.data.shards import _column_array, rank_row_groups_with_rows, read_group, read_share

Tensor = torch.Tensor


def share_bytes(manifest: dict, rows: int) -> int:
    """Decoded bytes of `rows` samples (and their inputs, for pairs) with their labels."""
    kind = kind_of(manifest)
    itemsize = kind.schema.field(kind.column).type.value_type.bit_width // 8
    per_row = int(np.prod(manifest["image_shape"])) * itemsize + 8
    if "input_shape" in manifest:
        per_row += int(np.prod(manifest["input_shape"])) + 8
    return per_row * rows


def memory_budget_bytes(data_cfg) -> int:
    if data_cfg.memory_budget_mb is not None:
        return data_cfg.memory_budget_mb * 2**20
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def streamed(data_cfg, manifest: dict, rank_rows: int) -> bool:
    """The rule: forced by data.stream, else streamed when the share does not fit the memory budget."""
    if data_cfg.stream != "auto":
        return data_cfg.stream == "streamed"
    return share_bytes(manifest, rank_rows) > memory_budget_bytes(data_cfg)


class InMemory:
    """The rank's whole share, read once; each epoch a seeded permutation of it."""

    def __init__(self, prepared, worker, seed: int, on_device: Callable[[int], bool], to_device):
        share = read_share(prepared, "train", worker.rank, worker.world_size)
        tensors = [torch.from_numpy(a) for a in share if a is not None]  # uint8 images stay uint8 until batched
        if on_device(sum(t.nbytes for t in tensors)):  # batches are then gathered on the device
            tensors = [t.to(worker.device) for t in tensors]
        self.tensors, self.device, self.to_device = tensors, worker.device, to_device
        self.seed, self.rank, self.epoch, self.order = seed, worker.rank, None, None

    def rows(self, epoch: int, start: int, stop: int, stream_seed) -> list[Tensor]:
        if epoch != self.epoch:
            data = self.tensors[0]
            order = torch.randperm(len(data), generator=torch.Generator().manual_seed(stream_seed(self.seed, 1, self.rank, epoch)))
            self.order, self.epoch = order if data.device == order.device else self.to_device(order), epoch
        idx = self.order[start:stop]
        move = (lambda t: t) if self.tensors[0].device == self.device else self.to_device
        return [move(t[idx]) for t in self.tensors]


class Streamed:
    """The rank's row groups a window at a time: memory holds about one window (two while a batch spans a
    window's end), whatever the dataset's size."""

    def __init__(self, prepared, worker, seed: int, manifest: dict, window_rows: int, to_device):
        self.groups = rank_row_groups_with_rows(prepared, "train", worker.rank, worker.world_size)
        self.manifest, self.seed, self.rank, self.to_device = manifest, seed, worker.rank, to_device
        kind = kind_of(manifest)
        self.columns = [kind.column, "label", *(("input", "input_label") if "input_shape" in manifest else ())]
        rows = max(g[2] for g in self.groups) if self.groups else 1
        self.per_window = max(1, window_rows // rows)
        self.epoch, self.windows, self.loaded = None, [], {}  # loaded: window index → its arrays
        self.bytes_read = 0

    def _plan(self, epoch: int, stream_seed) -> None:
        order = np.random.default_rng(stream_seed(self.seed, 2, self.rank, epoch)).permutation(len(self.groups))
        cuts = [order[i:i + self.per_window] for i in range(0, len(order), self.per_window)]
        starts = np.cumsum([0] + [sum(self.groups[g][2] for g in cut) for cut in cuts])
        self.windows = [(int(starts[w]), int(starts[w + 1]), cut) for w, cut in enumerate(cuts)]
        self.epoch, self.loaded = epoch, {}

    def _window(self, w: int, stream_seed) -> list[np.ndarray]:
        if w not in self.loaded:
            parts = [read_group(self.groups[g][0], self.groups[g][1], self.columns) for g in self.windows[w][2]]
            self.bytes_read += sum(t.nbytes for t in parts)
            shape = {self.columns[0]: self.manifest["image_shape"], "input": self.manifest.get("input_shape")}
            arrays = []
            for c in self.columns:
                if c in shape:
                    arrays.append(np.concatenate([_column_array(t, c, shape[c], "stream") for t in parts]))
                else:
                    arrays.append(np.concatenate([t.column(c).to_numpy().astype(np.int64) for t in parts]))
            perm = np.random.default_rng(stream_seed(self.seed, 3, self.rank, self.epoch, w)).permutation(len(arrays[0]))
            self.loaded[w] = [a[perm] for a in arrays]
        return self.loaded[w]

    def rows(self, epoch: int, start: int, stop: int, stream_seed) -> list[Tensor]:
        if epoch != self.epoch:
            self._plan(epoch, stream_seed)
        pieces = []
        for w, (lo, hi, _) in enumerate(self.windows):
            if hi <= start or lo >= stop:
                continue
            arrays = self._window(w, stream_seed)
            pieces.append([a[max(start, lo) - lo: min(stop, hi) - lo] for a in arrays])
        for w in [w for w in self.loaded if self.windows[w][1] <= stop]:  # batches go forward: a window
            self.loaded.pop(w)  # whose rows are all served is not read again this epoch
        return [self.to_device(torch.from_numpy(np.concatenate(cols))) for cols in zip(*pieces)]


def pick(params, prepared, manifest: dict, worker, rank_rows: int, on_device, to_device):
    """InMemory or Streamed for this rank, by the rule in the module docstring."""
    if streamed(params.data, manifest, rank_rows):
        return Streamed(prepared, worker, params.seed, manifest, params.data.stream_window_rows, to_device)
    return InMemory(prepared, worker, params.seed, on_device, to_device)
