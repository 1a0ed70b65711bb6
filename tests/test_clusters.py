"""Label-free conditioning on k-means clusters (model.clusters, components/training/clusters.py): G draws its
cluster in the clusters' training proportions from one coordinate of z, so the exported model is
unconditional; the fit is deterministic; D and G train on the real batch's clusters."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from components.config import ModelConfig
from components.data.shards import read_share
from components.families import build_gan
from components.models.own_labels import drawn_labels
from components.training import checkpoint as ckpt
from components.training.clusters import Clusters
from conftest import tiny_params, train_in_process


def test_g_draws_its_clusters_in_the_prior_proportions_and_takes_given_ones():
    g, d = build_gan(ModelConfig(latent_dim=8, g_channels=8, d_channels=8, clusters=3), (1, 8, 8))
    assert not g.conditional and g.num_classes == 3 and d.num_classes == 3 and d.conditioning == "projection"
    g.label_prior.copy_(torch.tensor([0.5, 0.3, 0.2]))
    z = torch.randn(200_000, 8, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(drawn_labels(z, g.label_prior), minlength=3).double() / len(z)
    assert torch.allclose(counts, torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), atol=0.005)
    g.eval()
    x = torch.randn(4, 8)
    given = torch.tensor([2, 2, 2, 2])
    assert torch.equal(g(x, given), g(x, given)) and not torch.equal(g(x, given), g(x, torch.zeros(4).long()))
    assert torch.equal(g(x), g(x, drawn_labels(x, g.label_prior)))  # unconditional use = the clusters its z picks


def test_the_fit_is_deterministic_and_assigns_the_train_images_to_their_clusters(run_root):
    images = read_share(tiny_params(run_root).prepared_path(run_root), "train")[0]
    x = torch.from_numpy(images).float() / 127.5 - 1
    a, b = Clusters(x, 6, seed=0), Clusters(x, 6, seed=0)
    assert torch.equal(a.centroids, b.centroids) and torch.equal(a.prior, b.prior)
    assert a.prior.sum().item() == pytest.approx(1.0) and (a.prior > 0).all()
    assigned = torch.bincount(a.assign(x), minlength=6).double() / len(x)
    assert torch.allclose(assigned, a.prior.double(), atol=1e-6)  # the prior is the share of each cluster
    with pytest.raises(ValueError, match="model.clusters = 5000 is more than the 100 training samples"):
        Clusters(x[:100], 5000, seed=0)


def test_clusters_on_principal_components_find_blobs_that_differ_in_a_few_directions():
    """model.cluster_dims: k-means on the first principal components (as wide images need) separates clusters
    that differ in a few directions of a wide space, assigns new samples through the same projection, and is
    deterministic."""
    gen = torch.Generator().manual_seed(0)
    centres = torch.zeros(4, 500)
    centres[:, :2] = torch.tensor([[8.0, 0], [-8, 0], [0, 8], [0, -8]])
    truth = torch.arange(4).repeat_interleave(300)
    x = centres[truth] + torch.randn(1200, 500, generator=gen)
    a, b = Clusters(x, 4, seed=0, dims=2), Clusters(x, 4, seed=0, dims=2)
    assert a.centroids.shape == (4, 2) and torch.equal(a.centroids, b.centroids)
    assert torch.allclose(a.components.T @ a.components, torch.eye(2), atol=1e-4)  # an orthonormal projection
    found = a.assign(x)
    assert all(len(torch.unique(found[truth == t])) == 1 for t in range(4))  # each blob is one cluster
    assert len(torch.unique(found)) == 4 and torch.allclose(a.prior, torch.full((4,), 0.25))
    fresh = centres[truth[:40]] + torch.randn(40, 500, generator=gen)
    assert torch.equal(a.assign(fresh), found[:40])  # a new sample joins its blob's cluster
    with pytest.raises(ValueError, match="model.cluster_dims = 500 is not fewer than the 500 values"):
        Clusters(x, 4, seed=0, dims=500)
    with pytest.raises(ValueError, match="model.cluster_dims = 8 shapes the k-means fit of model.clusters"):
        ModelConfig(cluster_dims=8)


def test_a_cluster_conditioned_run_exports_an_unconditional_g_with_the_data_proportions(run_root, tmp_path):
    params = tiny_params(run_root, model={"clusters": 4})
    rec, _ = train_in_process(params, run_root)
    ckpt.write_generator(rec.states[-1], tmp_path)
    g, spec = ckpt.load_generator(tmp_path)
    fitted = Clusters(torch.from_numpy(read_share(params.prepared_path(run_root), "train")[0]) / 127.5 - 1, 4, params.seed)
    assert torch.equal(g.label_prior, fitted.prior) and not params.family.net_conditional(g)
    out, labels = params.family.generate(g, params, None, 64)
    assert labels is None and out.shape == (64, 1, 8, 8)
    assert len(np.unique(drawn_labels(torch.randn(64, 16), g.label_prior).numpy())) > 1


def test_a_model_exported_before_clusters_existed_is_evaluated_as_trained_without_them(run_root, tmp_path):
    """A spec without model.clusters (every model exported before the key) was trained at its default, 0:
    evaluate takes it as such, and refuses it only for a configured cluster count."""
    import json

    from pipelines.evaluate import EvaluateError, load_candidate

    params = tiny_params(run_root, train={"output_dir": str(tmp_path / "model")})
    rec, _ = train_in_process(params, run_root)
    (tmp_path / "model").mkdir()
    ckpt.write_generator(rec.states[-1], tmp_path / "model")
    spec_file = tmp_path / "model" / "generator.json"
    spec = json.loads(spec_file.read_text())
    del spec["model"]["clusters"]
    spec_file.write_text(json.dumps(spec))
    g, _ = load_candidate(params, run_root)
    assert not g.conditional
    with pytest.raises(EvaluateError, match="model.clusters trained with 0 but configured 4"):
        load_candidate(params.with_overrides({"model.clusters": 4}), run_root)
