"""A DVC remote on S3 (moto's server, tests/services.py), as a team's nodes use it: one clone runs `dvc repro`
and `dvc push`; a second clone with its own cache (another node, no shared disk) runs `dvc pull` and
`dvc repro`, reruns no stage and shows the same `dvc metrics show`. The endpoint and the credentials come from
the AWS_* variables only, never from .dvc/config. An unreachable endpoint fails `dvc push`, naming it."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, copy_project
from services import S3Server, free_port

pytestmark = pytest.mark.e2e

TINY = {  # the whole pipeline in about a minute on 2 cores: what is measured here is DVC, not training
    "data": {"source": "digits", "row_group_rows": 64},
    "model": {"latent_dim": 16, "g_channels": 16, "d_channels": 16},
    "train": {"epochs": 1, "max_steps": 6, "batch_size": 32, "log_every": 2, "checkpoint_every": 3},
    "scaling": {"num_workers": 1},
    "evaluator": {"epochs": 1},
    "evaluate": {"num_samples": 200, "error_seeds": 2},
}
BUCKET = "genpipe-dvc"
REMOTE_URL = f"s3://{BUCKET}/dvc"
SECRET = "dvc-remote-test-secret"  # distinctive, so a copy of it anywhere in the repo is found


def _env(s3_env: dict) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    return {**env, **s3_env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def _run(cmd: list[str], cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _sh(cmd: list[str], cwd: Path, env: dict, timeout: float = 300) -> str:
    out = _run(cmd, cwd, env, timeout)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


def _git_commit(repo: Path, env: dict, message: str) -> None:
    _sh(["git", "add", "-A"], repo, env)
    _sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", message], repo, env)


def _dvc_repo(root: Path, env: dict) -> Path:
    root.mkdir()
    _sh(["git", "init", "-q"], root, env)
    _sh(["dvc", "init", "-q"], root, env)
    _sh(["dvc", "config", "core.analytics", "false"], root, env)
    _sh(["dvc", "config", "core.check_update", "false"], root, env)
    return root


def _project(root: Path, env: dict) -> Path:
    """The project's pipeline (code, dvc.yaml, .gitignore) with TINY params in a new git + DVC repo."""
    _dvc_repo(root, env)
    copy_project(root, TINY)
    _git_commit(root, env, "project")
    return root


def _metrics(repo: Path, env: dict) -> dict:
    """`dvc metrics show --json`: {"" (the workspace): {"data": {file: {"data": …}}}}."""
    return json.loads(_sh(["dvc", "metrics", "show", "--json"], repo, env, timeout=120).splitlines()[0])


@pytest.fixture
def s3(tmp_path):
    server = S3Server(log=tmp_path / "moto.log")
    server.start()
    try:
        server.create_bucket(BUCKET)
        yield server
    finally:
        server.stop()


def test_second_clone_pulls_and_reruns_nothing(tmp_path, s3):
    env = _env({**s3.env(), "AWS_SECRET_ACCESS_KEY": SECRET})  # the endpoint from AWS_ENDPOINT_URL
    first = _project(tmp_path / "node1", env)
    _sh(["dvc", "repro"], first, env, timeout=400)
    _sh(["dvc", "remote", "add", "-d", "s3", REMOTE_URL], first, env)
    _git_commit(first, env, "first run")
    pushed = _sh(["dvc", "push"], first, env, timeout=120)
    # Only the bucket's URL was written: no endpoint, no credentials, committed or local.
    config = _sh(["dvc", "config", "--list"], first, env).splitlines()  # every level: system to local
    assert [line for line in config if line.startswith("remote.")] == [f"remote.s3.url={REMOTE_URL}"]
    assert not (first / ".dvc/config.local").exists()
    assert _run(["git", "grep", "-q", SECRET], first, env).returncode == 1  # not in any tracked file
    # The objects went to the local S3 server (this machine reaches no other): the endpoint came from the variable.
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert all(k.startswith("dvc/files/md5/") for k in keys)
    assert f"{len(keys)} files pushed" in pushed, pushed

    second = tmp_path / "node2"  # the other node: a clone of the git repo, and a cache of its own
    _sh(["git", "clone", "-q", str(first), str(second)], tmp_path, env)
    _sh(["dvc", "config", "--local", "cache.dir", str(tmp_path / "node2-cache")], second, env)
    assert not (second / ".dvc/cache").exists() and not (tmp_path / "node2-cache").exists()
    assert not (second / "data/train").exists()
    pulled = _sh(["dvc", "pull"], second, env, timeout=120)
    assert f"{len(keys)} files fetched" in pulled, pulled
    status = _sh(["dvc", "status"], second, env, timeout=120)
    repro = _sh(["dvc", "repro"], second, env, timeout=400)
    rerun = re.findall(r"Running stage '([^']+)'", repro)
    print(f"dvc_pull_stages_rerun={len(rerun)}")
    assert rerun == [], f"stages rerun after dvc pull: {rerun}; dvc status before the repro:\n{status}"
    stages = yaml.safe_load((first / "dvc.yaml").read_text())["stages"]
    assert sorted(re.findall(r"Stage '([^']+)' didn't change, skipping", repro)) == sorted(stages)
    assert "Data and pipelines are up to date" in _sh(["dvc", "status"], second, env, timeout=120)
    shown = _metrics(second, env)
    assert shown == _metrics(first, env)
    assert shown[""]["data"]["reports/headline.json"]["data"]["fid"] > 0


def test_push_to_an_unreachable_endpoint_fails_naming_it(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = _env({"AWS_ENDPOINT_URL": dead, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": SECRET,
                "AWS_DEFAULT_REGION": "us-east-1"})
    repo = _dvc_repo(tmp_path / "repo", env)
    (repo / "data.txt").write_text("some data\n")
    _sh(["dvc", "add", "data.txt"], repo, env)
    _sh(["dvc", "remote", "add", "-d", "s3", REMOTE_URL], repo, env)
    out = _run(["dvc", "push"], repo, env, timeout=120)
    assert out.returncode != 0 and "file pushed" not in out.stdout + out.stderr
    assert f'ERROR: unexpected error - Could not connect to the endpoint URL: "{dead}/{BUCKET}' in out.stderr, \
        out.stderr
