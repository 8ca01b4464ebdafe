"""Nucleus table rows of one window's prompts, from the painted labels of its region."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from pathosam_wsi.export.geoparquet import PolygonRings
from pathosam_wsi.postprocess.features import FEATURE_COLUMNS, nucleus_features
from pathosam_wsi.postprocess.polygons import label_rings
from pathosam_wsi.prompts.decode import PromptMask

__all__ = ["EXTRA_COLUMNS", "window_columns"]

EXTRA_COLUMNS = {
    "prompt_id": pa.int64(),
    "score": pa.float32(),
    "prompt_type": pa.string(),
    "window_scale": pa.float32(),
}
"""Columns the prompt table adds to the nucleus schema."""


def window_columns(
    region_xyxy: tuple[int, int, int, int],
    labels: npt.NDArray[np.uint32],
    rgb: npt.NDArray[np.uint8],
    owned: Sequence[PromptMask],
    values: npt.NDArray[np.uint32],
    info: dict[str, Any],
) -> dict[str, Any] | None:
    """Table columns of the ``owned`` prompts (label ``values``) within a painted region.

    ``labels``/``rgb`` cover ``region_xyxy`` (level-0 px); ``info`` holds ``slide_id``, ``mpp``,
    ``prompt_id`` (per owned prompt), ``prompt_type``, ``window_scale``. Prompts whose every
    pixel went to a higher-scored neighbour get no row. None when no row remains.
    """
    lut = np.zeros(int(labels.max(initial=0)) + 1, np.uint32)
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=lut.size)[1:] > 0) + 1
    keep = [
        k for k, v in enumerate(values) if int(v) < lut.size and int(v) in set(present.tolist())
    ]
    if not keep:
        return None
    for j, k in enumerate(keep, start=1):
        lut[values[k]] = j
    local = lut[labels]
    n = len(keep)
    ring_xy, offsets = label_rings(local, n)
    ox, oy, mpp = region_xyxy[0], region_xyxy[1], float(info["mpp"])
    ring_l0 = ring_xy + np.array([ox, oy], np.float64)
    seg = np.diff(ring_l0, axis=0)
    cum = np.concatenate([[0.0], np.cumsum(np.hypot(seg[:, 0], seg[:, 1]))])
    perimeter = cum[offsets[1:] - 1] - cum[offsets[:-1]]
    flat = local.ravel()
    where = np.flatnonzero(flat)
    ids = flat[where].astype(np.intp)
    rows, cols = np.divmod(where, local.shape[1])
    area = np.bincount(ids, minlength=n + 1)[1:].astype(np.int64)
    cy = np.bincount(ids, rows, minlength=n + 1)[1:] / area + 0.5 + oy
    cx = np.bincount(ids, cols, minlength=n + 1)[1:] / area + 0.5 + ox
    sel = np.asarray(keep, np.int64)
    score = np.asarray([owned[k].score for k in keep], np.float32)
    out: dict[str, Any] = {
        "nucleus_id": values[sel].astype(np.int64),
        "slide_id": pa.array([info["slide_id"]] * n, pa.string()),
        "geometry": PolygonRings(ring_l0, offsets),
        "centroid_x_l0": cx,
        "centroid_y_l0": cy,
        "centroid_x_um": cx * mpp,
        "centroid_y_um": cy * mpp,
        "area_px": area,
        "area_um2": area * mpp**2,
        "perimeter_um": perimeter * mpp,
        "fg_prob_mean": score,
        "tile_id": np.asarray([owned[k].window_id for k in keep], np.int64),
        "at_halo_edge": np.asarray([owned[k].at_window_edge for k in keep], bool),
        "prompt_id": np.asarray(info["prompt_id"], np.int64)[sel],
        "score": score,
        "prompt_type": pa.array([info["prompt_type"][k] for k in keep], pa.string()),
        "window_scale": np.asarray(info["window_scale"], np.float32)[sel],
    }
    feats = nucleus_features(local, rgb, n, mpp, rings=(ring_xy, offsets))
    out.update({name: feats[name] for name in FEATURE_COLUMNS})
    return out
