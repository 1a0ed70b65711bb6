"""A generator that draws its own conditioning label (model.clusters, components/training/clusters.py): the
last coordinate of z, through the normal CDF, picks the label by a prior (the clusters' training shares),
and the rest of z is the latent, so from outside the generator is unconditional."""
from __future__ import annotations

import torch


def drawn_labels(z: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """The labels latents z pick: Φ(z_last) is uniform on (0, 1), so labels follow `prior` exactly."""
    u = torch.special.ndtr(z[:, -1].float())
    return torch.bucketize(u, torch.cumsum(prior, 0)[:-1].to(u.dtype), right=True)


def split_latent(z: torch.Tensor, prior: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(the latent G maps, the labels it is conditioned on): given labels (training: the real batch's
    clusters) or the ones z picks (sampling)."""
    return z[:, :-1], drawn_labels(z, prior) if labels is None else labels
