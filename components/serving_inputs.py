"""What a served model accepts: each pyfunc input checked by name before any work is done, and the bound
on how much work one request may ask for.

A refused request raises `RequestError`; the pyfunc turns it into MLflow's INVALID_PARAMETER_VALUE, which
the scoring server answers with HTTP 400 and this message (no traceback). Shipped with the logged model."""
from __future__ import annotations

import os
import reprlib
from typing import Any

import numpy as np

# Samples (or translated images) one request may ask for, unless the model was logged with another
# `serving.max_samples`; GENPIPE_MAX_SAMPLES, set where the model is served, overrides both. Each request
# runs to completion in a server thread, so an unbounded one holds memory and blocks shutdown.
DEFAULT_MAX_SAMPLES = 1024
MAX_SAMPLES_ENV = "GENPIPE_MAX_SAMPLES"
MAX_SEED = 2**63 - 1
_repr = reprlib.Repr()  # keyword arguments only from Python 3.12
_repr.maxstring, _repr.maxlist, _repr.maxother = 40, 6, 40
short = _repr.repr  # a value as a message shows it: long strings and lists cut


class RequestError(ValueError):
    """A request the served model refuses; the message names the input and what is allowed."""


def max_samples(logged: int | None) -> int:
    """The per-request limit: the serving environment's override, else the logged value, else the default."""
    env = os.environ.get(MAX_SAMPLES_ENV)
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"{MAX_SAMPLES_ENV} = {env!r}: expected a positive integer")
        return int(env)
    return int(logged) if logged else DEFAULT_MAX_SAMPLES


def limit_note(limit: int) -> str:
    return (f"; this model serves at most {limit} per request (serving.max_samples when it was logged, "
            f"{MAX_SAMPLES_ENV} where it is served)")


def _integral(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, (float, np.floating)) and float(value).is_integer()


def integer(inputs: dict, key: str, default: int | None, lo: int, hi: int, note: str = "") -> int | None:
    """inputs[key] as an int in [lo, hi], or `default` when absent."""
    value = inputs.get(key)
    if value is None:
        return default
    if not _integral(value):
        raise RequestError(f"{key}: expected an integer, got {short(value)}")
    if not lo <= int(value) <= hi:
        raise RequestError(f"{key} = {int(value)} is outside {lo}..{hi}{note}")
    return int(value)


def number(inputs: dict, key: str) -> float | None:
    value = inputs.get(key)
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise RequestError(f"{key}: expected a number, got {short(value)}")
    return float(value)


def flag(inputs: dict, key: str) -> bool:
    value = inputs.get(key)
    if value is None:
        return False
    if isinstance(value, (bool, np.bool_)) or (_integral(value) and int(value) in (0, 1)):
        return bool(value)
    raise RequestError(f"{key}: expected true or false, got {short(value)}")


def labels(value: Any, n: int | None, num_classes: int, limit: int):
    """Requested class labels as an int64 tensor of length n (one label repeats), None when absent."""
    import torch

    if value is None:
        return None
    if num_classes == 0:
        raise RequestError("labels: this model is unconditional; leave labels out")
    try:
        arr = np.asarray(value)
    except ValueError:  # ragged nesting
        raise RequestError(f"labels: expected one class index or a list of them, got {short(value)}") from None
    arr = arr.reshape(-1)
    if arr.dtype == object and all(_integral(v) for v in arr):
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iuf" or (arr.dtype.kind == "f" and not np.all(np.mod(arr, 1) == 0)):
        raise RequestError(f"labels: expected class indices (integers), got {short(value)}")
    arr = arr.astype(np.int64)
    if not 1 <= len(arr) <= limit:
        raise RequestError(f"labels: {len(arr)} labels; give 1 to {limit}" + limit_note(limit))
    outside = arr[(arr < 0) | (arr >= num_classes)]
    if outside.size:
        raise RequestError(f"labels: {short(outside.tolist())} outside this model's classes 0..{num_classes - 1}")
    if len(arr) == 1 and n is not None:
        arr = np.repeat(arr, n)
    elif n is not None and len(arr) != n:
        raise RequestError(f"labels: {len(arr)} labels for num_samples = {n}; give one label, or one per sample")
    return torch.from_numpy(arr)
