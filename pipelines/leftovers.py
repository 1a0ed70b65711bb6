"""Checkpoint folders that Ray never recorded, removed by the next run of the same training or sweep.

A checkpoint is uploaded to storage first and recorded afterwards (Ray Train's controller, Tune's
driver). A failure between the two leaves a folder no record names: Ray's `num_to_keep` never deletes
it, so without this it stays for good. A whole unrecorded folder newer than every recorded one is what a
restarted training resumes from (pipelines/ray_worker.py `_resume_state`), so it is kept until a newer
checkpoint is recorded."""
from __future__ import annotations

import json

from components.storage import Location, location
from components.training import checkpoint as ckpt

TRAIN_RECORD = "checkpoint_manager_snapshot.json"  # Ray Train V2's record of a run's checkpoints (plain JSON)


def _checkpoint_dirs(run_dir) -> list[Location]:
    """checkpoint_* folders (not Ray's checkpoint_manager_snapshot.json beside them), oldest first; the run
    folder is a local path or a storage URI (object stores list "folders" by prefix)."""
    return [f for f in location(run_dir).children("checkpoint_") if f.is_dir()]


def _remove(folders: list[Location], what: str) -> list[Location]:
    for folder in folders:
        folder.delete_dir()
        print(f"{what}: removed {folder}, a checkpoint Ray never recorded (a failure right after its upload)",
              flush=True)
    return folders


def prune_train_run(run_dir) -> list[Location]:
    """A Ray Train run's unrecorded checkpoint folders, bar a whole one newer than every recorded one.
    Ray names them by time, so names sort as they were written. No record yet: nothing is known, nothing goes."""
    record = location(run_dir) / TRAIN_RECORD
    if not record.is_file():
        return []
    state = json.loads(record.read_text())
    recorded = {r["checkpoint_dir_name"] for r in state.get("checkpoint_results", [])}
    if state.get("latest_checkpoint_result"):
        recorded.add(state["latest_checkpoint_result"]["checkpoint_dir_name"])
    newest = max(recorded, default="")
    orphans = [f for f in _checkpoint_dirs(run_dir) if f.name not in recorded and not (f.name > newest and ckpt.is_whole_at(f))]
    return _remove(orphans, "train")


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def prune_sweep(results) -> list[Location]:
    """Each finished trial's checkpoint folders that Tune does not hold (`results`: Tune's ResultGrid; a
    result's path lies in its own filesystem, local or an object store)."""
    orphans = []
    for result in results:
        if not result.path:
            continue
        trial = Location(result.filesystem, result.path, result.path) if result.filesystem else location(result.path)
        if not trial.is_dir():
            continue
        kept = {_name(c.path) for c, _ in (result.best_checkpoints or [])}
        if result.checkpoint is not None:
            kept.add(_name(result.checkpoint.path))
        orphans += [f for f in _checkpoint_dirs(trial) if f.name not in kept]
    return _remove(orphans, "tune")
