"""`dvc repro` in a temporary git repo on tiny params: every stage runs, a second repro runs none,
and changing a train param reruns train and what follows it, not prepare or the evaluator."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.e2e

TINY = {
    "data": {"source": "digits", "row_group_rows": 64},
    "model": {"latent_dim": 16, "g_channels": 16, "d_channels": 16},
    "train": {"epochs": 1, "max_steps": 4, "batch_size": 32, "log_every": 2, "checkpoint_every": 2},
    "scaling": {"num_workers": 2},
    "evaluator": {"epochs": 1},
    "evaluate": {"num_samples": 200},
}


def _sh(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    for name in ("components", "pipelines"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(REPO / name, root / name)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _sh(["git", "init", "-q"], root)
    _sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init"], root)
    _sh(["dvc", "init", "-q"], root)
    _sh(["dvc", "config", "core.analytics", "false"], root)
    _sh(["dvc", "config", "core.check_update", "false"], root)
    return root


def test_repro_runs_all_stages_then_nothing_then_only_what_changed(repo):
    first = _sh(["dvc", "repro"], repo)
    for stage in ("prepare", "evaluator", "tune", "train", "evaluate", "promote"):
        assert f"Running stage '{stage}'" in first
    assert json.loads((repo / "reports/tune.json").read_text())["enabled"] is False  # the sweep is off by default
    assert (repo / "data/prepared/digits/manifest.json").is_file()
    assert (repo / "data/train/generator.safetensors").is_file()
    assert (repo / "mlflow/mlflow.db").is_file()  # the embedded tracking store, inside the repo
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"prepare", "evaluator", "tune", "train", "evaluate", "promote"}
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert metrics["fid"] > 0 and 0 <= metrics["precision"] <= 1
    promotion = json.loads((repo / "reports/promotion.json").read_text())
    assert promotion["promoted"] and promotion["version"] == 1
    shown = _sh(["dvc", "metrics", "show", "--json"], repo)
    assert "fid" in shown and "promoted" in shown

    again = _sh(["dvc", "repro"], repo)
    assert "Running stage" not in again and "up to date" in again

    # dvc exp run -S changes one train param: train reruns, prepare does not.
    _sh(["git", "add", "-A"], repo)
    _sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first run"], repo)
    out = _sh(["dvc", "exp", "run", "-S", "train.max_steps=6"], repo)
    assert "Running stage 'train'" in out and "Running stage 'evaluate'" in out
    assert "Running stage 'prepare'" not in out and "Running stage 'evaluator'" not in out
    spec = yaml.safe_load((repo / "data/train/generator.json").read_text())
    assert spec["step"] == 6
