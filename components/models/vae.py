"""The VAE baseline (Kingma & Welling 2014): a DCGAN-shaped conv encoder to (μ, log σ²) and a DCGAN
generator as decoder of Bernoulli logits over pixel intensities in [0, 1] (the usual likelihood for
MNIST-like data). loss = E_q[-log p(x|z)] + β·KL(q(z|x) ‖ N(0, I)); with β = 1 that is the negative
ELBO, in nats per image. Samples are decoder means for z ~ N(0, I), mapped to [-1, 1]."""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from components.models.dcgan import Discriminator, Generator, init_weights


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per sample, closed form: ½ Σ (μ² + σ² - 1 - log σ²)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    return (x + 1.0) / 2.0  # model space [-1, 1] → Bernoulli means in [0, 1]


@contextmanager
def _evaluating(model: nn.Module):
    """Eval mode (BatchNorm running statistics, untouched) for the block, then the previous mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


class VAE(nn.Module):
    def __init__(self, latent_dim: int, enc_channels: int, dec_channels: int, image_shape: tuple[int, int, int]):
        super().__init__()
        trunk = Discriminator(enc_channels, image_shape).body  # convs → flattened features → (logit head)
        self.latent_dim, self.image_shape = latent_dim, tuple(image_shape)
        self.encoder = trunk[:-1]
        self.to_stats = nn.Linear(trunk[-1].in_features, 2 * latent_dim)
        self.decoder = Generator(latent_dim, dec_channels, image_shape, squash=False)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_stats(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)  # keeps exp() finite early in training

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> dict[str, torch.Tensor]:
        """x in [-1, 1]; eps ~ N(0, I) of shape (B, latent_dim), drawn by the caller (seeded streams).
        Returns per-sample reconstruction NLL and KL, and the reconstruction logits."""
        mu, logvar = self.encode(x)
        z = mu + (0.5 * logvar).exp() * eps  # the reparameterisation trick: gradients flow through μ, σ
        logits = self.decoder(z)
        nll = F.binary_cross_entropy_with_logits(logits, to_unit(x), reduction="none").flatten(1).sum(1)
        return {"nll": nll, "kl": kl_to_standard_normal(mu, logvar), "logits": logits}

    def negative_elbo(self, x: torch.Tensor, rng: torch.Generator, batch: int = 500) -> float:
        """Mean -ELBO (nats per image) over x with one posterior sample per image: an upper bound on -log p(x)."""
        total = 0.0
        with _evaluating(self):
            for chunk in x.split(batch):
                out = self(chunk, torch.randn(len(chunk), self.latent_dim, generator=rng).to(chunk.device))
                total += float((out["nll"] + out["kl"]).sum())
        return total / len(x)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder means at the posterior means, in [-1, 1]."""
        with _evaluating(self):
            return torch.sigmoid(self.decoder(self.encode(x)[0])) * 2.0 - 1.0

    def sample(self, n: int, rng: torch.Generator, labels: torch.Tensor | None = None) -> torch.Tensor:
        """n decoder means for z ~ N(0, I) drawn from `rng`, in [-1, 1]."""
        if labels is not None:
            raise ValueError("labels given, but the VAE is unconditional")
        with _evaluating(self):
            z = torch.randn(n, self.latent_dim, generator=rng).to(next(self.parameters()).device)
            return torch.sigmoid(self.decoder(z)) * 2.0 - 1.0


def build(model_cfg, image_shape: tuple[int, int, int]) -> VAE:
    if len(image_shape) != 3:
        raise ValueError(f"vae needs images (C, H, W), got samples of shape {image_shape}")
    vae = VAE(model_cfg.latent_dim, model_cfg.d_channels, model_cfg.g_channels, image_shape)
    vae.apply(init_weights)
    return vae
