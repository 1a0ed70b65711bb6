"""Committed numbers come from committed code: every dvc.lock records the hashes of the files and params
in this tree. A change to a stage's code or params without a `dvc repro` (and a commit of its lock and
reports) fails here, naming the stage and the file."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DVC = str(Path(sys.executable).with_name("dvc"))
PIPELINES = ("dvc.yaml", "benchmarks/dvc.yaml")


def _outputs(repo: Path) -> set[str]:
    """Paths some stage writes: as deps they are checked by their own stage's lock, and a fresh clone
    does not have them."""
    outs = set()
    for dvcfile in PIPELINES:
        for stage in yaml.safe_load((repo / dvcfile).read_text())["stages"].values():
            for kind in ("outs", "metrics", "plots"):
                for entry in stage.get(kind, []):
                    path = next(iter(entry)) if isinstance(entry, dict) else entry
                    outs.add(path.split("${")[0].rstrip("/"))
    return outs


def _stale(dvcfile: str, repo: Path = REPO) -> dict[str, dict]:
    out = subprocess.run([DVC, "status", "--json", dvcfile], cwd=repo, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    outputs = _outputs(repo)
    stale = {}
    for stage, changes in json.loads(out.stdout or "{}").items():
        for change in changes:
            if not isinstance(change, dict):  # "changed command" and the like: always stale
                stale.setdefault(stage, {})[str(change)] = "changed"
                continue
            for path, what in change.get("changed deps", {}).items():
                if not any(path == o or path.startswith(o + "/") for o in outputs):
                    stale.setdefault(stage, {})[path] = what
    return stale


@pytest.mark.parametrize("dvcfile", PIPELINES)
def test_the_committed_lock_records_this_tree(dvcfile):
    stale = _stale(dvcfile)
    assert not stale, (f"{dvcfile}: the lock does not record the committed code/params of "
                       + "; ".join(f"{stage}: {', '.join(f'{p} ({w})' for p, w in deps.items())}"
                                   for stage, deps in stale.items())
                       + f". Run `dvc repro {dvcfile}` and commit its dvc.lock and reports with the code.")


def test_the_lock_check_sees_an_edited_dependency(tmp_path):
    """The check can fail: a clone with one edited stage file is reported stale, naming the file."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=300)
    target = clone / "pipelines" / "promote.py"
    target.write_text(target.read_text() + "\n# an edit without dvc repro\n")
    assert _stale("dvc.yaml", clone)["promote"] == {"pipelines/promote.py": "modified"}


def test_a_leftover_checkpoint_folder_never_marks_train_modified(tmp_path):
    """data/checkpoints is Ray's working storage, not a DVC output: an empty run folder an interrupted
    run (or another dataset's run) left there is not a change of the train stage."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=300)
    (clone / "data" / "checkpoints" / "dcgan-mnist5k-interrupted").mkdir(parents=True)
    out = subprocess.run([DVC, "status", "--json", "dvc.yaml"], cwd=clone, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "data/checkpoints" not in out.stdout, out.stdout
