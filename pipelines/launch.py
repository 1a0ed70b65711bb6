"""The Ray launcher every Ray-using stage shares (train, tune): joining or starting Ray, the ScalingConfig
of the `scaling` section, refusing what the cluster can never hold, and a plain message from a failure
that Ray wrapped. What runs on the workers is pipelines/ray_worker.py."""
from __future__ import annotations

import os
import sys


class LaunchError(RuntimeError):
    """The cluster cannot run what the params ask for; the message names the keys and what the cluster has."""


# Tells the workers whether the driver's console is a terminal: rank 0 then sends its progress to a bar the
# driver draws (Ray's tqdm, on stderr), else prints a plain line every 10 % (pipelines/ray_worker.py).
CONSOLE_ENV = "GENPIPE_CONSOLE_TTY"

# One machine: no spot preemption to watch and no Prometheus to feed (each costs an actor or a thread
# per run, which a sweep of short trials pays again and again); Train's controller polls its workers
# every 0.5 s instead of 2 s, so reports, checkpoints and failures are seen sooner.
LOCAL_RAY_ENV = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
                 "RAY_TRAIN_METRICS_ENABLED": "0", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}


def init_ray() -> None:
    """Join $RAY_ADDRESS, or start a private local Ray (see the comment inside)."""
    import ray

    if ray.is_initialized():
        return
    # RAY_ADDRESS=ray://… or host:port joins a cluster; unset, a private local Ray starts
    # ("local" rather than auto-discovery, which is ambiguous when other local Rays run),
    # without the dashboard (slow to start on small machines). Ray's INFO chatter is hidden
    # so the stage log shows training progress; our prints reach the driver unpatched.
    address = os.environ.get("RAY_ADDRESS") or "local"
    env = LOCAL_RAY_ENV if address == "local" else {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0", **forwarded_env()}
    env = {**env, CONSOLE_ENV: "1" if sys.stderr.isatty() else "0"}
    runtime_env = {"env_vars": env, **({"worker_process_setup_hook": "pipelines.launch.pin_ray_address"}
                                       if address == "local" else {})}
    ray.init(address=address, **({"include_dashboard": False} if address == "local" else {}),
             logging_config=ray.LoggingConfig(log_level="ERROR"), runtime_env=runtime_env)


# Standard variables a worker on another node needs to reach the object store and the tracking server as
# the driver does; forwarded when they are set on the driver (a node's own, from its image or instance
# role, are used where the driver has none). GENPIPE_FORWARD_ENV=0 forwards nothing.
FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION", "MLFLOW_TRACKING_USERNAME",
                 "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "MLFLOW_S3_ENDPOINT_URL")


def forwarded_env() -> dict[str, str]:
    if os.environ.get("GENPIPE_FORWARD_ENV", "1") == "0":
        return {}
    return {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}


def ray_storage(storage) -> dict:
    """RunConfig's storage_path and storage_filesystem for a `components.storage.Location`: with a filesystem
    given, Ray takes the path inside it (no s3:// prefix)."""
    if storage.is_local:
        return {"storage_path": storage.path}
    return {"storage_path": storage.path, "storage_filesystem": storage.fs}


def remote_worker_nodes() -> list[str]:
    """Addresses of the alive Ray nodes that can run a worker (they have CPUs) and are not this driver's machine."""
    import ray

    here = ray.util.get_node_ip_address()
    return sorted({n["NodeManagerAddress"] for n in ray.nodes()
                   if n["Alive"] and n["Resources"].get("CPU", 0) > 0 and n["NodeManagerAddress"] != here})


def check_reachable_by_workers(where: dict[str, str]) -> None:
    """Refuse a local path or store (`where`: what the user sets → the path or URI the workers will open) when
    workers run on other nodes: there, no file of the driver's machine exists."""
    from components.storage import is_uri

    local = {key: value for key, value in where.items() if not is_uri(value) or value.startswith(("file:", "sqlite:"))}
    if not local or not (others := remote_worker_nodes()):
        return
    key, value = next(iter(local.items()))
    fix = ("an MLflow tracking server (http://…)" if key.startswith(("tracking", "MLFLOW")) else
           "a URI every node reaches (s3://bucket/prefix)")
    raise LaunchError(f"{key} is {value}, on this machine only, but Ray workers run on other nodes "
                      f"({', '.join(others)}) that cannot see its files; set {key} to {fix} (docs/cluster.md)")


def pin_ray_address() -> None:
    """Runs in each worker of a private local Ray: pins $RAY_ADDRESS to the worker's own cluster.

    Ray Train's placement-group cleaner (a detached actor) queries the State API without an address, which
    auto-detects; with a second local Ray on the machine (another stage, a sweep, a test) that raises
    "Found multiple active Ray instances" in its thread, prints a traceback to the stage log and leaves
    placement groups of a crashed controller uncleaned. A private Ray writes no ray_current_cluster file
    to disambiguate, so each worker is told its own cluster instead."""
    import ray

    os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)


def check_resources(params) -> None:
    """Refuse before start-up what the cluster can never hold (Ray would wait for it forever)."""
    import ray

    total = ray.cluster_resources()
    s = params.scaling
    n = s.num_workers
    need = {"CPU": (n * s.cpus_per_worker, f"scaling.num_workers = {n} × scaling.cpus_per_worker = {s.cpus_per_worker}"),
            **({"GPU": (n, f"scaling.num_workers = {n} with scaling.use_gpu")} if s.use_gpu else {}),
            **{name: (n * amount, f"scaling.num_workers = {n} × scaling.resources_per_worker[{name!r}] = {amount:g}")
               for name, amount in s.resources_per_worker.items()}}
    for name, (amount, why) in need.items():
        if amount > total.get(name, 0):
            raise LaunchError(f"{why} needs {amount:g} {name}{'s' if name in ('CPU', 'GPU') else ''}; "
                             f"the Ray cluster has {total.get(name, 0):g}")
    if s.placement_strategy == "STRICT_SPREAD":
        alive = sum(1 for node in ray.nodes() if node["Alive"])
        if n > alive:
            raise LaunchError(f"scaling.placement_strategy = STRICT_SPREAD puts each of the {n} workers on its own node; "
                             f"the Ray cluster has {alive} nodes")


def ray_scaling(s):
    """Ray Train's ScalingConfig for the `scaling` section (the train stage and every sweep trial)."""
    from ray.train import ScalingConfig

    return ScalingConfig(num_workers=s.num_workers, use_gpu=s.use_gpu, placement_strategy=s.placement_strategy,
                         resources_per_worker={"CPU": s.cpus_per_worker, **s.resources_per_worker})
