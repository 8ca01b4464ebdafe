"""Open a slide (SVS, pyramidal/OME TIFF through tiffslide; PNG/JPEG/plain TIFF as one level).

``Slide`` reads level pixels as (h, w, 3) uint8 RGB whatever the file stores (grey is replicated,
alpha is composited on white). ``SlideHandle`` is the picklable way to ship a slide to workers: it
holds the path and reopens the file once per thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from pathosam_wsi.errors import SlideReadError

__all__ = ["Slide", "SlideHandle", "open_slide"]

log = logging.getLogger(__name__)

_PIL_SUFFIXES = {".png", ".jpg", ".jpeg"}
_UNIT_TO_UM = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}
# Pixel sizes outside this range are treated as missing metadata (72 dpi JPEG tags, etc.).
_PLAUSIBLE_MPP = (0.02, 50.0)


def _to_rgb(arr: npt.NDArray[Any], path: str) -> npt.NDArray[np.uint8]:
    """(h, w[, c]) image of any channel count -> (h, w, 3) uint8 RGB."""
    if arr.dtype != np.uint8:
        if arr.dtype == np.uint16:
            arr = (arr >> 8).astype(np.uint8)
        elif arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        else:
            raise SlideReadError(
                f"{path}: pixel type {arr.dtype} is not supported; convert the slide to 8-bit RGB"
            )
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    channels = arr.shape[2]
    if channels == 1:
        return np.repeat(arr, 3, axis=2)
    if channels == 3:
        return np.ascontiguousarray(arr)
    if channels == 4:
        # Transparent pixels are background: composite on white.
        alpha = arr[:, :, 3:4].astype(np.uint16)
        rgb = (arr[:, :, :3].astype(np.uint16) * alpha + 255 * (255 - alpha) + 127) // 255
        return rgb.astype(np.uint8)
    raise SlideReadError(
        f"{path}: {channels} channels per pixel; expected grey, RGB or RGBA (brightfield H&E)"
    )


def _plausible(mpp: float | None) -> float | None:
    if mpp is None or not np.isfinite(mpp):
        return None
    return float(mpp) if _PLAUSIBLE_MPP[0] <= mpp <= _PLAUSIBLE_MPP[1] else None


class Slide:
    """An opened slide: levels, pixel size, and pixel access at any level.

    Use :func:`open_slide` to create one.
    """

    def __init__(self, path: Path, mpp_override: float | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pil: npt.NDArray[np.uint8] | None = None
        self._ts: Any = None
        if path.suffix.lower() in _PIL_SUFFIXES:
            self._open_pil()
        else:
            self._open_tiff()
        self.mpp: float | None = mpp_override if mpp_override is not None else self._meta_mpp

    def _open_pil(self) -> None:
        try:
            with Image.open(self.path) as img:
                img.load()
                dpi = img.info.get("dpi")
                arr = np.asarray(img.convert("RGBA") if img.mode in ("P", "LA", "PA") else img)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise SlideReadError(
                f"{self.path}: cannot read image ({err}); expected a valid PNG or JPEG"
            ) from err
        self._pil = _to_rgb(arr, str(self.path))
        h, w = self._pil.shape[:2]
        self.vendor = "pil"
        self.level_dimensions: list[tuple[int, int]] = [(w, h)]
        self.level_downsamples: list[float] = [1.0]
        mpp = 25400.0 / float(dpi[0]) if dpi and float(dpi[0]) > 0 else None
        self._meta_mpp = _plausible(mpp)

    def _open_tiff(self) -> None:
        import tifffile
        import tiffslide

        try:
            self._ts = tiffslide.TiffSlide(str(self.path))
            props = self._ts.properties
            self.level_dimensions = [tuple(d) for d in self._ts.level_dimensions]
            self.level_downsamples = [float(d) for d in self._ts.level_downsamples]
        except NotImplementedError as err:
            raise SlideReadError(
                f"{self.path}: image series has more than one plane ({err}: a z-stack, time "
                "series or multi-channel stack); expected one 2-D RGB image per level; export a "
                "single focal plane as an RGB pyramidal TIFF"
            ) from err
        except (tifffile.TiffFileError, ValueError, KeyError, IndexError, OSError) as err:
            raise SlideReadError(
                f"{self.path}: cannot open as a slide ({type(err).__name__}: {err}); expected "
                "SVS, pyramidal TIFF, OME-TIFF, PNG or JPEG"
            ) from err
        self._axes = props.get("tiffslide.series-axes", "YXS")
        self.vendor = props.get("tiffslide.vendor") or "generic-tiff"
        mpp_x = props.get("tiffslide.mpp-x")
        self._meta_mpp = _plausible(float(mpp_x)) if mpp_x else self._ome_mpp()
        try:
            self._check_truncation()
        except SlideReadError:
            self._ts.close()
            raise

    def _ome_mpp(self) -> float | None:
        """PhysicalSizeX of the first OME-XML image, in µm (tiffslide misses some OME files)."""
        import xml.etree.ElementTree as ET

        xml = self._ts.ts_tifffile.ome_metadata
        if not xml:
            return None
        try:
            root = ET.fromstring(xml)
        except ET.ParseError:
            return None
        pixels = next((el for el in root.iter() if el.tag.endswith("Pixels")), None)
        if pixels is None or pixels.get("PhysicalSizeX") is None:
            return None
        factor = _UNIT_TO_UM.get(pixels.get("PhysicalSizeXUnit", "µm"))
        if factor is None:
            return None
        return _plausible(float(pixels.get("PhysicalSizeX", "nan")) * factor)

    def _check_truncation(self) -> None:
        """Every tile of every level must lie inside the file, else the file is truncated."""
        size = os.path.getsize(self.path)
        tf = self._ts.ts_tifffile
        for level, page in enumerate(tf.series[0].levels):
            first = page.keyframe if hasattr(page, "keyframe") else page
            pages = page.pages if hasattr(page, "pages") else [first]
            for p in pages:
                if p is None or not hasattr(p, "dataoffsets"):
                    continue
                offsets = np.asarray(p.dataoffsets, np.int64)
                counts = np.asarray(p.databytecounts, np.int64)
                if offsets.size == 0 or counts.size != offsets.size or not counts.any():
                    raise SlideReadError(
                        f"{self.path}: level {level} has no pixel data (truncated or corrupt "
                        "header); copy the slide again"
                    )
                ends = offsets + counts
                if int(ends.max()) > size:
                    raise SlideReadError(
                        f"{self.path}: file is truncated (level {level} needs {int(ends.max())} "
                        f"bytes, file has {size}); copy the slide again"
                    )

    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        return len(self.level_dimensions)

    def read_level(self, level: int, box_xyxy: tuple[int, int, int, int]) -> npt.NDArray[np.uint8]:
        """Pixels of ``box_xyxy`` (half-open, level px) at ``level`` as (h, w, 3) uint8 RGB, YXC."""
        x0, y0, x1, y1 = box_xyxy
        w, h = self.level_dimensions[level]
        if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            raise SlideReadError(
                f"{self.path}: region {box_xyxy!r} is outside level {level} ({w}x{h} px)"
            )
        if self._pil is not None:
            return self._pil[y0:y1, x0:x1]
        try:
            arr = self._read_zarr(level, x0, y0, x1, y1)
        except Exception as err:  # tifffile/imagecodecs raise many unrelated types on bad data
            raise SlideReadError(
                f"{self.path}: cannot read level {level} region {box_xyxy!r} "
                f"({type(err).__name__}: {err}); the file may be corrupt"
            ) from err
        return _to_rgb(arr, str(self.path))

    def _read_zarr(self, level: int, x0: int, y0: int, x1: int, y1: int) -> npt.NDArray[Any]:
        group = self._ts.zarr_group
        arr = group.get(str(level), group)
        if self._axes == "CYX":
            return np.moveaxis(np.asarray(arr[:, y0:y1, x0:x1]), 0, 2)
        return np.asarray(arr[y0:y1, x0:x1])

    def close(self) -> None:
        """Release the file handle."""
        if self._ts is not None:
            self._ts.close()
            self._ts = None

    def __del__(self) -> None:
        # Slides cached per worker thread are dropped with the thread; close them explicitly.
        self.close()


def open_slide(path: str | os.PathLike[str], mpp: float | None = None) -> Slide:
    """Open a slide file.

    Parameters
    ----------
    path : path-like
        Aperio SVS, pyramidal TIFF, OME-TIFF, plain TIFF, PNG or JPEG.
    mpp : float, optional
        Level-0 pixel size in µm/px, overriding the file's metadata.

    Raises
    ------
    SlideReadError
        Missing, unreadable, truncated or unsupported file.
    """
    p = Path(path)
    if not p.exists():
        raise SlideReadError(f"{p}: no such file; check the path")
    if not p.is_file():
        raise SlideReadError(f"{p}: not a file; give the path of a slide image")
    return Slide(p, mpp_override=mpp)


@dataclass(frozen=True)
class SlideHandle:
    """Picklable reference to a slide; ``open()`` reopens it once per thread (docs/stack.md P7).

    Each thread keeps its most recently used slides open (at most ``OPEN_PER_THREAD``) and
    closes the least recently used one beyond that, so a worker that serves a long cohort holds
    a bounded number of open files.
    """

    path: str
    mpp: float | None = None

    def open(self) -> Slide:
        """The calling thread's opened slide."""
        cache: OrderedDict[tuple[str, float | None], Slide]
        cache = _THREAD_CACHE.__dict__.setdefault("slides", OrderedDict())
        key = (self.path, self.mpp)
        slide = cache.get(key)
        if slide is not None:
            cache.move_to_end(key)
            return slide
        slide = open_slide(self.path, self.mpp)
        cache[key] = slide
        while len(cache) > OPEN_PER_THREAD:
            _, oldest = cache.popitem(last=False)
            oldest.close()
        return slide


OPEN_PER_THREAD = 4
"""Slides each thread keeps open (least recently used closed first)."""
_THREAD_CACHE = threading.local()
