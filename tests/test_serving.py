"""The served model cannot be knocked over: every request input is checked by name before any work, one
request asks for at most `serving.max_samples` samples, and MLflow's scoring server answers a refused
request, in every body format it parses (JSON's four, CSV, Parquet), with a 400 that names the input (no
traceback), keeps answering, and stops on SIGTERM. Most checks call MLflow's scoring app in this process;
two go through `mlflow models serve`."""
from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from components import serving_inputs
from components.serving_inputs import RequestError
from components.tracking import local_server
from components.tracking.generator_pyfunc import plain_inputs
from conftest import exported, free_port

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


# ------------------------------------------------------------------------------ MLflow's scoring app

@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, str, Path]:
    """(tracking URI, experiment id, folder): one SQLite store for the module, artifacts inside the folder."""
    import mlflow

    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return uri, mlflow.MlflowClient(uri).create_experiment("serving", (root / "artifacts").as_uri()), root


def _log(store, name: str, **model) -> tuple[str, str]:
    """An untrained export of family `name` logged with serving.max_samples = 64: (tracking URI, model URI)."""
    import tempfile

    import mlflow

    from components.tracking.logged_model import log_generator
    from components.training import checkpoint as ckpt

    uri, experiment, root = store
    family, g, spec = exported(name, **model)
    folder = Path(tempfile.mkdtemp(dir=root))
    ckpt.write_generator({"generator": g.state_dict(), "step": 0, "epoch": 0, "meta": spec}, folder)
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=experiment):
        info = log_generator(folder, LIMIT)
    return uri, info.model_uri


@pytest.fixture(scope="module")
def logged(store):
    return _log(store, "dcgan")  # its preset, cgan: class-conditional


def _app(uri: str, model_uri: str):
    """(the pyfunc, MLflow's scoring app for it: what `mlflow models serve` runs), in this process."""
    import mlflow
    from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT
    from mlflow.pyfunc import scoring_server

    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(model_uri)
    with pytest.MonkeyPatch.context() as mp:  # init() marks the whole process as serving: undo it
        mp.setenv(_MLFLOW_IS_IN_SERVING_ENVIRONMENT.name, "false")
        return model, scoring_server.init(model)


@pytest.fixture(scope="module")
def app(logged):
    return _app(*logged)


def _invoke(app, body, content_type: str = "application/json") -> tuple[int, dict]:
    """POST /invocations to the ASGI app (no HTTP client needed): (status, the JSON answer)."""
    import asyncio

    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent, request = [], [{"type": "http.request", "body": raw, "more_body": False}]

    async def receive():
        return request.pop() if request else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/invocations", "raw_path": b"/invocations", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", content_type.encode())], "client": ("test", 1), "server": ("test", 80)}
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))


def _parquet(**columns) -> bytes:
    import io

    import pandas as pd

    out = io.BytesIO()
    pd.DataFrame(columns).to_parquet(out)
    return out.getvalue()


CSV, PARQUET = "text/csv", "application/vnd.apache.parquet"
TWO = {"num_samples": 2, "seed": 1}
BODIES = {  # every body MLflow's scoring server parses, each asking for TWO
    "dataframe_records": ({"dataframe_records": [TWO]}, "application/json"),
    "dataframe_split": ({"dataframe_split": {"columns": list(TWO), "data": [list(TWO.values())]}}, "application/json"),
    "inputs": ({"inputs": TWO}, "application/json"),
    "instances": ({"instances": [TWO]}, "application/json"),
    "csv": (b"num_samples,seed\n2,1\n", CSV),
    "parquet": (_parquet(num_samples=[2], seed=[1]), PARQUET),
}


def test_every_body_format_gets_the_same_samples(app):
    model, scoring = app
    expected = model.predict(TWO)
    for fmt, (body, content_type) in BODIES.items():
        status, out = _invoke(scoring, body, content_type)
        assert status == 200, (fmt, out)
        assert np.array_equal(np.asarray(out["predictions"], dtype=np.float32), expected), fmt


@pytest.mark.parametrize("body, content_type", [
    ({"inputs": {"labels": [3, 4]}}, "application/json"),
    ({"dataframe_records": [{"labels": [3, 4]}]}, "application/json"),
    ({"instances": [{"labels": 3}, {"labels": 4}]}, "application/json"),
    (b"labels\n3\n4\n", CSV),  # one label per row
])
def test_a_list_of_labels_in_each_format(app, body, content_type):
    model, scoring = app
    status, out = _invoke(scoring, body, content_type)
    assert status == 200, out
    assert np.array_equal(np.asarray(out["predictions"], dtype=np.float32), model.predict({"labels": [3, 4]}))


TAKES = "a dcgan model takes num_samples, seed, labels"


@pytest.mark.parametrize("body, content_type, message", [
    ({"dataframe_records": [{"num_samples": True}]}, "application/json", "num_samples: expected an integer, got True"),
    ({"inputs": {"num_samples": True}}, "application/json", "num_samples: expected an integer, got True"),
    ({"instances": [{"num_samples": True}]}, "application/json", "num_samples: expected an integer, got True"),
    (b"num_samples\ntrue\n", CSV, "num_samples: expected an integer, got True"),
    (_parquet(num_samples=[True]), PARQUET, "num_samples: expected an integer, got True"),
    ({"dataframe_records": [{"num_samples": "many"}]}, "application/json", "num_samples: expected an integer, got 'many'"),
    ({"inputs": {"num_samples": "many"}}, "application/json", "num_samples: expected an integer, got 'many'"),
    (b"num_samples\nmany\n", CSV, "num_samples: expected an integer, got 'many'"),
    ({"dataframe_split": {"columns": ["seed"], "data": [[1.5]]}}, "application/json",
     "seed: expected an integer, got 1.5"),
    ({"dataframe_records": [{"num_samples": 2, "steps": 5}]}, "application/json",
     f"steps: sampling options of diffusion models; {TAKES}"),
    ({"inputs": {"temperature": 0.5}}, "application/json", f"temperature: not an input of this model; {TAKES}"),
    (b"num_samples,colour\n2,1\n", CSV, f"colour: not an input of this model; {TAKES}"),
    ({"dataframe_records": []}, "application/json",
     "the request has no rows; send one row of inputs (num_samples, seed, labels)"),
    (b"num_samples,seed\n", CSV, "the request has no rows; send one row of inputs (num_samples, seed, labels)"),
    ({"inputs": [2, 1]}, "application/json", "expected named inputs (num_samples, seed, labels), got [2, 1]"),
    ({"inputs": {"num_samples": 100000}}, "application/json",
     "num_samples = 100000 is outside 1..64; this model serves at most 64 per request"),
    (b"num_samples,labels\n2,12\n", CSV, "labels: [12] outside this model's classes 0..9"),
    ({"dataframe_split": {"columns": ["seed"], "data": [[0], [1]]}}, "application/json",
     "seed: 2 rows with different values; send one request per setting"),
])
def test_a_bad_request_in_any_format_gets_a_400_naming_the_input_and_no_traceback(app, body, content_type, message):
    started = time.perf_counter()
    status, out = _invoke(app[1], body, content_type)
    assert status == 400 and out["error_code"] == "INVALID_PARAMETER_VALUE", out
    assert f"Error: {message}" in out["message"], out["message"]  # after MLflow's "Failed to predict data '…'."
    assert "stack_trace" not in out and "Traceback" not in json.dumps(out)
    assert time.perf_counter() - started < 10  # refused before any work


def test_bodies_mlflow_cannot_parse_are_answered_by_mlflow(app):
    """What MLflow refuses before the model runs: its messages; only an unreadable CSV or Parquet body
    carries MLflow's stack trace (parse_csv_input / parse_parquet_input always attach one)."""
    status, out = _invoke(app[1], b"{nope")
    assert status == 400 and "valid JSON" in out["message"] and "stack_trace" not in out
    status, out = _invoke(app[1], TWO)  # no format key
    assert status == 400 and "dataframe_records" in out["message"] and "stack_trace" not in out
    for body, content_type in ((b"", CSV), (b"garbage", PARQUET)):
        status, out = _invoke(app[1], body, content_type)
        assert status == 400 and out["message"].startswith("Failed to parse input") and "stack_trace" in out


def test_the_logged_model_declares_only_its_familys_inputs(store, logged):
    import mlflow

    info = mlflow.models.get_model_info(logged[1])
    assert info.signature is None and info.metadata["inputs"] == ["num_samples", "seed", "labels"]
    uri, model_uri = _log(store, "dcgan", conditioning="none")
    assert mlflow.models.get_model_info(model_uri).metadata["inputs"] == ["num_samples", "seed"]


@pytest.mark.parametrize("name, inputs", [
    ("mlp", ["num_samples", "seed"]),
    ("vae", ["num_samples", "seed"]),
    ("seqgan", ["num_samples", "seed", "temperature"]),
    ("ddgan", ["num_samples", "seed", "labels"]),
    ("ddpm", ["num_samples", "seed", "labels", "steps", "guidance", "sampler", "eta"]),
    ("pix2pix", ["images"]),
    ("cyclegan", ["images", "reverse"]),
])
def test_each_family_serves_its_own_inputs(name, inputs):
    family, g, spec = exported(name)
    assert list(family.served_inputs(g)) == inputs


def test_a_text_model_in_each_format(store):
    model, scoring = _app(*_log(store, "seqgan"))
    for body, content_type in ((b"num_samples,temperature\n2,0.5\n", CSV),
                               ({"inputs": {"num_samples": 2, "temperature": 0.5}}, "application/json")):
        status, out = _invoke(scoring, body, content_type)
        assert status == 200 and [len(row["tokens"]) for row in out["predictions"]] == [6, 6], out
    status, out = _invoke(scoring, {"dataframe_records": [{"temperature": "hot"}]})
    assert status == 400 and "Error: temperature = 'hot': must be a number in (0, 10]" in out["message"]
    status, out = _invoke(scoring, b"labels\n3\n", CSV)
    assert status == 400 and "Error: labels: this model is unconditional; a seqgan model takes num_samples, " \
                             "seed, temperature" in out["message"]


# ------------------------------------------------------------------------------ the real scoring server

@pytest.fixture(scope="module")
def served(logged):
    """The class-conditional DCGAN behind `mlflow models serve`."""
    server, url = local_server.start(logged[1], logged[0], free_port())
    try:
        yield server, url
    finally:
        local_server.stop(server)


def _post(url: str, body, content_type: str = "application/json", timeout: float = 30) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}/invocations", data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


def test_the_server_answers_json_and_csv(served):
    for body, content_type in (BODIES["dataframe_records"], BODIES["csv"]):
        status, out = _post(served[1], body, content_type)
        assert status == 200 and np.asarray(out["predictions"]).shape == (2, 1, 8, 8), out
    status, out = _post(served[1], b"num_samples\ntrue\n", CSV)
    assert status == 400 and "Error: num_samples: expected an integer, got True" in out["message"]
    assert "stack_trace" not in out


def test_the_server_keeps_answering_and_stops_on_sigterm(served):
    server, url = served
    for _ in range(3):
        assert _post(url, {"inputs": {"num_samples": 10**9}})[0] == 400
    status, out = _post(url, {"inputs": {"num_samples": LIMIT, "seed": 3}})
    assert status == 200 and np.asarray(out["predictions"]).shape == (LIMIT, 1, 8, 8)
    os.killpg(server.pid, signal.SIGTERM)  # what a process manager sends
    server.wait(timeout=20)  # stopped by SIGTERM, not by the fixture's SIGKILL
