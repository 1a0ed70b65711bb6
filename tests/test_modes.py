"""The 2D mode-collapse benchmark: mixtures as Parquet points, the mode metrics on hand-made sample
sets, the whole stage chain on a mixture, and the `genpipe modes` sweep."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from components.benchmarks.modes import configurations
from components.config import load_params
from components.data.mixtures import grid_centers, ring_centers
from components.data.shards import load_split, read_manifest
from components.metrics.modes import mode_scores
from pipelines import evaluate, evaluator, modes, prepare, promote, train

RING = ring_centers()


def test_ring8_has_eight_distinct_modes_on_the_unit_circle():
    assert RING.shape == (8, 2)
    np.testing.assert_allclose(np.linalg.norm(RING, axis=1), 1.0)
    pairwise = np.linalg.norm(RING[:, None] - RING[None], axis=-1) + np.eye(8) * 9
    assert pairwise.min() == pytest.approx(2 * math.sin(math.pi / 8))  # neighbours 45° apart, none duplicated
    assert grid_centers().shape == (25, 2) and set(grid_centers()[:, 0]) == {-4, -2, 0, 2, 4}


def test_all_modes_exact_scores_perfectly():
    s = mode_scores(np.repeat(RING, 10, axis=0), RING, sigma=0.01)
    assert (s["modes"], s["high_quality"]) == (8, 1.0) and s["reverse_kl"] == pytest.approx(0.0, abs=1e-12)


def test_samples_at_one_mode_capture_one_mode_with_maximal_reverse_kl():
    s = mode_scores(np.tile(RING[3], (100, 1)) + 0.005, RING, sigma=0.01)
    assert (s["modes"], s["high_quality"]) == (1, 1.0) and s["reverse_kl"] == pytest.approx(math.log(8))


def test_samples_far_from_every_mode_are_not_high_quality():
    s = mode_scores(np.zeros((50, 2)), RING, sigma=0.01)  # the ring's centre: 1.0 from every mode
    assert (s["modes"], s["high_quality"]) == (0, 0.0)
    # 3σ is the boundary: 2.9σ away is high quality, 3.1σ is not
    edge = mode_scores(np.array([[1 + 0.029, 0.0], [1 + 0.031, 0.0]]), RING, sigma=0.01)
    assert edge["high_quality"] == 0.5


def test_reverse_kl_of_a_skewed_histogram():
    pts = np.concatenate([np.tile(RING[0], (3, 1)), np.tile(RING[1], (1, 1))])  # p = (3/4, 1/4, 0, …)
    expected = 0.75 * math.log(0.75 * 8) + 0.25 * math.log(0.25 * 8)
    assert mode_scores(pts, RING, 0.01)["reverse_kl"] == pytest.approx(expected)


def _ring_params(root, *overrides):
    return load_params(None, ["preset=ring8", f"data.prepared_dir={root / 'prepared'}",
                              f"train.output_dir={root / 'train'}", f"evaluator.output_dir={root / 'evaluator'}",
                              f"evaluate.report={root / 'metrics.json'}", "evaluate.error_seeds=1", f"evaluate.grid={root / 'samples.png'}",
                              f"promote.report={root / 'promotion.json'}", f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
                              f"scaling.storage_path={root / 'ckpt'}", *overrides])


def test_mixture_is_prepared_as_parquet_points_with_its_mixture(tmp_path):
    params = _ring_params(tmp_path)
    out = prepare.run(params, tmp_path)
    manifest = read_manifest(out)
    assert manifest["kind"] == "points" and manifest["image_shape"] == [2] and manifest["num_classes"] == 8
    assert manifest["mixture"]["sigma"] == 0.01 and np.allclose(manifest["mixture"]["centers"], RING)
    x, y = load_split(out, "test")
    assert x.dtype == np.float32 and x.shape == (10_000, 2) and np.bincount(y).tolist() == [1250] * 8
    # the data itself: every mode, ~98.9% within 3σ (P(χ²₂ ≤ 9) = 1 - e^{-4.5}), uniform histogram
    s = mode_scores(x, RING, 0.01)
    assert s["modes"] == 8 and s["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.005)
    assert s["reverse_kl"] < 0.001


def test_stage_chain_on_ring8_reports_mode_metrics_and_promotes_on_reverse_kl(tmp_path):
    # 2,500 points are cheap: the logged model serves them in one request (its model_config's limit)
    params = _ring_params(tmp_path, "train.max_steps=300", "train.checkpoint_every=150", "serving.max_samples=2500")
    prepare.run(params, tmp_path)
    evaluator.run(params, tmp_path)
    summary = train.run(params, tmp_path, use_ray=False)
    assert summary["steps"] == 300
    report = evaluate.run(params, tmp_path)
    assert report["evaluator_kind"] == "modes" and report["num_samples"] == 2500
    assert 0 <= report["modes"] <= 8 and 0.0 <= report["high_quality"] <= 1.0
    assert report["floor_high_quality"] > 0.98  # the held-out real points
    assert report["modes"] >= 4, report  # 300 steps of the preset already spread over the ring
    decision = promote.run(params, tmp_path)
    assert decision["metric"] == "reverse_kl" and decision["promoted"] is True
    # the registered pyfunc serves points: N×2, the EMA generator's (same latents → the evaluated samples)
    import mlflow

    mlflow.set_tracking_uri(params.tracking.uri)
    model = mlflow.pyfunc.load_model(f"models:/{params.registered_model_name}@champion")
    pts = model.predict({"num_samples": 2500, "seed": params.evaluate.seed})
    assert pts.shape == (2500, 2) and mode_scores(pts, RING, 0.01)["modes"] == report["modes"]


def test_sweep_configurations_cover_every_objective_at_equal_d_updates():
    from components.objectives import OBJECTIVES

    names = OBJECTIVES.names()  # tests register their objectives for one test only (conftest.register_entry)
    params = load_params(None, ["modes.d_updates=1000", f"modes.objectives=[{','.join(names)}]"])
    configs = configurations(params, load_params(None, ["preset=ring8"]))
    assert configs[0].key == "preset" and configs[0].overrides == ()
    assert {c.objective for c in configs[1:]} == set(names)
    # objectives with targets get a label-smoothing twin; every objective runs at 1:1 and 5:1
    with_targets = [n for n in names if OBJECTIVES.get(n).has_targets]
    assert len(configs) == 1 + 2 * len(names) + 2 * len(with_targets)
    by_key = {c.key: c for c in configs}
    assert "train.max_steps=200" in by_key["hinge-d5"].overrides and "train.max_steps=1000" in by_key["hinge-d1"].overrides
    assert "train.gradient_penalty=10.0" in by_key["wasserstein-gp-d1"].overrides
    assert "train.label_smoothing=0.1" in by_key["lsgan-ls0.1-d5"].overrides
    for c in configs[1:]:  # every configuration is valid config
        load_params(None, ["preset=ring8", *c.overrides])


def test_modes_sweep_writes_runs_samples_and_table(tmp_path):
    overrides = ["modes.seeds=1", "modes.preset_seeds=2", "modes.objectives=[nonsaturating,wasserstein]",
                 "modes.d_steps=[1,2]", "train.max_steps=40", "modes.d_updates=40", f"modes.report_dir={tmp_path / 'modes'}"]
    params = load_params(None, overrides)
    report = modes.run(params, tmp_path, "ring8", None, overrides)
    keys = [r["config"] for r in report["summary"]]
    assert keys == ["preset", "nonsaturating-d1", "nonsaturating-ls0.1-d1", "nonsaturating-d2",
                    "nonsaturating-ls0.1-d2", "wasserstein-gp-d1", "wasserstein-gp-d2"]
    assert len(report["runs"]) == 2 + 6 and report["summary"][0]["runs"] == 2
    on_disk = json.loads((tmp_path / "modes" / "ring8.json").read_text())
    assert on_disk["summary"] == report["summary"]
    for r in report["runs"]:
        assert r["status"] == "ok" and r["steps"] == 40 // r["d_steps_per_g_step"] and r["wall_seconds"] > 0
        pts = np.load(tmp_path / r["samples"])
        assert pts.shape == (2500, 2)
        assert mode_scores(pts, RING, 0.01)["modes"] == r["modes"]  # the saved samples are the scored ones
    table = (tmp_path / "modes" / "ring8.md").read_text()
    assert "| wasserstein-gp-d2 | wasserstein | 0 | 2:1 | 1/1 |" in table
