"""The served model cannot be knocked over: every request input is checked by name before any work, one
request asks for at most `serving.max_samples` samples, and MLflow's scoring server answers a refused
request with a 400 that names the input (no traceback), keeps answering, and stops on SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from components import serving_inputs
from components.serving_inputs import RequestError
from components.tracking import local_server
from components.tracking.generator_pyfunc import plain_inputs
from conftest import exported, free_port, tiny_params, train_in_process

LIMIT = 64


@pytest.fixture(scope="module")
def conditional_dcgan():
    return exported("dcgan")  # its preset, cgan: class-conditional


@pytest.mark.parametrize("inputs, message", [
    ({"num_samples": "x"}, "num_samples: expected an integer, got 'x'"),
    ({"num_samples": 2.5}, "num_samples: expected an integer, got 2.5"),
    ({"num_samples": True}, "num_samples: expected an integer, got True"),
    ({"num_samples": 0}, "num_samples = 0 is outside 1..64"),
    ({"num_samples": -3}, "num_samples = -3 is outside 1..64"),
    ({"num_samples": 100000}, "num_samples = 100000 is outside 1..64; this model serves at most 64 per request "
                              "(serving.max_samples when it was logged, GENPIPE_MAX_SAMPLES where it is served)"),
    ({"seed": -1}, "seed = -1 is outside 0..9223372036854775807"),
    ({"seed": "a"}, "seed: expected an integer, got 'a'"),
    ({"labels": 10}, "labels: [10] outside this model's classes 0..9"),
    ({"labels": [1, -1, 3]}, "labels: [-1] outside this model's classes 0..9"),
    ({"labels": "seven"}, "labels: expected class indices (integers), got 'seven'"),
    ({"labels": [1.5]}, "labels: expected class indices (integers), got [1.5]"),
    ({"labels": [[1, 2], [3]]}, "labels: expected one class index or a list of them"),
    ({"labels": [1, 2, 3], "num_samples": 2}, "labels: 3 labels for num_samples = 2; give one label, or one per sample"),
    ({"labels": list(range(10)) * 7}, "labels: 70 labels; give 1 to 64"),
    ({"colour": 1}, "colour: not an input of this model; a dcgan model takes num_samples, seed, labels"),
])
def test_a_bad_request_is_refused_naming_the_input(conditional_dcgan, inputs, message):
    family, g, spec = conditional_dcgan
    with pytest.raises(RequestError) as e:
        family.predict(g, spec, plain_inputs(inputs), LIMIT)
    assert str(e.value).startswith(message), str(e.value)


def test_good_requests_and_their_labels(conditional_dcgan):
    family, g, spec = conditional_dcgan
    assert family.predict(g, spec, plain_inputs({"num_samples": LIMIT}), LIMIT).shape == (LIMIT, 1, 8, 8)
    assert family.predict(g, spec, plain_inputs({"labels": [3, 4, 5]}), LIMIT).shape == (3, 1, 8, 8)
    one = family.predict(g, spec, plain_inputs({"labels": 7, "num_samples": 4, "seed": 2}), LIMIT)
    each = family.predict(g, spec, plain_inputs({"labels": [7] * 4, "num_samples": 4.0, "seed": 2}), LIMIT)
    assert one.shape == (4, 1, 8, 8) and (one == each).all()  # one label repeats; 4.0 is the integer 4


def test_an_unconditional_model_refuses_labels():
    family, g, spec = exported("dcgan", conditioning="none")
    with pytest.raises(RequestError, match="^labels: this model is unconditional; leave labels out"):
        family.predict(g, spec, {"labels": 1}, LIMIT)


@pytest.mark.parametrize("inputs, message", [
    ({"steps": 0}, "steps: Input should be greater than or equal to 1"),
    ({"steps": 5000}, "steps: Value error, steps = 5000 exceeds timesteps = 20"),
    ({"steps": "50"}, "steps: Input should be a valid integer"),
    ({"sampler": "euler"}, "sampler: Input should be 'ddpm' or 'ddim'"),
    ({"eta": 2.0}, "eta: Input should be less than or equal to 1"),
    ({"guidance": "strong"}, "guidance: Input should be a valid number"),
])
def test_diffusion_sampling_inputs_are_checked_against_the_model(inputs, message):
    family, g, spec = exported("ddpm")
    with pytest.raises(RequestError) as e:
        family.predict(g, spec, plain_inputs({"num_samples": 2, **inputs}), LIMIT)
    assert str(e.value).startswith(message), str(e.value)


def test_a_translator_bounds_and_checks_its_image_batch():
    family, g, spec = exported("pix2pix")
    image = [[[0.0] * 8] * 8]
    with pytest.raises(RequestError, match=r"^images: 3 images; this model serves at most 2 per request"):
        family.predict(g, spec, plain_inputs({"images": [image] * 3}), 2)
    with pytest.raises(RequestError, match=r"^images: expected N×1×8×8 \(the inputs\), got shape \(1, 1, 8, 7\)"):
        family.predict(g, spec, plain_inputs({"images": [[[[0.0] * 7] * 8]]}), 2)
    with pytest.raises(RequestError, match=r"^images: expected N×1×8×8 \(the inputs\) numbers"):
        family.predict(g, spec, plain_inputs({"images": [[["a"] * 8] * 8]}), 2)
    assert family.predict(g, spec, plain_inputs({"images": [image] * 2}), 2).shape == (2, 1, 8, 8)


def test_mlflow_inputs_format_and_rows():
    """MLflow's `inputs` format hands over 0-d / one-element arrays; several rows must agree."""
    import pandas as pd

    assert plain_inputs({"num_samples": np.int64(2), "seed": np.array([1])}) == {"num_samples": 2, "seed": 1}
    with pytest.raises(RequestError, match="^seed: 2 rows with different values; send one request per setting"):
        plain_inputs(pd.DataFrame({"num_samples": [2, 2], "seed": [0, 1]}))


def test_the_limit_comes_from_the_logged_config_unless_the_server_sets_it(monkeypatch):
    monkeypatch.delenv(serving_inputs.MAX_SAMPLES_ENV, raising=False)
    assert serving_inputs.max_samples(None) == serving_inputs.DEFAULT_MAX_SAMPLES
    assert serving_inputs.max_samples(64) == 64
    monkeypatch.setenv(serving_inputs.MAX_SAMPLES_ENV, "8")
    assert serving_inputs.max_samples(64) == 8
    monkeypatch.setenv(serving_inputs.MAX_SAMPLES_ENV, "lots")
    with pytest.raises(ValueError, match="GENPIPE_MAX_SAMPLES = 'lots': expected a positive integer"):
        serving_inputs.max_samples(64)


# ------------------------------------------------------------------------------ the real scoring server

@pytest.fixture(scope="module")
def served(tmp_path_factory, digits_root):
    """A trained class-conditional DCGAN logged with serving.max_samples = 64, behind `mlflow models serve`."""
    import mlflow

    from components.tracking.logged_model import log_generator
    from components.training import checkpoint as ckpt

    root = tmp_path_factory.mktemp("served")
    (root / "prepared").symlink_to(digits_root / "prepared")
    params = tiny_params(root, model={"conditioning": "concat"}, train={"max_steps": 3})
    rec, _ = train_in_process(params, root)
    (root / "gen").mkdir()
    ckpt.write_generator(rec.states[-1], root / "gen")
    mlflow.set_tracking_uri(params.tracking.uri)
    with mlflow.start_run():
        info = log_generator(root / "gen", LIMIT)
    server, url = local_server.start(info.model_uri, params.tracking.uri, free_port())
    try:
        yield server, url
    finally:
        local_server.stop(server)


def _post(url: str, body: dict, timeout: float = 30) -> tuple[int, dict]:
    req = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


@pytest.mark.parametrize("body", [
    {"dataframe_records": [{"num_samples": 2, "seed": 1}]},
    {"dataframe_split": {"columns": ["num_samples", "seed"], "data": [[2, 1]]}},
    {"inputs": {"num_samples": 2, "seed": 1}},
    {"instances": [{"num_samples": 2, "seed": 1}]},
    {"dataframe_records": [{"num_samples": 2, "seed": 1, "labels": [3, 4]}]},
])
def test_every_input_format_of_the_scoring_server(served, body):
    status, out = _post(served[1], body)
    assert status == 200, out
    images = np.asarray(out["predictions"], dtype=np.float32)
    assert images.shape == (2, 1, 8, 8) and -1 <= images.min() <= images.max() <= 1


@pytest.mark.parametrize("record, field", [
    ({"num_samples": 100000}, "num_samples = 100000 is outside 1..64; this model serves at most 64 per request"),
    ({"num_samples": 0}, "num_samples = 0 is outside 1..64"),
    ({"num_samples": 2, "labels": 12}, "labels: [12] outside this model's classes 0..9"),
    ({"num_samples": 2, "steps": 5}, "steps: sampling options of diffusion models"),
    ({"num_samples": "many"}, "num_samples"),  # MLflow's own schema check names the column
])
def test_a_bad_request_gets_a_400_naming_the_field_and_no_traceback(served, record, field):
    started = time.perf_counter()
    status, out = _post(served[1], {"dataframe_records": [record]})
    assert status == 400 and field in out["message"], out
    assert "stack_trace" not in out and "Traceback" not in json.dumps(out)
    assert time.perf_counter() - started < 10  # refused before any work


def test_the_server_keeps_answering_and_stops_on_sigterm(served):
    server, url = served
    for _ in range(3):
        assert _post(url, {"inputs": {"num_samples": 10**9}})[0] == 400
    status, out = _post(url, {"inputs": {"num_samples": LIMIT, "seed": 3}})
    assert status == 200 and np.asarray(out["predictions"]).shape == (LIMIT, 1, 8, 8)
    os.killpg(server.pid, signal.SIGTERM)  # what a process manager sends
    server.wait(timeout=20)  # stopped by SIGTERM, not by the fixture's SIGKILL
