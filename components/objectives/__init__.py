"""GAN objectives by name (`train.objective`): each maps discriminator outputs to the D and G losses.

One registry (`OBJECTIVES`). Classic objectives live in `classic.py`, the f-GAN family (Nowozin et
al. 2016) in `fgan.py`; Lipschitz/gradient regularisers, which combine with any objective, in
`regularizers.py`."""
from __future__ import annotations

from components.objectives.objective import OBJECTIVES, Objective

# The loss modules register themselves on import: after this package, OBJECTIVES is complete.
from components.objectives import classic as _classic  # noqa: E402,F401
from components.objectives import fgan as _fgan  # noqa: E402,F401

__all__ = ["OBJECTIVES", "Objective"]
