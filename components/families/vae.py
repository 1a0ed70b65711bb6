"""Family `vae`: a variational autoencoder on images (Kingma & Welling 2014): encoder/decoder with the
reparameterisation trick, loss = reconstruction + β·KL with optional KL warm-up. Its section is `vae`;
latent size model.latent_dim, widths model.g_channels / d_channels. It reports its negative ELBO on the
test split beside the image metrics. Network: components/models/vae.py; step: components/training/vae_step.py."""
from __future__ import annotations

from pydantic import Field

from components.families.base import Family
from components.section import Section


class VaeConfig(Section):
    """model.family = vae: encoder/decoder with the reparameterisation trick; loss = reconstruction + β·KL.
    Latent size is model.latent_dim, widths model.g_channels / d_channels (decoder / encoder)."""
    beta: float = Field(1.0, gt=0.0, description="KL weight (β-VAE, Higgins et al. 2017); 1 = the ELBO")
    kl_warmup: float = Field(0.0, ge=0.0, le=1.0, description="fraction of the run over which β ramps from 0")



class Vae(Family):
    name = "vae"
    description = "a VAE"
    section, Section = "vae", VaeConfig
    task = ("components.training.vae_step", "VaeTask")
    plays_gan_game = False
    step_ratios = False
    presets = ("vae",)
    own_metrics = {"nelbo": False}  # negative ELBO, nats per image, on the test split

    def build_generator(self, spec: dict):
        from components.model_config import ModelConfig

        return self.network(ModelConfig(**spec["model"]), spec["image_shape"])

    @staticmethod
    def network(model_cfg, image_shape):
        from components.models.vae import build

        return build(model_cfg, tuple(image_shape))

    def draw(self, g, n, seed, labels, options, latent_dim):
        from components.sampling import sampler_samples

        return sampler_samples(g, n, seed, labels)

    def extra_metrics(self, g, params, test, fake, scores, classifier_a=None) -> dict:
        import torch

        return {"nelbo": g.negative_elbo(test.x, torch.Generator().manual_seed(params.evaluate.seed))}


FAMILY = Vae()
