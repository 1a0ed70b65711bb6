"""Data layer: named sources (`SOURCES`, complete once this package is imported: images in `sources`, the 2D
mixtures in `mixtures`, Stacked MNIST in `stacked`, token sequences in `tokens` and `coco`), data kinds (`kinds`) and
prepared Parquet datasets read per rank (`shards`)."""
from components.data.source_data import SOURCES

# Each source module registers its sources on import; importing them here, in this order, completes SOURCES
# (as components/families/__init__.py completes FAMILIES), so no source module imports another to register it.
from components.data import sources  # noqa: E402,F401,I001  (mnist5k, digits, imagefolder…)
from components.data import mixtures  # noqa: E402,F401  (the 2D mixtures)
from components.data import stacked  # noqa: E402,F401  (Stacked MNIST)
from components.data import tokens  # noqa: E402,F401  (oracle, textfile, python-docs)
from components.data import coco  # noqa: E402,F401  (coco: Texygen's COCO captions, data/coco)

__all__ = ["SOURCES"]
