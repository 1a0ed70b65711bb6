"""Errors that arrive early and name the real cause: a dataset too small to measure is refused by the
evaluator stage before any network trains; an unknown model URI is one line naming what exists; Ctrl-C
during training says what was saved and how to resume."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, tiny_params
from pipelines import cli, evaluator, prepare


def _folder(root: Path, classes: int, per_class: int) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(root / f"class{c}" / f"{i}.png")
    return root


@pytest.mark.parametrize("test_fraction, fix", [
    (0.1, "the held-out split has 6 images (60 × data.test_fraction 0.1), and the classifier evaluator's features "
          "are 128-dimensional: FID needs more than 128 real images, so bring at least 1290 images"),
    (0.5, "the held-out split has 30 images (60 × data.test_fraction 0.5)"),
])
def test_a_dataset_too_small_to_measure_is_refused_before_any_training(tmp_path, test_fraction, fix):
    """3 classes × 20 images used to pass prepare, evaluator and train, and fail only at evaluate."""
    params = tiny_params(tmp_path, data={"source": "imagefolder", "path": str(_folder(tmp_path / "img", 3, 20)),
                                         "image_size": 16, "name": "tiny", "test_fraction": test_fraction},
                         evaluator={"output_dir": str(tmp_path / "evaluator")})
    prepare.run(params, tmp_path)
    with pytest.raises(ValueError) as e:
        evaluator.run(params, tmp_path)
    assert str(e.value).startswith("dataset tiny is too small to be measured: ") and fix in str(e.value), str(e.value)
    assert "docs/data.md#how-much-data-the-metrics-need" in str(e.value)
    assert not (tmp_path / "evaluator").exists()  # nothing trained, nothing written


def _ours(err: str) -> str:
    """stderr without MLflow's own INFO lines (it announces creating a new store's tables)."""
    return "\n".join(x for x in err.strip().splitlines() if " INFO mlflow." not in x)


def test_an_unknown_model_is_one_line_naming_what_exists(tmp_path, capsys):
    import mlflow

    params = tiny_params(tmp_path)
    mlflow.set_tracking_uri(params.tracking.uri)
    mlflow.MlflowClient().create_registered_model("digits-dcgan")
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps(params.model_dump(mode="json")))
    rc = cli.main(["sample", "--params", str(params_file), "--model", "models:/nope@champion",
                   "--out", str(tmp_path / "x.png")])
    err = _ours(capsys.readouterr().err)
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert err.startswith(f"genpipe sample: error: cannot load models:/nope@champion from {params.tracking.uri}: ")
    assert err.endswith("; registered models: digits-dcgan")
    rc = cli.main(["sample", "--params", str(params_file), "--model", "models:/digits-dcgan@champion"])
    err = _ours(capsys.readouterr().err)
    assert rc == 1 and len(err.splitlines()) == 1 and err.endswith("digits-dcgan has versions none, aliases none"), err
    assert not (tmp_path / "x.png").exists()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # bound then released: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_tracking_store_is_one_line_at_once(tmp_path, capsys):
    """It used to hang for more than 5 minutes in MLflow's HTTP retries."""
    uri = f"http://127.0.0.1:{_closed_port()}"
    params = tiny_params(tmp_path, tracking={"uri": uri})
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps(params.model_dump(mode="json")))
    started = time.perf_counter()
    rc = cli.main(["sample", "--params", str(params_file), "--model", "models:/digits-dcgan@champion",
                   "--out", str(tmp_path / "x.png")])
    err = _ours(capsys.readouterr().err)
    assert time.perf_counter() - started < 15
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert err.startswith(f"genpipe sample: error: MLflow tracking store {uri} does not answer ("), err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("stage", ["evaluate", "promote"])
def test_evaluate_and_promote_refuse_a_dead_store_before_any_work(tmp_path, stage):
    """They write to the run the train summary names: a server that does not answer is said at once."""
    import importlib

    from components.tracking.mlflow_store import StoreUnreachable
    from components.tracking.names import SUMMARY_FILE

    params = tiny_params(tmp_path)
    uri = f"http://127.0.0.1:{_closed_port()}"
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / SUMMARY_FILE).write_text(json.dumps({"tracking_uri": uri, "mlflow_run_id": "r",
                                                                "model_uri": "models:/m-x"}))
    started = time.perf_counter()
    with pytest.raises(StoreUnreachable, match=f"MLflow tracking store {uri} does not answer"):
        importlib.import_module(f"pipelines.{stage}").run(params, tmp_path)
    assert time.perf_counter() - started < 15
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]  # nothing written


def test_a_store_that_answers_anything_counts_as_reachable():
    """A server behind a proxy may answer /health with 401: that is a store that runs, not a dead one."""
    import http.server
    import threading

    from components.tracking.mlflow_store import require_reachable

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        require_reachable(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()


def test_sample_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["sample", "--help"])
    out = capsys.readouterr().out
    out = " ".join(out.split())  # argparse wraps at the terminal's width
    assert "sentences to this path with the suffix .txt (default: samples.png)" in out and "(default: 64)" in out


@pytest.mark.parametrize("launcher", [["--no-ray"], []], ids=["in-process", "ray"])
def test_ctrl_c_during_training_says_what_was_saved_and_how_to_resume(tmp_path, digits_root, launcher, request):
    """On the Ray path Ray Train's own SIGINT handler used to exit with status 1 and no message. A second local
    Ray runs meanwhile: Train's placement-group cleaner used to auto-detect a cluster, find two, and print a
    traceback into the stage log (pipelines/launch.py::pin_ray_address)."""
    if launcher == []:
        request.getfixturevalue("bystander_ray")
    (tmp_path / "prepared").symlink_to(digits_root / "prepared")
    params = tiny_params(tmp_path, train={"max_steps": 100_000, "epochs": 10_000, "checkpoint_every": 3})
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps(params.model_dump(mode="json")))
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "train", *launcher, "--params", str(params_file)],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONFAULTHANDLER": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not list((tmp_path / "checkpoints").glob("*/checkpoint_*")):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.5)
        time.sleep(1)
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole foreground group
        interrupted = time.time()
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:  # a hang: faulthandler prints every thread's stack on SIGABRT
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate(timeout=60)
            pytest.fail(f"train still running 120 s after Ctrl-C; its threads then:\n{err[-8000:]}\nstdout:\n{out[-2000:]}")
        exited_after = time.time() - interrupted
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-3000:]
    assert exited_after < 30, exited_after
    line = next(x for x in out.splitlines() if x.startswith("train: interrupted"))
    m = re.search(r"saved: step (\d+) \((\S+)\)\. .* resumes MLflow run \w+ \(\S+\) from step (\d+)$", line)
    assert m and m[1] == m[3] and Path(m[2]).is_dir(), line
    from components.training import checkpoint as ckpt

    steps = []
    for d in (tmp_path / "checkpoints").glob("*/checkpoint_*"):
        try:
            steps.append(int(ckpt.load(d)["step"]))
        except Exception:  # noqa: BLE001 - one cut off mid-write is not a saved step
            pass
    assert int(m[1]) == max(steps), (line, steps)  # nothing was saved after the step it names
    # Ray Train logs a resource request that timed out on a loaded machine with its traceback, as a warning
    # it calls safe to ignore (autoscaling_coordinator_client); genpipe's own exit must print none
    ours = re.sub(r"Failed to send resource request.*?GetTimeoutError[^\n]*\n", "", err, flags=re.S)
    assert "Traceback" not in ours and err.strip().endswith("genpipe train: interrupted"), err[-3000:]
