"""Model families by name (`model.family`): one module each, declaring everything about the family
(components/families/base.py says what). Adding a family is one module here, its networks, a preset, a
test file and a docs entry (docs/adding-a-family.md)."""
from __future__ import annotations

import importlib

from components.families.base import Family
from components.registry import Registry

FAMILIES: Registry[Family] = Registry("model family")

# Imported here, in this order, so the registry is complete once the package is; each is torch-free.
for _module in ("dcgan", "mlp", "ddpm", "ddgan", "pix2pix", "cyclegan", "vae", "seqgan"):
    _family = importlib.import_module(f"components.families.{_module}").FAMILY
    FAMILIES.register(_family.name)(_family)


def family_of(name: str, pairing: str | None = None) -> Family:
    """The family `name` in the form it takes on data of this pairing (Family.variant)."""
    return FAMILIES.get(name).variant(pairing)


def family_of_spec(spec: dict) -> Family:
    """The family of an exported model (its generator.json spec)."""
    return family_of(spec["model"]["family"], spec.get("pairing"))
