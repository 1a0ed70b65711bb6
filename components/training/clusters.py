"""Label-free conditioning (model.clusters): the training images are grouped by k-means on their pixels, and
the GAN is trained as a class-conditional one on the cluster ids (G(z, c), D with a projection head), as in
"self-conditioned" GANs (Liu et al. 2020) and the clustering baselines of Lučić et al. (2019), here with the
clusters fitted once on the data. G draws its cluster in the clusters' training proportions
(components/models/own_labels.py), so the model needs no label and samples each cluster,
hence each mode the clusters separate, as often as the data holds it.

The fit is a pure function of the train split and the seed (scikit-learn's KMeans, one initialisation per
`n_init`, single-threaded Lloyd iterations), so every rank, and a resumed run, fits the same clusters."""
from __future__ import annotations

import numpy as np
import torch

N_INIT = 3  # k-means++ restarts; the best inertia wins


class Clusters:
    """Centroids of the train split's samples (in model space, as batches reach the task: images in [-1, 1],
    points as they are; flattened) and each cluster's share of the split."""

    def __init__(self, samples: torch.Tensor, k: int, seed: int, dims: int = 0):
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA
        from threadpoolctl import threadpool_limits

        x = samples.flatten(1).float().numpy()
        if len(x) < k:
            raise ValueError(f"model.clusters = {k} is more than the {len(x)} training samples")
        if dims >= x.shape[1]:
            raise ValueError(f"model.cluster_dims = {dims} is not fewer than the {x.shape[1]} values of a training "
                             "sample: use fewer components, or 0 to cluster the values themselves")
        self.mean = self.components = None
        with threadpool_limits(1):  # a fixed reduction order: the same centroids on every machine and rank
            if dims:
                pca = PCA(n_components=dims, svd_solver="randomized", random_state=seed).fit(x)
                self.mean = torch.from_numpy(pca.mean_.astype(np.float32))
                self.components = torch.from_numpy(pca.components_.T.astype(np.float32))
                x = self.features(torch.from_numpy(x)).numpy()
            fit = KMeans(n_clusters=k, n_init=N_INIT, random_state=seed).fit(x)
        self.centroids = torch.from_numpy(fit.cluster_centers_.astype(np.float32))
        counts = np.bincount(fit.labels_, minlength=k)
        self.prior = torch.from_numpy(counts / counts.sum()).float()

    def features(self, flat: torch.Tensor) -> torch.Tensor:
        """What k-means sees of flattened samples: their values, or their principal components."""
        if self.components is None:
            return flat
        return (flat - self.mean.to(flat.device)) @ self.components.to(flat.device)

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """The nearest centroid of each image of a batch (N, C, H, W) in model space."""
        flat = self.features(x.detach().flatten(1).float())
        c = self.centroids.to(flat.device)
        # ‖x - c‖² = ‖x‖² - 2⟨x, c⟩ + ‖c‖²; ‖x‖² is the same for every centroid
        return (c.pow(2).sum(1)[None, :] - 2 * flat @ c.T).argmin(1)
