"""The training core in one process: finite losses, exact resume, weights-only checkpoints, NaN stops."""
from __future__ import annotations

import pytest
import torch

from components.training import checkpoint as ckpt
from components.training.loop import NonFiniteLossError, plan
from conftest import tiny_params, train_in_process


def test_trains_with_finite_losses_and_logs_on_schedule(run_root):
    params = tiny_params(run_root)
    rec, out = train_in_process(params, run_root)
    assert [s for s, _ in rec.logs] == [2, 4, 6]
    for _, m in rec.logs:
        assert set(m) >= {"d_loss", "g_loss", "d_real", "d_fake", "images_per_s"}
        assert all(torch.isfinite(torch.tensor(v)) for v in m.values())
        assert 0.0 < m["d_real"] < 1.0 and 0.0 < m["d_fake"] < 1.0 and m["images_per_s"] > 0
    assert [s["step"] for s in rec.states] == [3, 6] and out["step"] == 6
    assert rec.grids and rec.grids[-1][1].dtype.name == "uint8"


def test_checkpoint_is_weights_only_and_complete(run_root, tmp_path):
    params = tiny_params(run_root)
    rec, _ = train_in_process(params, run_root)
    ckpt.save(rec.states[-1], tmp_path)
    state = torch.load(tmp_path / ckpt.STATE_FILE, weights_only=True)  # refuses any pickled code
    assert state["step"] == 6
    assert {"generator", "discriminator", "opt_g", "opt_d", "rng", "epoch", "meta"} <= set(state)
    assert set(state["rng"]) == {"torch", "numpy", "python"}
    assert state["opt_g"]["state"], "optimizer moments must be saved"


def test_resume_reproduces_the_uninterrupted_run_exactly(run_root):
    straight, _ = train_in_process(tiny_params(run_root), run_root)
    first, _ = train_in_process(tiny_params(run_root, train={"max_steps": 3}), run_root)
    resumed, out = train_in_process(tiny_params(run_root), run_root, resume=first.states[-1])
    assert out["started_at"] == 3 and out["step"] == 6
    a, b = straight.states[-1], resumed.states[-1]
    for key in a["generator"]:
        assert torch.equal(a["generator"][key], b["generator"][key]), key
    assert [m for s, m in straight.logs if s == 6][0]["g_loss"] == [m for s, m in resumed.logs if s == 6][0]["g_loss"]


def test_same_seed_same_weights_different_seed_different(run_root):
    a, _ = train_in_process(tiny_params(run_root), run_root)
    b, _ = train_in_process(tiny_params(run_root), run_root)
    c, _ = train_in_process(tiny_params(run_root, seed=1), run_root)
    key = next(iter(a.states[-1]["generator"]))
    assert torch.equal(a.states[-1]["generator"][key], b.states[-1]["generator"][key])
    assert not torch.equal(a.states[-1]["generator"][key], c.states[-1]["generator"][key])


def test_batch_larger_than_the_data_is_refused(run_root):
    params = tiny_params(run_root, train={"batch_size": 5000})
    with pytest.raises(ValueError, match="train.batch_size = 5000"):
        plan(params, params.prepared_path(run_root), 1)
    # With 2 workers each holds half: a batch that fits once does not fit twice.
    params = tiny_params(run_root, train={"batch_size": 1000})
    plan(params, params.prepared_path(run_root), 1)
    with pytest.raises(ValueError, match="2 worker"):
        plan(params, params.prepared_path(run_root), 2)


def test_nan_loss_stops_and_names_the_step(run_root, nan_objective):
    name, _ = nan_objective(5)  # an objective registered like any other (for this test only) that turns NaN
    params = tiny_params(run_root, train={"objective": name})
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 5") as e:
        train_in_process(params, run_root)
    assert e.value.step == 5
