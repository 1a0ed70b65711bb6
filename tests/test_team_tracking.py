"""MLflow in team mode (issue 32, parts 3 and 8): a real `mlflow server` with its basic-auth app on
PostgreSQL, artifacts proxied to moto's S3; who may read and write what, and an S3 policy that keeps
workers' credentials inside the project's bucket, checked where moto enforces IAM.

One server per module, on loopback. Clients switch user through the MLFLOW_TRACKING_USERNAME/PASSWORD
variables, which MLflow's REST client reads at every request."""
from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from services import S3Server, TeamTracking

BUCKET, PREFIX = "genpipe-team", "mlflow"
EXPERIMENT, MODEL = "team-mode", "team-generator"
STEPS = 20
POLICY_DOC = Path(__file__).resolve().parents[1] / "docs" / "cluster.md"  # holds the policy
CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")

pytestmark = pytest.mark.timeout(600)


def _as(monkeypatch, tracking: TeamTracking, user: str | None) -> None:
    for var in CREDENTIAL_VARS:
        monkeypatch.delenv(var, raising=False)
    for var, value in tracking.env(user).items():
        monkeypatch.setenv(var, value)


def _refused(call, code: str) -> None:
    """The call fails with MLflow's error code `code`, from the server's HTTP status (401 or 403)."""
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as caught:
        call()
    status = {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403}[code]
    assert caught.value.error_code == code and f"error code {status} " in str(caught.value), caught.value


# ---------------------------------------------------------------- the servers and what the pipeline wrote
@pytest.fixture(scope="module")
def team():
    root = Path(tempfile.mkdtemp(prefix="genpipe-team-"))  # not tmp_path: PostgreSQL's user must reach it
    s3 = S3Server(log=root / "moto.log")
    tracking = TeamTracking(root, s3_env=s3.env(), artifacts=f"s3://{BUCKET}/{PREFIX}")
    try:
        moto_s = s3.start()
        s3.create_bucket(BUCKET)
        tracking.start()
        print(f"\nstart-up: moto {moto_s:.1f} s, PostgreSQL {tracking.startup_s['postgres']:.1f} s "
              f"(initdb + start + 2 databases), MLflow server {tracking.startup_s['mlflow']:.1f} s "
              f"(to its first authenticated answer)")
        yield s3, tracking
    finally:
        tracking.stop()
        s3.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def published(team):
    """Through the pipeline user and genpipe's own code: an experiment, a run with metrics and a sample grid
    (RunLogger), a small PyTorch model, registered twice, `champion` on version 1."""
    import mlflow
    import torch
    from mlflow.tracking import MlflowClient
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    from components.tracking.mlflow_store import RunLogger, artifact_root_for, experiment_id, resolve_uri

    _, tracking = team
    with pytest.MonkeyPatch.context() as mp:
        _as(mp, tracking, "pipeline")
        uri = resolve_uri(None, Path(tempfile.gettempdir()))  # $MLFLOW_TRACKING_URI, checked to answer
        assert uri == tracking.uri and artifact_root_for(uri) is None  # the server chooses where artifacts go
        client = MlflowClient(uri)
        exp_id = experiment_id(client, EXPERIMENT, artifact_root_for(uri))
        run_id = client.create_run(exp_id, run_name="team-run").info.run_id
        logger = RunLogger(uri, run_id, retry_initial_s=0.1)
        for step in range(STEPS):
            logger.log_metrics(step, {"loss": 1.0 / (step + 1)})
        grid = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
        logger.log_image(grid, "samples/grid.png")
        logger.flush(120)
        logger.close()
        assert logger.failed_attempts == 0
        with _use_tracking_uri(uri), mlflow.start_run(run_id=run_id):
            torch.manual_seed(0)
            net, x = torch.nn.Linear(2, 1), np.array([[1.0, -2.0]], dtype=np.float32)
            info = mlflow.pytorch.log_model(net, name="model", input_example=x, pip_requirements=["torch"])
        client.create_registered_model(MODEL)
        versions = [client.create_model_version(MODEL, info.model_uri, run_id=run_id, model_id=info.model_id)
                    for _ in range(2)]
        client.set_registered_model_alias(MODEL, "champion", versions[0].version)
        assert client.get_model_version_by_alias(MODEL, "champion").version == "1"
    return {"exp_id": exp_id, "run_id": run_id, "model_id": info.model_id, "model_uri": info.model_uri,
            "grid": grid, "versions": [v.version for v in versions], "x": x,
            "y": net(torch.from_numpy(x)).detach().numpy()}


def test_pipeline_artifacts_land_in_the_bucket(team, published):
    """Artifacts went through the server's proxy into the bucket under the artifacts prefix."""
    s3, _ = team
    keys = {o["Key"] for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            for o in page.get("Contents", [])}
    exp, run = published["exp_id"], published["run_id"]
    grid_key = f"{PREFIX}/{exp}/{run}/artifacts/samples/grid.png"
    assert grid_key in keys
    assert f"{PREFIX}/{exp}/models/{published['model_id']}/artifacts/MLmodel" in keys
    assert all(k.startswith(f"{PREFIX}/") for k in keys)
    png = s3.client().get_object(Bucket=BUCKET, Key=grid_key)["Body"].read()
    from PIL import Image

    assert png.startswith(b"\x89PNG")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), published["grid"])
    assert published["versions"] == ["1", "2"]


# ---------------------------------------------------------------- nobody without credentials
ANONYMOUS = [  # (method, path, JSON body or query): reads and writes of runs, registry and artifacts
    ("GET", "/api/2.0/mlflow/runs/get", "run"),
    ("GET", "/api/2.0/mlflow/metrics/get-history", "metric"),
    ("POST", "/api/2.0/mlflow/runs/log-batch", "batch"),
    ("POST", "/api/2.0/mlflow/runs/create", "create_run"),
    ("GET", "/api/2.0/mlflow/registered-models/get", "model"),
    ("GET", "/api/2.0/mlflow/registered-models/alias", "alias"),
    ("POST", "/api/2.0/mlflow/model-versions/create", "version"),
    ("POST", "/api/2.0/mlflow/registered-models/alias", "set_alias"),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts/{exp}/{run}/artifacts/samples/grid.png", None),
    ("PUT", "/api/2.0/mlflow-artifacts/artifacts/{exp}/{run}/artifacts/samples/x.png", None),
]


def _requests(published) -> dict:
    run, exp = published["run_id"], published["exp_id"]
    return {"run": {"run_id": run}, "metric": {"run_id": run, "metric_key": "loss"},
            "batch": {"run_id": run, "metrics": [{"key": "loss", "value": 9, "timestamp": 1, "step": 99}]},
            "create_run": {"experiment_id": exp}, "model": {"name": MODEL},
            "alias": {"name": MODEL, "alias": "champion"},
            "version": {"name": MODEL, "source": published["model_uri"], "run_id": run},
            "set_alias": {"name": MODEL, "alias": "champion", "version": "2"}}


@pytest.mark.parametrize("auth", ["none", "wrong password"])
def test_no_credentials_no_access(team, published, auth, monkeypatch):
    import requests

    _, tracking = team
    bodies = _requests(published)
    credentials = None if auth == "none" else ("pipeline", "not-the-password")
    statuses = {}
    for method, path, what in ANONYMOUS:
        path = path.format(exp=published["exp_id"], run=published["run_id"])
        body = bodies.get(what)
        r = requests.request(method, tracking.uri + path, auth=credentials, timeout=60,
                             params=body if method == "GET" else None,
                             json=body if method == "POST" else None, data=b"x" if method == "PUT" else None)
        statuses[f"{method} {path}"] = r.status_code
    assert set(statuses.values()) == {401}, statuses
    # what a user of MLflow's client sees
    from mlflow.tracking import MlflowClient

    _as(monkeypatch, tracking, None)
    if credentials:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", credentials[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", credentials[1])
    client = MlflowClient(tracking.uri)
    _refused(lambda: client.get_run(published["run_id"]), "UNAUTHENTICATED")
    _refused(lambda: client.log_metric(published["run_id"], "loss", 9.0, step=99), "UNAUTHENTICATED")
    _refused(lambda: client.get_model_version_by_alias(MODEL, "champion"), "UNAUTHENTICATED")
    _refused(lambda: client.create_model_version(MODEL, published["model_uri"]), "UNAUTHENTICATED")


# ---------------------------------------------------------------- the reader: browse everything, change nothing
def test_reader_reads_runs_metrics_artifacts_and_models(team, published, monkeypatch, tmp_path):
    import mlflow
    import torch
    from mlflow.tracking import MlflowClient
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri
    from PIL import Image

    _, tracking = team
    _as(monkeypatch, tracking, "reader")
    client = MlflowClient(tracking.uri)
    assert EXPERIMENT in {e.name for e in client.search_experiments()}
    run = client.get_run(published["run_id"])
    assert run.info.run_name == "team-run" and run.data.metrics["loss"] == pytest.approx(1.0 / STEPS)
    history = sorted((m.step, m.value) for m in client.get_metric_history(published["run_id"], "loss"))
    assert history == [(s, pytest.approx(1.0 / (s + 1))) for s in range(STEPS)]
    png = client.download_artifacts(published["run_id"], "samples/grid.png", str(tmp_path))
    assert np.array_equal(np.asarray(Image.open(png).convert("RGB")), published["grid"])
    assert client.get_registered_model(MODEL).aliases == {"champion": "1"}
    assert [v.version for v in client.search_model_versions(f"name = '{MODEL}'", order_by=["version_number"])] == ["1", "2"]
    with _use_tracking_uri(tracking.uri):
        model = mlflow.pytorch.load_model(f"models:/{MODEL}@champion")  # registry + logged model + S3, as reader
    y = model(torch.from_numpy(published["x"])).detach().numpy()
    assert np.allclose(y, published["y"])


def test_reader_cannot_log_register_or_move_champion(team, published, monkeypatch, tmp_path):
    import requests
    from mlflow.tracking import MlflowClient

    _, tracking = team
    _as(monkeypatch, tracking, "reader")
    client, run_id = MlflowClient(tracking.uri), published["run_id"]
    denied = "PERMISSION_DENIED"  # HTTP 403
    _refused(lambda: client.log_metric(run_id, "loss", 9.0, step=99), denied)
    _refused(lambda: client.set_tag(run_id, "who", "reader"), denied)
    _refused(lambda: client.create_run(published["exp_id"]), denied)
    _refused(lambda: client.create_model_version(MODEL, published["model_uri"], run_id=run_id), denied)
    _refused(lambda: client.set_registered_model_alias(MODEL, "champion", "2"), denied)
    _refused(lambda: client.delete_registered_model_alias(MODEL, "champion"), denied)
    _refused(lambda: client.set_model_version_tag(MODEL, "1", "genpipe.promotion", "{}"), denied)
    _refused(lambda: client.delete_model_version(MODEL, "2"), denied)
    # genpipe's logger stops at a refusal instead of retrying until its deadline
    from components.tracking.mlflow_store import RunLogger, TrackingUnavailableError

    logger, started = RunLogger(tracking.uri, run_id, retry_initial_s=0.05), time.monotonic()
    logger.log_metrics(99, {"loss": 9.0})
    with pytest.raises(TrackingUnavailableError, match="the store refused them") as refusal:
        logger.flush(120)
    logger.close()
    assert refusal.value.last_error.error_code == denied and refusal.value.unsent_points == 1
    assert time.monotonic() - started < 60 and logger.failed_attempts == 1

    reader = ("reader", tracking.passwords["reader"])
    upload = requests.put(f"{tracking.uri}/api/2.0/mlflow-artifacts/artifacts/{published['exp_id']}/{run_id}/"
                          "artifacts/samples/forged.png", data=b"x", auth=reader, timeout=60)
    grant = requests.post(f"{tracking.uri}/api/3.0/mlflow/users/permissions/grant", auth=reader, timeout=60,
                          json={"username": "reader", "resource_type": "registered_model", "resource_id": "*",
                                "permission": "MANAGE"})
    assert (upload.status_code, grant.status_code) == (403, 403)

    # nothing changed, as the pipeline sees it
    _as(monkeypatch, tracking, "pipeline")
    assert client.get_model_version_by_alias(MODEL, "champion").version == "1"
    assert len(client.get_metric_history(run_id, "loss")) == STEPS
    assert "who" not in client.get_run(run_id).data.tags
    assert "samples/forged.png" not in {f.path for f in client.list_artifacts(run_id, "samples")}
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == 2


def test_reader_experiments_are_its_own(team, published, monkeypatch):
    """A limit of MLflow's basic-auth with workspaces off, pinned here and stated in the docs: any signed-in
    user may create experiments (and registered models), which it alone then holds (MANAGE). The reader's
    grants nothing on the pipeline's; with default_permission NO_PERMISSIONS the pipeline does not see it."""
    from mlflow.tracking import MlflowClient

    _, tracking = team
    client = MlflowClient(tracking.uri)
    _as(monkeypatch, tracking, "reader")
    scratch = client.create_experiment("reader-scratch")
    client.create_run(scratch)
    _as(monkeypatch, tracking, "pipeline")
    assert "reader-scratch" not in {e.name for e in client.search_experiments()}
    _refused(lambda: client.get_experiment(scratch), "PERMISSION_DENIED")


def test_pipeline_cannot_administer_users(team, published):
    import requests

    _, tracking = team
    r = requests.post(f"{tracking.uri}/api/2.0/mlflow/users/create", timeout=60,
                      auth=("pipeline", tracking.passwords["pipeline"]), json={"username": "x", "password": "y" * 12})
    assert r.status_code == 403


def test_restart_keeps_runs_registry_and_users(team, published, monkeypatch):
    """The server only restarts (same port): PostgreSQL keeps runs, aliases, users and grants."""
    from mlflow.tracking import MlflowClient

    _, tracking = team
    seconds = tracking.restart()
    print(f"\nMLflow server restart: {seconds:.1f} s")
    _as(monkeypatch, tracking, "reader")
    client = MlflowClient(tracking.uri)
    assert client.get_model_version_by_alias(MODEL, "champion").version == "1"
    _refused(lambda: client.set_registered_model_alias(MODEL, "champion", "2"), "PERMISSION_DENIED")
    _as(monkeypatch, tracking, "pipeline")
    client.log_metric(published["run_id"], "after_restart", 1.0, step=0)
    assert client.get_run(published["run_id"]).data.metrics["after_restart"] == 1.0


# ---------------------------------------------------------------- S3: workers' credentials reach one bucket
def _documented_policy(bucket: str) -> dict:
    """The JSON block after the "worker-s3-policy" marker in the docs, for `bucket`."""
    text = POLICY_DOC.read_text()
    found = re.search(r"worker-s3-policy.*?```json\n(.*?)```", text, re.S)
    assert found, f"{POLICY_DOC} has no ```json block after the worker-s3-policy marker"
    return json.loads(found.group(1).replace("YOUR_BUCKET", bucket))


# moto 5.2 checks a request's S3 *operation name* (s3:ListObjectsV2, s3:HeadObject, ...) against a policy's
# actions, where AWS checks the IAM action the operation requires (s3:ListBucket, s3:GetObject, ...). The
# documented policy names AWS's actions; for moto each is extended with the operations AWS authorizes by it.
# Resources, which confine the credentials to one bucket, are used exactly as documented.
AWS_ACTION_OPERATIONS = {
    "s3:ListBucket": ["s3:ListObjects", "s3:ListObjectsV2", "s3:HeadBucket"],
    "s3:ListBucketMultipartUploads": ["s3:ListMultipartUploads"],
    "s3:GetObject": ["s3:HeadObject"],
    "s3:PutObject": ["s3:CreateMultipartUpload", "s3:UploadPart", "s3:CompleteMultipartUpload"],
    "s3:DeleteObject": ["s3:DeleteObjects"],
    "s3:ListMultipartUploadParts": ["s3:ListParts"],
}


def _moto_dialect(policy: dict) -> dict:
    statements = []
    for st in policy["Statement"]:
        actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        statements.append({**st, "Action": actions + [op for a in actions for op in AWS_ACTION_OPERATIONS.get(a, [])]})
    return {**policy, "Statement": statements}


def test_worker_credentials_reach_only_the_project_bucket(tmp_path):
    """moto's server enforces IAM once /moto-api/reset-auth is set to 0: every request must then be signed
    by an IAM user of that server and be allowed by its policies (S3 actions on bucket and object ARNs)."""
    from botocore.exceptions import ClientError

    s3 = S3Server(log=tmp_path / "moto.log")
    try:
        s3.start()
        project, other = "genpipe-project", "someone-else"
        admin = s3.client()
        for bucket in (project, other):
            admin.create_bucket(Bucket=bucket)
        admin.put_object(Bucket=other, Key="secret.txt", Body=b"not yours")
        iam = s3.client("iam")
        iam.create_user(UserName="genpipe-worker")
        iam.put_user_policy(UserName="genpipe-worker", PolicyName="genpipe-project-bucket",
                            PolicyDocument=json.dumps(_moto_dialect(_documented_policy(project))))
        key = iam.create_access_key(UserName="genpipe-worker")["AccessKey"]
        s3.enforce_iam()

        worker = s3.client(key_id=key["AccessKeyId"], secret=key["SecretAccessKey"])
        worker.put_object(Bucket=project, Key="checkpoints/run/checkpoint_1/model.pt", Body=b"weights")
        assert worker.get_object(Bucket=project, Key="checkpoints/run/checkpoint_1/model.pt")["Body"].read() == b"weights"
        listed = worker.list_objects_v2(Bucket=project, Prefix="checkpoints/")
        assert [o["Key"] for o in listed["Contents"]] == ["checkpoints/run/checkpoint_1/model.pt"]
        upload = worker.create_multipart_upload(Bucket=project, Key="big.bin")  # large files go in parts
        part = worker.upload_part(Bucket=project, Key="big.bin", UploadId=upload["UploadId"], PartNumber=1,
                                  Body=b"x" * 1024)
        worker.complete_multipart_upload(Bucket=project, Key="big.bin", UploadId=upload["UploadId"],
                                         MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})
        worker.delete_object(Bucket=project, Key="big.bin")
        assert worker.head_object(Bucket=project, Key="checkpoints/run/checkpoint_1/model.pt")["ContentLength"] == 7

        def denied(call) -> str:
            with pytest.raises(ClientError) as caught:
                call()
            return caught.value.response["Error"]["Code"]

        assert denied(lambda: worker.put_object(Bucket=other, Key="x", Body=b"x")) == "AccessDenied"
        assert denied(lambda: worker.get_object(Bucket=other, Key="secret.txt")) == "AccessDenied"
        assert denied(lambda: worker.list_objects_v2(Bucket=other)) == "AccessDenied"
        assert denied(lambda: worker.delete_object(Bucket=other, Key="secret.txt")) == "AccessDenied"
        assert denied(lambda: worker.create_bucket(Bucket="new-bucket")) == "AccessDenied"
        assert denied(lambda: worker.delete_bucket(Bucket=project)) == "AccessDenied"
        assert denied(lambda: worker.put_bucket_policy(Bucket=project, Policy=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                                     "Resource": f"arn:aws:s3:::{project}/*"}]}))) == "AccessDenied"
        assert denied(lambda: worker.list_buckets()) == "AccessDenied"
        # enforcement is real: credentials that are no IAM user's are refused too
        assert denied(lambda: s3.client().list_objects_v2(Bucket=project)) == "InvalidAccessKeyId"
    finally:
        s3.stop()
