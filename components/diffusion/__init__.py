"""Diffusion glue around diffusers: the settings the diffusion families share, torch-free (settings.py), the
forward process and training target (process.py) and the reverse process with classifier-free guidance
(reverse.py). diffusers provides the UNet (built in components/models/unet.py) and the DDPM/DDIM
schedulers; the training step, EMA and sampling loop are ours."""
