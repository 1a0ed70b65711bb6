"""Training state as tensors and plain data only, so every load is `weights_only=True`.

Integrity: `save` records the SHA-256 and size of `state.pt` in `state.sha256.json`, written after
the state file (its presence means the state is complete); `load` checks them before unpickling
and refuses a truncated or modified file with a `CheckpointIntegrityError`. A checkpoint without
the record (written before these checks) still loads, with an `UnverifiedCheckpointWarning`.
The exported generator records its weights' hash in generator.json, checked by `load_generator`."""
from __future__ import annotations

import json
import pickle
import random
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from components.atomic import atomic_dir, atomic_write
from components.hashing import file_digest

STATE_FILE = "state.pt"
INTEGRITY_FILE = "state.sha256.json"  # {"file", "sha256", "size"} of STATE_FILE, written after it
FORMAT_VERSION = 1


class CheckpointIntegrityError(ValueError):
    """A checkpoint or exported model whose bytes are not the ones written (truncated, modified, missing)."""


class UnverifiedCheckpointWarning(UserWarning):
    """A checkpoint or exported model written before hashes were recorded: loaded without a check."""


def check_file(path: Path, sha256: str, size: int, *, recorded_in: Path, remedy: str) -> None:
    """Raise CheckpointIntegrityError unless `path` has exactly the recorded size and hash."""
    if not path.is_file():
        raise CheckpointIntegrityError(f"{path} is missing, but {recorded_in} records it "
                                       f"({size} bytes, sha256 {sha256}); {remedy}")
    actual, actual_size = file_digest(path)
    if actual != sha256 or actual_size != size:
        what = ("truncated" if actual_size < size else "longer than written") if actual_size != size else "modified"
        raise CheckpointIntegrityError(
            f"{path} is corrupt ({what}): expected {size} bytes with sha256 {sha256} (recorded in {recorded_in}), "
            f"found {actual_size} bytes with sha256 {actual}; {remedy}")


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
    """`state.pt`, then its hash record: a folder with the record holds a complete state."""
    directory = Path(directory)
    path = directory / STATE_FILE
    torch.save(state, path)
    sha256, size = file_digest(path)  # of the bytes on disk, i.e. what `load` will read
    atomic_write(directory / INTEGRITY_FILE, json.dumps({"file": STATE_FILE, "sha256": sha256, "size": size}) + "\n")
    return path


def _remedy(directory: Path) -> str:
    return (f"delete the checkpoint folder {directory} so that resume starts from the previous checkpoint "
            "(or delete the run's checkpoint folder to start over)")


def verify(directory: str | Path) -> bool:
    """Check a checkpoint folder's state file against its hash record without unpickling it.
    True: verified; False: no record (written before hashes were kept; nothing to check against).
    Raises CheckpointIntegrityError (truncated, modified, missing state, unreadable record) or
    FileNotFoundError (neither a state file nor a record: not a checkpoint)."""
    directory = Path(directory)
    path, record_path = directory / STATE_FILE, directory / INTEGRITY_FILE
    if not record_path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint state at {path}")
        return False
    try:
        record = json.loads(record_path.read_text())
        sha256, size = str(record["sha256"]), int(record["size"])
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointIntegrityError(f"{record_path} (the hash record of {path}) is unreadable ({e}); "
                                       f"{_remedy(directory)}") from None
    check_file(path, sha256, size, recorded_in=record_path, remedy=_remedy(directory))
    return True


def is_whole(directory: str | Path) -> bool:
    """True when the folder's state matches its hash record; False when cut short, damaged, without a
    record, or not a checkpoint at all."""
    try:
        return verify(directory)
    except (CheckpointIntegrityError, FileNotFoundError):
        return False


def load(directory: str | Path) -> dict:
    """The training state of a checkpoint folder, after `verify`. A folder without a hash record
    (an earlier genpipe) is loaded with an UnverifiedCheckpointWarning; if it cannot be read it is
    reported as corrupt."""
    directory = Path(directory)
    path = directory / STATE_FILE
    if verify(directory):
        return torch.load(path, map_location="cpu", weights_only=True)
    warnings.warn(f"{path} has no hash record ({INTEGRITY_FILE}; written before genpipe kept one): "
                  "loading it unverified", UnverifiedCheckpointWarning, stacklevel=2)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        if isinstance(e, (FileNotFoundError, PermissionError)) or (
                isinstance(e, pickle.UnpicklingError) and "weights_only" in str(e).lower()):
            raise  # not a damaged file: absent, not ours to read, or holding what a weights-only load refuses
        first_line = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointIntegrityError(f"{path} cannot be read ({type(e).__name__}: {first_line}); it has no hash "
                                       f"record to check, so it is likely truncated or damaged; {_remedy(directory)}") from None


def is_whole_at(folder) -> bool:
    """`is_whole` for a checkpoint folder anywhere (a local path or a storage URI: read from a local copy)."""
    from components.storage import location

    with location(folder).local_copy() as d:
        return is_whole(d)


def load_at(folder) -> dict:
    """`load` for a checkpoint folder anywhere (a local path or a storage URI)."""
    from components.storage import location

    with location(folder).local_copy() as d:
        return load(d)


def newest_whole(run_dir):
    """The newest `checkpoint_*` folder of a run (local path or storage URI) whose state matches its hash
    record, as a `components.storage.Location`; None if there is none. Names sort as they were written
    (by step without Ray, by time with it); one cut short or damaged gives way to an older one."""
    from components.storage import location

    # Ray keeps checkpoint_manager_snapshot.json beside the folders: a file, not a checkpoint
    return next((f for f in reversed(location(run_dir).children("checkpoint_")) if f.is_dir() and is_whole_at(f)), None)


class LocalCheckpoints:
    """Checkpoints of a run without Ray: `<root>/checkpoint_<step>/state.pt`, newest `keep` kept."""

    def __init__(self, root: str | Path, keep: int):
        self.root = Path(root)
        self.keep = keep

    def _all(self) -> list[Path]:
        return sorted(self.root.glob("checkpoint_*")) if self.root.is_dir() else []

    def latest(self) -> Path | None:
        """The newest checkpoint whose state matches its hash record. A corrupt newer one is skipped,
        saying so (it stays on disk until a save at its step replaces it); if every checkpoint is
        corrupt this raises rather than silently starting over."""
        found = self._all()
        skipped = []
        for path in reversed(found):
            try:
                verify(path)
            except (CheckpointIntegrityError, FileNotFoundError) as e:
                print(f"checkpoint: skipping {path.name}, resuming from an older one if any: {e}", flush=True)
                skipped.append(path.name)
                continue
            return path
        if skipped:
            raise CheckpointIntegrityError(f"every checkpoint in {self.root} is corrupt ({', '.join(skipped)}); "
                                           f"delete {self.root} to start the run over")
        return None

    def save(self, state: dict) -> Path:
        target = self.root / f"checkpoint_{state['step']:09d}"
        with atomic_dir(target) as tmp:
            save(state, tmp)
        for stale in self._all()[: -self.keep]:
            shutil.rmtree(stale, ignore_errors=True)
        return target


def load_checkpoint(checkpoint) -> dict:
    """The training state of a Ray Train / Tune `Checkpoint`, wherever it is stored (local, NFS, S3)."""
    with checkpoint.as_directory() as d:
        return load(d)


GENERATOR_WEIGHTS = "generator.safetensors"
GENERATOR_SPEC = "generator.json"
WEIGHTS_KEY = "weights"  # in generator.json: {"file", "sha256", "size"} of the safetensors file


def write_generator(state: dict, out_dir: str | Path) -> Path:
    """Final generator as safetensors + a JSON spec (model config, image shape) — enough to rebuild it.
    The EMA weights when the run kept them (what samples and evaluation should use).
    Writes into `out_dir` as is: wrap in `atomic_dir` for an all-or-nothing output."""
    out_dir = Path(out_dir)
    weights = {k: v.contiguous() for k, v in state.get("generator_ema", state["generator"]).items()}
    save_file(weights, str(out_dir / GENERATOR_WEIGHTS))
    sha256, size = file_digest(out_dir / GENERATOR_WEIGHTS)
    spec = {"step": state["step"], "epoch": state["epoch"], **state["meta"],
            WEIGHTS_KEY: {"file": GENERATOR_WEIGHTS, "sha256": sha256, "size": size}}
    (out_dir / GENERATOR_SPEC).write_text(json.dumps(spec, indent=2, sort_keys=True))
    return out_dir


def _build_generator(spec: dict, weights: dict) -> torch.nn.Module:
    from components.families import family_of_spec

    g = family_of_spec(spec).build_generator(spec)
    g.load_state_dict(weights)
    return g.eval()


def generator_from_state(state: dict) -> torch.nn.Module:
    """The generator of an in-memory training state (eval mode): EMA weights when kept, as exported."""
    return _build_generator(state["meta"], state.get("generator_ema", state["generator"]))


def verify_generator(model_dir: str | Path) -> dict:
    """The spec of an exported generator folder, after checking its weights against the hash the spec
    records (CheckpointIntegrityError if they differ or are missing). An export without a recorded
    hash (an earlier genpipe) passes with an UnverifiedCheckpointWarning."""
    model_dir = Path(model_dir)
    spec_path, weights_path = model_dir / GENERATOR_SPEC, model_dir / GENERATOR_WEIGHTS
    spec = json.loads(spec_path.read_text())
    record = spec.get(WEIGHTS_KEY)
    if record is None:
        warnings.warn(f"{spec_path} records no hash of {GENERATOR_WEIGHTS} (exported before genpipe kept one): "
                      "loading the weights unverified", UnverifiedCheckpointWarning, stacklevel=2)
        return spec
    check_file(weights_path, record["sha256"], int(record["size"]), recorded_in=spec_path,
               remedy="export the generator again (`genpipe train` rewrites it from the run's final checkpoint)")
    return spec


def load_generator(model_dir: str | Path):
    """Rebuild the exported generator (eval mode) from its folder, weights verified; no pickle involved."""
    model_dir = Path(model_dir)
    spec = verify_generator(model_dir)
    return _build_generator(spec, load_file(str(model_dir / GENERATOR_WEIGHTS))), spec
