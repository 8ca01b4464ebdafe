"""Read instance (and class) label images for evaluation from files or from our output folders.

Accepted inputs:

- ``.npy``; ``.npz`` (key ``inst_map``, ``nuc_raster``, ``labels``, ``instances`` or the only array;
  classes from ``type_map`` / ``classes`` / ``semantic``);
- ``.mat`` (MATLAB, HoVer-Net / PanNuke style: ``inst_map``, classes ``type_map``);
- ``.tif`` / ``.tiff`` (tifffile), ``.png`` (Pillow, 8 or 16 bit);
- an OME-Zarr (``*.zarr``) holding NGFF labels ``labels/nuclei`` (classes: ``labels/classes``),
  level 0 = ``multiscales[0].datasets[0]``;
- an output folder ``OUT/<slide_id>`` (holding ``labels.ome.zarr``), or ``OUT`` with exactly one
  slide folder in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pathosam_wsi.errors import ConfigError
from pathosam_wsi.pipeline.layout import LABELS_ZARR

__all__ = ["LabelData", "load_labels"]

_INSTANCE_KEYS = ("inst_map", "nuc_raster", "labels", "instances", "instance", "arr_0")
_CLASS_KEYS = ("type_map", "classes", "semantic", "type_raster")


@dataclass(frozen=True)
class LabelData:
    """Labels read from one input.

    Attributes
    ----------
    instances : (H, W) integer, YX
        Instance ids, 0 = background.
    classes : (H, W) integer, YX, or None
        Class id per pixel (0 = background), when the input has a class map.
    source : str
        Where the labels came from (for messages and reports).
    """

    instances: npt.NDArray[np.integer]
    classes: npt.NDArray[np.integer] | None
    source: str


def _as_2d(arr: npt.ArrayLike, source: str) -> npt.NDArray[np.integer]:
    """Drop leading singleton axes; check 2-D integer-valued."""
    out = np.asarray(arr)
    while out.ndim > 2 and out.shape[0] == 1:
        out = out[0]
    if out.ndim != 2:
        raise ConfigError(
            f"labels in {source} have shape {out.shape}; expected a 2-D (H, W) label image"
        )
    if out.dtype == np.bool_:
        return out.astype(np.uint8)
    if not np.issubdtype(out.dtype, np.integer):
        if np.issubdtype(out.dtype, np.floating) and np.array_equal(out, np.round(out)):
            return out.astype(np.int64)
        raise ConfigError(
            f"labels in {source} have dtype {out.dtype} with non-integer values; "
            "expected an integer label image"
        )
    return out


def _pick(mapping: dict[str, Any], keys: tuple[str, ...], source: str, required: bool) -> Any:
    """The first present key; with ``required``, the only array when none of them is present."""
    for key in keys:
        if key in mapping:
            return mapping[key]
    arrays = [k for k, v in mapping.items() if isinstance(v, np.ndarray) and not k.startswith("__")]
    if required and len(arrays) == 1:
        return mapping[arrays[0]]
    if required:
        raise ConfigError(
            f"no instance map in {source}: got keys {sorted(arrays)}, expected one of {list(keys)}"
        )
    return None


def _load_mapping(mapping: dict[str, Any], source: str) -> LabelData:
    """Instances and optional classes from a dict of arrays (npz / mat)."""
    inst = _as_2d(_pick(mapping, _INSTANCE_KEYS, source, required=True), source)
    cls = _pick(mapping, _CLASS_KEYS, source, required=False)
    return LabelData(inst, None if cls is None else _as_2d(cls, source), source)


def _zarr_level0(group: Any, source: str) -> npt.NDArray[np.integer]:
    """Level 0 of an NGFF multiscale image group (v0.4 or v0.5 attributes)."""
    attrs = dict(group.attrs)
    multiscales = attrs.get("ome", attrs).get("multiscales")
    path = multiscales[0]["datasets"][0]["path"] if multiscales else "s0"
    try:
        return _as_2d(group[path][...], f"{source}/{path}")
    except KeyError as err:
        raise ConfigError(f"no level {path!r} in {source}; expected NGFF labels") from err


def _load_zarr(root_path: Path) -> LabelData:
    """Nucleus (and class) labels from an OME-Zarr's ``labels/`` group."""
    import zarr

    try:
        root = zarr.open_group(str(root_path), mode="r")
        nuclei = root["labels/nuclei"]
    except (KeyError, FileNotFoundError, ValueError) as err:
        raise ConfigError(
            f"cannot read labels/nuclei from {str(root_path)!r} ({err}); "
            "expected an OME-Zarr written by pathosam-wsi segment"
        ) from err
    inst = _zarr_level0(nuclei, f"{root_path}/labels/nuclei")
    classes = None
    if "labels/classes" in root:
        classes = _zarr_level0(root["labels/classes"], f"{root_path}/labels/classes")
    return LabelData(inst, classes, str(root_path))


def _resolve_output_dir(path: Path) -> Path:
    """``OUT/<slide_id>/labels.ome.zarr`` from ``OUT/<slide_id>`` or a one-slide ``OUT``."""
    if (path / LABELS_ZARR).is_dir():
        return path / LABELS_ZARR
    slides = sorted(p for p in path.iterdir() if (p / LABELS_ZARR).is_dir())
    if len(slides) == 1:
        return slides[0] / LABELS_ZARR
    raise ConfigError(
        f"{str(path)!r} is a folder without {LABELS_ZARR}; got {len(slides)} slide folders; "
        f"expected OUT/<slide_id> (or OUT with one slide); pass OUT/<slide_id>"
    )


def load_labels(path: str | Path) -> LabelData:
    """Read instance labels (and a class map where present) from a file or output folder.

    Parameters
    ----------
    path : str or Path
        Label image file (``.npy .npz .mat .tif .tiff .png``), OME-Zarr, or output folder.

    Returns
    -------
    LabelData
        ``instances`` (H, W) integer labels, optional ``classes`` (H, W), and the source.

    Raises
    ------
    ConfigError
        Unknown format, missing key, or an array that is not a 2-D integer label image.
    FileNotFoundError
        ``path`` does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {str(path)!r}")
    suffix = path.suffix.lower()
    if path.is_dir():
        return _load_zarr(path if suffix == ".zarr" else _resolve_output_dir(path))
    if suffix == ".npy":
        return LabelData(_as_2d(np.load(path, allow_pickle=False), str(path)), None, str(path))
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            return _load_mapping({k: npz[k] for k in npz.files}, str(path))
    if suffix == ".mat":
        import scipy.io

        return _load_mapping(scipy.io.loadmat(path), str(path))
    if suffix in (".tif", ".tiff"):
        import tifffile

        return LabelData(_as_2d(tifffile.imread(path), str(path)), None, str(path))
    if suffix == ".png":
        from PIL import Image

        with Image.open(path) as img:
            return LabelData(_as_2d(np.asarray(img), str(path)), None, str(path))
    raise ConfigError(
        f"unsupported label file {path.name!r}; expected .npy .npz .mat .tif .tiff .png, "
        "an OME-Zarr or an output folder"
    )
