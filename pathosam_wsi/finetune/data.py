"""Image + instance-label pairs for training, matched by file name.

Images: PNG / TIFF / JPEG RGB. Labels: PNG / TIFF / NPY / NPZ / MAT instance images. A label file
belongs to the image whose stem it equals, optionally followed by one of ``LABEL_SUFFIXES``
(``patch1.png`` <- ``patch1.mat``, ``patch1_mask.png``, ``patch1_inst_mask.npz``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pathosam_wsi.errors import ConfigError

__all__ = [
    "IMAGE_EXTS",
    "LABEL_EXTS",
    "Sample",
    "load_pairs",
    "read_image",
    "read_labels",
    "rescale_sample",
]

IMAGE_EXTS = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
LABEL_EXTS = (".png", ".tif", ".tiff", ".npy", ".npz", ".mat")
LABEL_SUFFIXES = (
    "", "_inst_mask", "_inst_map", "_instances", "_labels", "_label", "_mask", "_masks"
)  # fmt: skip
_LABEL_KEYS = ("inst_map", "nuc_raster", "labels", "label", "mask", "instances")
"""Array names tried, in order, inside .npz and .mat label files."""


@dataclass(frozen=True)
class Sample:
    """One training image with its instance labels.

    Attributes
    ----------
    name : str
    image : (H, W, 3) uint8, YXC
    labels : (H, W) int32, YX, 0 = background
    """

    name: str
    image: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.int32]


def read_image(path: Path) -> npt.NDArray[np.uint8]:
    """(H, W, 3) uint8 RGB of an image file (alpha dropped, grey expanded)."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        arr = np.asarray(tifffile.imread(path))
    else:
        from PIL import Image

        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"))
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ConfigError(
            f"image {str(path)!r} has shape {arr.shape!r}, expected (H, W, 3) RGB; "
            "export the image as an RGB PNG or TIFF"
        )
    if arr.dtype != np.uint8:
        raise ConfigError(
            f"image {str(path)!r} is {arr.dtype}, expected uint8 RGB; convert it to 8-bit RGB"
        )
    return np.ascontiguousarray(arr[..., :3])


def read_labels(path: Path) -> npt.NDArray[np.int32]:
    """(H, W) int32 instance labels of a label file (see ``_LABEL_KEYS`` for npz / mat)."""
    ext = path.suffix.lower()
    if ext == ".npy":
        arr = np.load(path, allow_pickle=False)
    elif ext == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            arr = npz[_pick_key(list(npz.files), path)]
    elif ext == ".mat":
        import scipy.io

        mat = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
        arr = mat[_pick_key(list(mat), path)]
    elif ext in (".tif", ".tiff"):
        import tifffile

        arr = np.asarray(tifffile.imread(path))
    else:
        from PIL import Image

        with Image.open(path) as img:
            arr = np.asarray(img)
    arr = np.squeeze(np.asarray(arr))
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer) or arr.min(initial=0) < 0:
        raise ConfigError(
            f"labels {str(path)!r} are {arr.dtype} of shape {arr.shape!r}, expected a 2-D "
            "non-negative integer instance image (0 = background); save one id per nucleus"
        )
    return arr.astype(np.int32)


def _pick_key(keys: list[str], path: Path) -> str:
    for key in _LABEL_KEYS:
        if key in keys:
            return key
    if len(keys) == 1:
        return keys[0]
    raise ConfigError(
        f"labels {str(path)!r} hold arrays {sorted(keys)}, none named {list(_LABEL_KEYS)}; "
        "save the instance image as 'inst_map'"
    )


def _label_for(image: Path, labels: dict[str, Path]) -> Path | None:
    for suffix in LABEL_SUFFIXES:
        hit = labels.get(image.stem + suffix)
        if hit is not None:
            return hit
    return None


def _files(folder: Path, exts: tuple[str, ...], what: str) -> list[Path]:
    if not folder.is_dir():
        raise ConfigError(f"{what} folder {str(folder)!r} does not exist; pass an existing folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts)


def load_pairs(images_dir: Path, labels_dir: Path) -> list[Sample]:
    """Every image of ``images_dir`` with its label file from ``labels_dir``, sorted by name.

    Raises
    ------
    ConfigError
        A missing folder, no images, an image without labels, or sizes that differ.
    """
    images = _files(images_dir, IMAGE_EXTS, "images")
    if not images:
        raise ConfigError(
            f"no images ({', '.join(IMAGE_EXTS)}) in {str(images_dir)!r}; pass the image folder"
        )
    label_files = {
        p.stem: p
        for p in _files(labels_dir, LABEL_EXTS, "labels")
        if p.parent != images_dir
        or p.suffix.lower() not in IMAGE_EXTS
        or p.stem.endswith(LABEL_SUFFIXES[1:])
    }
    samples = []
    for path in images:
        label_path = _label_for(path, label_files)
        if label_path is None:
            raise ConfigError(
                f"no label file for image {path.name!r} in {str(labels_dir)!r}; expected "
                f"{path.stem}[{'|'.join(LABEL_SUFFIXES[1:])}]{{{','.join(LABEL_EXTS)}}}"
            )
        image, labels = read_image(path), read_labels(label_path)
        if image.shape[:2] != labels.shape:
            raise ConfigError(
                f"image {path.name!r} is {image.shape[:2]} px but its labels "
                f"{label_path.name!r} are {labels.shape}; expected the same (H, W)"
            )
        samples.append(Sample(path.stem, image, labels))
    return samples


def rescale_sample(sample: Sample, factor: float) -> Sample:
    """``sample`` resized by ``factor`` (bilinear image, nearest labels); itself when ~1."""
    if abs(factor - 1.0) < 1e-3:
        return sample
    from skimage.transform import resize

    h, w = (max(1, round(s * factor)) for s in sample.labels.shape)
    img = resize(sample.image, (h, w, 3), order=1, preserve_range=True, anti_aliasing=factor < 1)
    lab = resize(sample.labels, (h, w), order=0, preserve_range=True, anti_aliasing=False)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return Sample(sample.name, image, lab.astype(np.int32))
