"""Shared fixtures: tiny configs on scikit-learn's 8×8 digits, a temp SQLite MLflow store."""
from __future__ import annotations

from pathlib import Path

import pytest

from components.config import Params
from pipelines import prepare

REPO = Path(__file__).resolve().parents[1]


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


# The longest modules first: under `pytest -n 2 --dist loadfile` (the README's test command) they start
# at once on the two workers and the short modules fill in around them.
LONGEST_FIRST = ("test_tune_sweep", "test_pipeline_e2e", "test_cluster")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__, len(rank)))  # stable: order within a module kept
