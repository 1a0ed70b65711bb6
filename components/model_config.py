"""The `model` section (`ModelConfig`): the family and the sizes every family reads. Kept apart from the
config package (components/config/), whose `Params` imports the families, so a family module that builds a
network from an exported spec imports this and nothing that imports it back. Torch-free; re-exported as
`components.config.ModelConfig`."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from components.registry import check_registered
from components.section import Section


class ModelConfig(Section):
    """The family and the sizes every family reads; a family's own knobs are in its own section."""
    family: str = "dcgan"
    latent_dim: int = Field(64, ge=1, le=4096)
    g_channels: int = Field(32, ge=1, le=4096, description="generator width at its last hidden layer (mlp: every layer)")
    d_channels: int = Field(32, ge=1, le=4096, description="discriminator width at its first layer (mlp: every layer)")
    hidden_layers: int = Field(3, ge=1, le=64, description="mlp only: hidden layers of G and of D")
    conditioning: Literal["none", "concat", "projection"] = Field(
        "none", description="dcgan: class-conditional GAN. G gets (z, one-hot label); D gets the label as extra "
        "input channels (concat) or through a projection head (Miyato & Koyama 2018)")
    clusters: int = Field(0, ge=0, le=1000, description="dcgan, label-free: G and D (projection head) are conditioned "
                          "on k-means clusters of the training images instead of labels, and G draws its cluster "
                          "from their training proportions with one coordinate of z, so the model samples "
                          "unconditionally in the data's mode proportions (components/training/clusters.py); 0: off")
    cluster_dims: int = Field(0, ge=0, le=4096, description="model.clusters: fit k-means on the training images' "
                              "first N principal components instead of their pixels (the fit's cost grows with "
                              "width × clusters: Stacked MNIST's 2,352 values at 1,000 clusters need it); 0: pixels")

    @model_validator(mode="after")
    def _clusters_label_free(self):
        if self.clusters == 1:
            raise ValueError("model.clusters = 1 is one cluster: use 0 (off) or at least 2")
        if self.clusters and self.conditional:
            raise ValueError(f"model.clusters = {self.clusters} with model.conditioning = {self.conditioning!r}: "
                             "clusters replace the labels (set conditioning to none)")
        if self.cluster_dims and not self.clusters:
            raise ValueError(f"model.cluster_dims = {self.cluster_dims} shapes the k-means fit of model.clusters, "
                             "which is 0 (off): set model.clusters or leave cluster_dims at 0")
        if self.clusters and self.latent_dim < 2:
            raise ValueError("model.clusters needs latent_dim ≥ 2: one coordinate of z picks the cluster")
        return self

    @field_validator("family")
    @classmethod
    def _family_known(cls, v: str) -> str:
        return check_registered("model family", v)

    @property
    def conditional(self) -> bool:
        return self.conditioning != "none"
