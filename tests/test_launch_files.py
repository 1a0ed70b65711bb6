"""The launch files for a real cluster (deploy/), checked as far as anything can be without a cloud:

- deploy/ray-cluster.yaml through Ray's own cluster-config validation (the `prepare_config` +
  `validate_config` that `ray up` runs, against ray/autoscaler/ray-schema.json), and each node_config
  against the EC2 RunInstances input shape of botocore's bundled service model; both offline;
- deploy/rayjob.yaml against the OpenAPI schema of KubeRay's RayJob CRD (vendored in deploy/schemas/),
  with the API server's strict field validation (unknown fields refused, list-map keys unique) and the
  KubeRay controller rules for the fields used;
- a mutated copy with one bad field is refused by each validator;
- the values that matter: Ray token authentication on, storage on s3:// URIs, no secret in the files,
  genpipe from the node image, and deploy/run-pipeline.sh (run here with stand-ins for git, dvc and aws)
  doing dvc pull → dvc exp run (repro with the cluster's params) → dvc push.

What needs a cloud (AMIs, instance profiles, the Secrets, the image, the bucket) is listed in deploy/README.md.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shlex
import socket
import stat
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
CLUSTER_YAML = DEPLOY / "ray-cluster.yaml"
RAYJOB_YAML = DEPLOY / "rayjob.yaml"
RUN_SCRIPT = DEPLOY / "run-pipeline.sh"
RAYJOB_SCHEMA = DEPLOY / "schemas" / "rayjob-v1.openapi.json"
CLUSTER_DOCS = (REPO / "docs" / "cluster.md", REPO / "docs" / "_drafts" / "cluster_launch.md")  # page, draft

# Where each launch file keeps the S3 locations: run-pipeline.sh sets these params from GENPIPE_BUCKET.
STORAGE_PARAMS = ("scaling.storage_path", "tune.storage_path", "data.remote")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # an S3 bucket name (no scheme, no prefix)


# ---------------------------------------------------------------------------------------------- helpers


@pytest.fixture
def no_network(monkeypatch):
    """Any connection or name lookup fails the test: the validators must work offline."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network use during validation: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def cluster_config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def rayjob() -> dict:
    docs = [d for d in yaml.safe_load_all(RAYJOB_YAML.read_text()) if d]
    jobs = [d for d in docs if d.get("kind") == "RayJob"]
    assert len(jobs) == 1, f"{RAYJOB_YAML.name}: expected one RayJob, found {len(jobs)}"
    return jobs[0]


def ray_validate(config: dict) -> dict:
    """What `ray up` checks before it calls the cloud (ray/autoscaler/_private/commands.py,
    _bootstrap_config): defaults merged, then the schema and the node-type rules."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def ec2_validate(node_config: dict) -> None:
    """A node_config is the keyword arguments of EC2 RunInstances (Ray adds counts and tags at launch):
    botocore's bundled model refuses an unknown or mistyped field without calling AWS."""
    import botocore.session
    from botocore.validate import validate_parameters

    model = botocore.session.get_session().get_service_model("ec2")
    shape = model.operation_model("RunInstances").input_shape
    validate_parameters({**node_config, "MinCount": 1, "MaxCount": 1}, shape)


def _k8s_strict(schema):
    """The API server's strict field validation (kubectl's default): an object schema with properties
    refuses fields it does not declare (the CRD's structural schema would prune them otherwise)."""
    if isinstance(schema, dict):
        out = {k: _k8s_strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_k8s_strict(v) for v in schema]
    return schema


def _list_type(validator, list_type, instance, schema):
    """x-kubernetes-list-type: `map` items are unique by their list-map keys, `set` items are unique."""
    if not validator.is_type(instance, "array"):
        return
    if list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen = set()
        for item in instance:
            key = tuple(json.dumps(item.get(k), sort_keys=True) for k in keys)
            if key in seen:
                yield jsonschema.ValidationError(f"duplicate entry for list-map keys {keys}: {item}")
            seen.add(key)
    elif list_type == "set":
        items = [json.dumps(i, sort_keys=True) for i in instance]
        if len(items) != len(set(items)):
            yield jsonschema.ValidationError(f"duplicate items in a list of type set: {instance}")


K8S_FORMATS = jsonschema.FormatChecker([])


@K8S_FORMATS.checks("int32")
def _int32(value) -> bool:
    return not isinstance(value, int) or -2**31 <= value < 2**31


@K8S_FORMATS.checks("int64")
def _int64(value) -> bool:
    return not isinstance(value, int) or -2**63 <= value < 2**63


def rayjob_validator(strict: bool = True):
    schema = json.loads(RAYJOB_SCHEMA.read_text())
    if not strict:
        return jsonschema.Draft7Validator(schema)
    cls = jsonschema.validators.extend(jsonschema.Draft7Validator, {"x-kubernetes-list-type": _list_type})
    return cls(_k8s_strict(schema), format_checker=K8S_FORMATS)


def rayjob_errors(doc: dict, strict: bool = True) -> list[str]:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in rayjob_validator(strict).iter_errors(doc)]
    if doc.get("apiVersion") != "ray.io/v1":
        errors.append(f"apiVersion: {doc.get('apiVersion')!r}, the schema is ray.io/v1's")
    if doc.get("kind") != "RayJob":
        errors.append(f"kind: {doc.get('kind')!r}")
    return errors


def ray_containers(job: dict) -> list[dict]:
    spec = job["spec"]["rayClusterSpec"]
    pods = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    return [c for pod in pods for c in pod["spec"]["containers"]]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def all_commands(config: dict) -> list[str]:
    keys = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands")
    return [c for k in keys for c in config.get(k, [])]


def setup_command_writing(config: dict, path: str) -> str:
    [command] = [c for c in config["setup_commands"] if c.rstrip().endswith(f"> {path}")]
    return command


def cluster_env(config: dict) -> dict[str, str]:
    """The settings the cluster YAML writes to ~/.genpipe/cluster.env (the words after printf's format)."""
    words = shlex.split(setup_command_writing(config, "~/.genpipe/cluster.env").split("printf", 1)[1])
    assert words[0] == "export %s\\n" and words[-1] == "~/.genpipe/cluster.env"
    return dict(w.split("=", 1) for w in words[1:-2])


def _tool(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def fake_tools(tmp_path: Path) -> tuple[Path, Path]:
    """Stand-ins for git, dvc and aws that log their arguments (one JSON list a line)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    logline = (f'python3 -c \'import json, sys; print(json.dumps(sys.argv[1:]))\' "$(basename "$0")" "$@"'
               f' >> {shlex.quote(str(log))}\n')
    _tool(bin_dir, "git", logline + 'if [[ $1 == clone ]]; then mkdir -p "${@: -1}"; fi\n')
    _tool(bin_dir, "dvc", logline)
    _tool(bin_dir, "aws", logline + 'case "$*" in *mlflow-username*) echo "pipeline";; '
                                    '*mlflow-password*) echo "p4ss w0rd\'\\$x";; esac\n')
    return bin_dir, log


def run_script(tmp_path: Path, env: dict[str, str], home: Path | None = None):
    """run-pipeline.sh with the stand-ins first on PATH: (the process, the stand-ins' calls)."""
    if (tmp_path / "bin").exists():
        bin_dir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    else:
        bin_dir, log = fake_tools(tmp_path)
    home = home or tmp_path / "home"
    home.mkdir(exist_ok=True)
    base = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(tmp_path)}
    proc = subprocess.run(["bash", str(RUN_SCRIPT)], env={**base, **env}, capture_output=True, text=True,
                          timeout=60)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc, calls


def dvc_calls(calls):
    return [c[1:] for c in calls if c[0] == "dvc"]


def set_params(calls) -> dict[str, str]:
    [exp_run] = [c for c in dvc_calls(calls) if c[:2] == ["exp", "run"]]
    return dict(exp_run[i + 1].split("=", 1) for i, a in enumerate(exp_run) if a in ("-S", "--set-param"))


# ------------------------------------------------------------------------------------- the Ray cluster YAML


def test_ray_cluster_yaml_passes_rays_own_validation_offline(no_network):
    prepared = ray_validate(cluster_config())
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]
    for name, node_type in prepared["available_node_types"].items():
        ec2_validate(node_type["node_config"])
    # Ray merged its defaults (what `ray up` runs next is the cloud part, not done here)
    assert "cluster_synced_files" in prepared
    assert prepared["head_setup_commands"][:1] == prepared["setup_commands"][:1]


@pytest.mark.parametrize("mutation, error", [
    (lambda c: c.update(max_worker=4), jsonschema.ValidationError),                       # unknown top key
    (lambda c: c["available_node_types"]["cpu_worker"].update(min_workers="two"), jsonschema.ValidationError),
    (lambda c: c["available_node_types"]["head"].update(resources={"CPU": -1}), jsonschema.ValidationError),
    (lambda c: c.update(head_node_type="ray.head.default"), ValueError),                  # not a node type
    (lambda c: c.update(max_workers=1), ValueError),                                      # < sum of min_workers
], ids=["unknown-key", "min-workers-type", "negative-cpus", "head-type", "max-workers"])
def test_a_broken_cluster_yaml_is_refused_by_ray(no_network, mutation, error):
    config = cluster_config()
    mutation(config)
    with pytest.raises(error):
        ray_validate(config)


def test_a_mistyped_ec2_field_is_refused_by_botocores_model(no_network):
    from botocore.exceptions import ParamValidationError

    node_config = dict(cluster_config()["available_node_types"]["cpu_worker"]["node_config"])
    node_config["InstanceTyp"] = node_config.pop("InstanceType")
    with pytest.raises(ParamValidationError, match="InstanceTyp"):
        ec2_validate(node_config)
    with pytest.raises(ParamValidationError):
        ec2_validate({**node_config, "IamInstanceProfile": "genpipe-ray-worker"})  # a struct, not a name


def test_ray_cluster_yaml_turns_token_authentication_on_as_rays_docs_say():
    config = cluster_config()
    user = config["auth"]["ssh_user"]
    # the token generated locally (`ray get-auth-token --generate`) on every node, at Ray's default path
    assert config["file_mounts"][f"/home/{user}/.ray/auth_token"] == "~/.ray/auth_token"
    # RAY_AUTH_MODE=token in every shell, and explicitly where Ray starts
    assert any("echo 'export RAY_AUTH_MODE=token' >> ~/.bashrc" in c for c in config["initialization_commands"])
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        [start] = [c for c in config[key] if "ray start" in c]
        assert start.index("export RAY_AUTH_MODE=token") < start.index("ray start"), key
    assert cluster_env(config)["RAY_AUTH_MODE"] == "token"
    assert not re.search(r"RAY_AUTH_MODE=(?!token)", CLUSTER_YAML.read_text())


def test_ray_cluster_yaml_settings_storage_and_credentials():
    config = cluster_config()
    env = cluster_env(config)
    assert BUCKET.match(env["GENPIPE_BUCKET"]), env["GENPIPE_BUCKET"]
    assert env["AWS_DEFAULT_REGION"] == config["provider"]["region"]
    assert env["MLFLOW_TRACKING_URI"].startswith("https://")
    assert "MLFLOW_TRACKING_PASSWORD" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    # S3 through instance profiles: set on every node type, so Ray never attaches its own default role
    profiles = {name: t["node_config"]["IamInstanceProfile"]["Name"]
                for name, t in config["available_node_types"].items()}
    assert profiles == {"head": "genpipe-ray-head", "cpu_worker": "genpipe-ray-worker"}
    # the MLflow user comes from SSM Parameter Store, decrypted with the node's role
    secrets = setup_command_writing(config, "~/.genpipe/secrets.env")
    assert secrets.count("aws ssm get-parameter") == 2 and secrets.count("--with-decryption") == 2
    assert "umask 077" in secrets
    # the head runs the driver only; at least two worker nodes for the 2-worker DDP run
    assert "--num-cpus=0" in " ".join(config["head_start_ray_commands"])
    assert config["available_node_types"]["cpu_worker"]["min_workers"] >= int(env["GENPIPE_NUM_WORKERS"]) == 2


def test_ray_cluster_nodes_install_genpipe_from_a_wheel_never_the_checkout():
    config = cluster_config()
    mounts = config["file_mounts"]
    assert mounts["/home/ec2-user/genpipe-dist"] == "./dist"
    assert mounts["/home/ec2-user/genpipe-deploy/run-pipeline.sh"] == "./deploy/run-pipeline.sh"
    assert not any(Path(src).resolve() == REPO for src in mounts.values()), "the checkout is never mounted"
    for src in mounts.values():  # what the repository provides is there (the token and dist/ are the user's)
        if src.startswith("./deploy/"):
            assert (REPO / src).is_file(), src
    assert any("pip install" in c and "~/genpipe-dist/genpipe-*.whl" in c for c in config["setup_commands"])
    assert not any(re.search(r"pip install .*(-e |--editable)", c) for c in all_commands(config))
    assert not config.get("cluster_synced_files") and not config.get("rsync_exclude")


def test_ray_cluster_yaml_setup_writes_the_env_files_and_the_pipeline_runs_from_them(tmp_path):
    """The cluster YAML's own setup commands (with a stand-in `aws`), then run-pipeline.sh from them."""
    config = cluster_config()
    bin_dir, log = fake_tools(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home)}
    for path in ("~/.genpipe/cluster.env", "~/.genpipe/secrets.env"):
        subprocess.run(["bash", "-c", setup_command_writing(config, path)], env=env, check=True, timeout=30)
    secrets = home / ".genpipe" / "secrets.env"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / ".genpipe").stat().st_mode) == 0o700
    shown = subprocess.run(["bash", "-c", "source ~/.genpipe/secrets.env && printf '%s|%s' "
                            "\"$MLFLOW_TRACKING_USERNAME\" \"$MLFLOW_TRACKING_PASSWORD\""],
                           env=env, capture_output=True, text=True, check=True).stdout
    assert shown == "pipeline|p4ss w0rd'$x"  # quoted safely, whatever the password holds

    proc, calls = run_script(tmp_path, {}, home=home)
    assert proc.returncode == 0, proc.stderr
    bucket = cluster_env(config)["GENPIPE_BUCKET"]
    assert set_params(calls) == {"scaling.storage_path": f"s3://{bucket}/ray/train",
                                 "tune.storage_path": f"s3://{bucket}/ray/tune",
                                 "data.remote": f"s3://{bucket}/prepared", "scaling.num_workers": "2"}


# ------------------------------------------------------------------------------------------ the RayJob


def test_rayjob_matches_the_kuberay_crd_schema(no_network):
    job = rayjob()
    assert rayjob_errors(job) == []
    assert rayjob_errors(job, strict=False) == []


@pytest.mark.parametrize("mutation, where", [
    (lambda j: j["spec"]["rayClusterSpec"]["authOptions"].update(mode="tokens"), "authOptions/mode"),
    (lambda j: j["spec"].update(entrypiont=j["spec"].pop("entrypoint")), "spec: Additional properties"),
    (lambda j: j["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(replicas="two"), "replicas"),
    (lambda j: j["spec"]["rayClusterSpec"]["headGroupSpec"].pop("template"), "headGroupSpec: 'template'"),
    (lambda j: j["spec"].update(shutdownAfterJobFinishes="yes"), "shutdownAfterJobFinishes"),
    (lambda j: j["spec"].update(activeDeadlineSeconds=2**31), "is not a 'int32'"),
    (lambda j: j["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "GENPIPE_BUCKET", "value": "other"}), "duplicate entry"),
    (lambda j: j.update(apiVersion="ray.io/v2"), "apiVersion"),
], ids=["auth-mode-enum", "unknown-field", "replicas-type", "required-template", "boolean", "int32",
        "duplicate-env", "api-version"])
def test_a_broken_rayjob_is_refused_by_the_schema(no_network, mutation, where):
    job = rayjob()
    mutation(job)
    errors = rayjob_errors(job)
    assert any(where in e for e in errors), errors


def test_rayjob_follows_the_kuberay_controller_rules_for_the_fields_it_uses():
    """Rules KubeRay checks in its controller (ray-operator/controllers/ray/utils/validation.go, v1.7.0)
    and CEL rules the schema carries but jsonschema does not evaluate: the fields they guard are unused."""
    job = rayjob()
    name, spec = job["metadata"]["name"], job["spec"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name)  # a DNS-1035 label
    assert len(name) <= 53 - 6  # MaxRayJobNameLength = MaxRayClusterNameLength - 6
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] >= 0
    assert spec["activeDeadlineSeconds"] > 0 and spec["backoffLimit"] >= 0
    assert spec["submissionMode"] == "K8sJobMode"
    cluster = spec["rayClusterSpec"]
    assert not cluster["authOptions"].get("enableK8sTokenAuth"), "K8s token auth is refused for a RayJob"
    for group in cluster["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    assert sum(g["replicas"] for g in cluster["workerGroupSpecs"]) >= 2
    for unchecked in ("deletionStrategy", "managedBy"):
        assert unchecked not in spec
    assert "managedBy" not in cluster and "gcsFaultToleranceOptions" not in cluster


def test_rayjob_turns_token_authentication_on():
    job = rayjob()
    auth = job["spec"]["rayClusterSpec"]["authOptions"]
    assert auth == {"mode": "token", "secretName": "genpipe-ray-token"}
    import ray

    assert job["spec"]["rayClusterSpec"]["rayVersion"] == ray.__version__  # authOptions needs Ray >= 2.52
    for container in ray_containers(job):  # the operator never overrides a container's own setting
        assert not {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & set(env_of(container))


def test_rayjob_credentials_come_from_secrets_and_roles_and_storage_is_s3(tmp_path):
    job = rayjob()
    containers = ray_containers(job)
    pods = [job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]] + \
           [g["template"] for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]]
    assert {p["spec"]["serviceAccountName"] for p in pods} == {"genpipe"}  # IRSA / EKS Pod Identity
    for container in containers:
        env = env_of(container)
        for var, key in (("MLFLOW_TRACKING_USERNAME", "username"), ("MLFLOW_TRACKING_PASSWORD", "password")):
            assert env[var] == {"name": var, "valueFrom": {"secretKeyRef": {"name": "genpipe-mlflow", "key": key}}}
        assert env["MLFLOW_TRACKING_URI"]["value"].startswith("https://")
        assert container["envFrom"] == [{"secretRef": {"name": "genpipe-aws", "optional": True}}]
        for var in env:  # anything secret-like is a reference, never a literal
            if re.search(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", var):
                assert "value" not in env[var], var
    head_env = env_of(containers[0])
    for container in containers[1:]:  # workers log to the same server with the same user, same region
        for var in ("AWS_DEFAULT_REGION", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
                    "MLFLOW_TRACKING_PASSWORD"):
            assert env_of(container)[var] == head_env[var], var
    bucket = head_env["GENPIPE_BUCKET"]["value"]
    assert BUCKET.match(bucket), bucket
    # the entrypoint runs the pipeline script from its ConfigMap; with the head's settings it uses S3
    head_pod = pods[0]["spec"]
    mount = containers[0]["volumeMounts"][0]
    [volume] = [v for v in head_pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == "genpipe-run-pipeline"
    assert job["spec"]["entrypoint"] == f"bash {mount['mountPath']}/{RUN_SCRIPT.name}"
    env = {k: v["value"] for k, v in head_env.items() if "value" in v}
    proc, calls = run_script(tmp_path, {**env, "MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p",
                                        "RAY_AUTH_MODE": "token"})
    assert proc.returncode == 0, proc.stderr
    assert {k: v for k, v in set_params(calls).items() if k in STORAGE_PARAMS} == {
        "scaling.storage_path": f"s3://{bucket}/ray/train", "tune.storage_path": f"s3://{bucket}/ray/tune",
        "data.remote": f"s3://{bucket}/prepared"}


def test_rayjob_runs_genpipe_from_its_image_never_the_checkout():
    job = rayjob()
    images = {c["image"] for c in ray_containers(job)}
    assert len(images) == 1, images  # head and workers run the same genpipe build
    [image] = images
    assert re.fullmatch(r"[\w.-]+(:\d+)?(/[\w.-]+)+:[\w.-]+", image) and not image.startswith("rayproject/")
    pods = [job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]] + \
           [g["template"] for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]]
    for pod in pods:
        assert not any("hostPath" in v or "nfs" in v or "persistentVolumeClaim" in v
                       for v in pod["spec"].get("volumes", [])), "no shared disk, no host checkout"
    assert "runtimeEnvYAML" not in job["spec"]  # no working_dir upload of a checkout either


# --------------------------------------------------------------------------------- the pipeline script


def test_run_pipeline_script_parses():
    subprocess.run(["bash", "-n", str(RUN_SCRIPT)], check=True)
    assert os.access(RUN_SCRIPT, os.X_OK)


def test_run_pipeline_pulls_reruns_with_s3_params_and_pushes(tmp_path):
    env = {"GENPIPE_BUCKET": "team-bucket", "GENPIPE_GIT_URL": "https://git.example.com/team/genpipe.git",
           "GENPIPE_GIT_REF": "cluster", "MLFLOW_TRACKING_URI": "https://mlflow.example.internal",
           "MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p", "RAY_AUTH_MODE": "token",
           "GENPIPE_EXP_PUSH": "1"}
    proc, calls = run_script(tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    [clone] = [c for c in calls if c[:2] == ["git", "clone"]]
    assert clone[-3:-1] == ["cluster", "https://git.example.com/team/genpipe.git"]
    dvc = dvc_calls(calls)
    verbs = [" ".join(c[:2]) for c in dvc]
    assert verbs == ["remote add", "pull --allow-missing", "exp run", "push", "exp push"]
    assert dvc[0] == ["remote", "add", "--local", "--force", "--default", "cluster", "s3://team-bucket/dvc"]
    assert set_params(calls) == {"scaling.storage_path": "s3://team-bucket/ray/train",
                                 "tune.storage_path": "s3://team-bucket/ray/tune",
                                 "data.remote": "s3://team-bucket/prepared", "scaling.num_workers": "2"}
    assert all(v.startswith("s3://") for k, v in set_params(calls).items() if k in STORAGE_PARAMS)
    assert dvc[-1][:4] == ["exp", "push", "--no-cache", "origin"]


@pytest.mark.parametrize("change, message", [
    ({"RAY_AUTH_MODE": "disabled"}, "RAY_AUTH_MODE is 'disabled', expected 'token'"),
    ({"GENPIPE_BUCKET": ""}, "GENPIPE_BUCKET: the S3 bucket"),
    ({"GENPIPE_BUCKET": "s3://team-bucket"}, "must be a bucket name"),
    ({"MLFLOW_TRACKING_PASSWORD": ""}, "MLFLOW_TRACKING_PASSWORD: the MLflow pipeline password"),
], ids=["auth-off", "no-bucket", "bucket-uri", "no-password"])
def test_run_pipeline_refuses_a_bad_environment_before_any_work(tmp_path, change, message):
    env = {"GENPIPE_BUCKET": "team-bucket", "GENPIPE_GIT_URL": "https://git.example.com/g.git",
           "MLFLOW_TRACKING_URI": "https://mlflow.example.internal", "MLFLOW_TRACKING_USERNAME": "u",
           "MLFLOW_TRACKING_PASSWORD": "p", "RAY_AUTH_MODE": "token", **change}
    proc, calls = run_script(tmp_path, env)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert calls == []  # nothing cloned, pulled or run


# ------------------------------------------------------------------------------------ no secret anywhere

SECRET_PATTERNS = [
    r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",                                   # an AWS access key id
    r"(?i)aws_secret_access_key\s*[:=]\s*\S",                         # a secret key given a value
    r"(?i)aws_access_key_id\s*[:=]\s*\S",
    r"(?i)(password|passwd)['\"]?\s*[:=]\s*['\"]?(?![?$<{(])[^\s'\"]{4,}",  # a literal password
    r"(?i)RAY_AUTH_TOKEN\s*[:=]\s*\S",                                # a literal Ray token
    r"(?i)auth_token\s*[:=]\s*['\"]?[A-Za-z0-9+/=]{16,}",
    r"://[^/\s:@]+:[^/\s@]+@",                                        # credentials inside a URL
]


@pytest.mark.parametrize("path", [CLUSTER_YAML, RAYJOB_YAML, RUN_SCRIPT, DEPLOY / "README.md"],  # docs show placeholders
                         ids=lambda p: p.name)
def test_no_credentials_are_written_in_the_launch_files(path):
    text = path.read_text()
    found = [m.group(0) for p in SECRET_PATTERNS for m in re.finditer(p, text)]
    assert not found, f"{path.name}: {found}"


@pytest.mark.parametrize("planted", [
    "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "MLFLOW_TRACKING_PASSWORD=hunter22",
    "password: 'hunter22'",
    "export RAY_AUTH_TOKEN=3c1f0b8e",
    "GENPIPE_GIT_URL=https://bot:ghp_abc123@git.example.com/team/genpipe.git",
])
def test_a_planted_credential_is_found(planted):
    text = CLUSTER_YAML.read_text() + "\n# " + planted + "\n"
    assert [m.group(0) for p in SECRET_PATTERNS for m in re.finditer(p, text)], planted


def test_params_file_holds_no_credentials():
    text = (REPO / "params.yaml").read_text()
    assert not re.search(r"(?im)^\s*(aws_\w+|\w*password\w*|\w*secret\w*|\w*token\w*)\s*:", text)


def test_the_cluster_docs_name_every_variable_the_launch_files_use():
    """docs/cluster.md (or its draft, until merged) explains every variable the files set or read."""
    used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", RUN_SCRIPT.read_text()))
    used |= set(cluster_env(cluster_config()))
    used |= {e for c in ray_containers(rayjob()) for e in env_of(c)}
    used -= {"HOME", "TMPDIR", "PATH"}
    text = "\n".join(p.read_text() for p in CLUSTER_DOCS if p.exists())
    assert text, "no docs/cluster.md"
    rows = [line for line in text.splitlines() if line.startswith("|")]  # the variables table
    missing = sorted(v for v in used if not any(f"`{v}`" in row for row in rows))
    assert not missing, f"the cluster docs do not explain {missing}"
