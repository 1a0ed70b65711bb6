"""Shared fixtures and helpers: tiny configs on scikit-learn's 8×8 digits, a temp SQLite MLflow store,
the in-process training recorder, temporary registry entries (removed after the test), a local Ray."""
from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
import yaml

from components.config import Params, load_params
from components.families import FAMILIES
from pipelines import prepare

REPO = Path(__file__).resolve().parents[1]


def copy_project(root: Path, tiny: dict) -> Path:
    """The project's pipeline (code, dvc.yaml, .gitignore) in `root`, params.yaml with `tiny`'s sections
    updated: what the dvc repro tests run."""
    for name in ("components", "pipelines"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore", "data/own/README.md"):  # data/own: data.path's default, a DVC dep
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, root / name)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in tiny.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def tiny_params(root: Path, **sections) -> Params:
    """Params for a fast run under `root`: digits, small nets, a few steps, a private MLflow store."""
    raw = {
        "seed": 0,
        "data": {"source": "digits", "prepared_dir": str(root / "prepared"), "row_group_rows": 64},
        "model": {"latent_dim": 16, "g_channels": 16, "d_channels": 16},
        "train": {"epochs": 1, "max_steps": 6, "batch_size": 32, "log_every": 2, "checkpoint_every": 3,
                  "output_dir": str(root / "train")},
        "scaling": {"num_workers": 1, "storage_path": str(root / "checkpoints")},
        "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}"},
        "evaluate": {"error_seeds": 2},  # an error bar at the least cost
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            raw[section] = {**raw.get(section, {}), **values}
        else:
            raw[section] = values
    return Params.model_validate(raw)


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory) -> Path:
    """A root whose prepared/digits holds the digits dataset, shared read-only by tests."""
    root = tmp_path_factory.mktemp("digits")
    prepare.run(tiny_params(root), root)
    return root


@pytest.fixture
def run_root(tmp_path, digits_root) -> Path:
    """A fresh root per test that reuses the prepared digits (symlink: read-only use)."""
    (tmp_path / "prepared").symlink_to(digits_root / "prepared")
    return tmp_path


class Recorder:
    """What the training loop reports (logs, sample grids, checkpoint states), kept in memory."""

    def __init__(self):
        self.logs, self.grids, self.states = [], [], []

    def log(self, step, metrics):
        self.logs.append((step, metrics))

    def samples(self, step, epoch, image, suffix):
        self.grids.append((step, image))

    def checkpoint(self, step, state, metrics):
        self.states.append(state)


def train_in_process(params: Params, root: Path, resume=None) -> tuple[Recorder, dict]:
    """The training core in this process (one worker): its recorder and its result."""
    from components.training.loop import Worker, train_model

    rec = Recorder()
    out = train_model(params, params.prepared_path(root), Worker(), rec, resume)
    return rec, out


def family_params(name: str):
    """The params a family runs with: its first preset, or params.yaml with the family set."""
    family = FAMILIES.get(name)
    if family.presets:
        return load_params(REPO / "params.yaml", [f"preset={family.presets[0]}"])
    return load_params(REPO / "params.yaml", [f"model.family={name}"])


def exported(name, **model):
    """A family's network (untrained) and the spec its pyfunc sees; `model`: model-section overrides."""
    params = family_params(name)
    if model:
        params = params.with_overrides({f"model.{k}": v for k, v in model.items()})
    image_shape = {"mlp": [2], "seqgan": [6], "relgan": [6]}.get(name, [1, 8, 8])  # a point, a token sequence, an image
    spec = {"model": params.model.model_dump(mode="json"), "image_shape": image_shape,
            "class_names": [str(i) for i in range(10)], **params.family.spec(params)}
    if name in ("seqgan", "relgan"):
        spec["vocabulary"] = ["<eos>", "<unk>", "a", "b", "c"]
    if params.family.pairing:
        spec["input_shape"] = image_shape
    if name == "ddpm":
        spec["diffusion"].update(channels=[8, 16], timesteps=20, sample_steps=2)
    if name == "ddgan":
        spec["ddgan"].update(channels=[8, 16])
    return params.family, params.family.build_generator(spec), spec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unregister(registry, name: str) -> None:
    if hasattr(registry, "unregister"):
        registry.unregister(name)
    else:  # a Registry without unregister(): remove the entry directly
        del registry._entries[name]


@pytest.fixture
def register_entry():
    """register_entry(registry, name, obj) -> name: a registry entry for this test only; every entry
    registered through it is removed at teardown, so no test leaves names behind in a global registry."""
    added = []

    def register(registry, name: str, obj):
        registry.register(name)(obj)
        added.append((registry, name))
        return name

    yield register
    for registry, name in reversed(added):
        _unregister(registry, name)


class NanFrom:
    """A D loss that is the non-saturating one until its `bad_call`-th call and NaN from then on; counts
    its calls."""

    def __init__(self, bad_call: int):
        self.calls, self.bad = 0, bad_call

    def d_loss(self, real, fake, _target):
        import torch.nn.functional as F

        self.calls += 1
        loss = F.softplus(-real).mean() + F.softplus(fake).mean()
        return loss * float("nan") if self.calls >= self.bad else loss


@pytest.fixture
def nan_objective(register_entry):
    """nan_objective(bad_call) -> (name, NanFrom): an objective registered for this test only whose D loss
    turns NaN at its `bad_call`-th call (one call per D step)."""
    import torch.nn.functional as F

    from components.objectives import OBJECTIVES, Objective

    def make(bad_call: int) -> tuple[str, NanFrom]:
        nan = NanFrom(bad_call)
        name = register_entry(OBJECTIVES, f"test_nan_from_{bad_call}",
                              Objective(d_loss=nan.d_loss, g_loss=lambda f: F.softplus(-f).mean()))
        return name, nan

    return make


@pytest.fixture(scope="module")
def local_ray(request):
    """A local Ray for the module that asks for it (`pytest.mark.usefixtures("local_ray")`), with the
    module's RAY_NUM_CPUS logical CPUs (default 2); shut down after the module."""
    import ray

    num_cpus = getattr(request.module, "RAY_NUM_CPUS", 2)
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
             logging_config=ray.LoggingConfig(log_level="ERROR"))
    yield
    ray.shutdown()


_BYSTANDER = """
import ray, time
ray.init(address="local", num_cpus=1, include_dashboard=False, logging_config=ray.LoggingConfig(log_level="ERROR"))
print("up", flush=True)
time.sleep(3600)
"""


@pytest.fixture
def bystander_ray():
    """A second local Ray on the machine while the test runs, as a user's other stage or sweep (or the other
    xdist worker's `local_ray`) has one: what a stage's own private Ray must not be confused by."""
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", _BYSTANDER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "up", "the bystander Ray did not start"
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # KeyboardInterrupt in the sleep: Ray's atexit shuts its processes down
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# The longest modules first: under `pytest -n 2 --dist loadfile` (the README's test command) they start
# at once on the two workers and the short modules fill in around them.
LONGEST_FIRST = ("test_cluster_nodisk", "test_pipeline_e2e", "test_cluster", "test_dvc_remote", "test_tune_sweep",
                 "test_tracking_resilience", "test_team_tracking")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__, len(rank)))  # stable: order within a module kept
