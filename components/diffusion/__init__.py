"""Diffusion glue around diffusers: the forward process and training target (process.py) and the
reverse process with classifier-free guidance (reverse.py). diffusers provides the UNet and the
DDPM/DDIM schedulers; the training step, EMA and sampling loop are ours."""
