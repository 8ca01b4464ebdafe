"""The labelled pixels of a label image as flat lists, built once and shared by every measurement.

Per-label sums over these lists (``np.bincount`` with weights) add the same values in the same
(raster) order as sums over the whole image, so results are bit-identical while the background,
often half of a block, is never visited again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["LabelPixels", "label_pixels"]


@dataclass(frozen=True)
class LabelPixels:
    """Labelled pixels of an (h, w) image in raster order.

    Attributes
    ----------
    index : (m,) intp
        Raster index ``row * w + col`` of each labelled pixel, ascending.
    ids : (m,) intp
        Label of each pixel (> 0).
    rows, cols : (m,) intp
        Row and column of each pixel, image px.
    """

    index: npt.NDArray[np.intp]
    ids: npt.NDArray[np.intp]
    rows: npt.NDArray[np.intp]
    cols: npt.NDArray[np.intp]

    def subset(self, keep: npt.NDArray[np.bool_], ids: npt.NDArray[np.intp]) -> LabelPixels:
        """The pixels where ``keep`` (m,) holds, relabelled with ``ids`` (m,); order kept."""
        return LabelPixels(self.index[keep], ids[keep], self.rows[keep], self.cols[keep])

    def sums(
        self, n: int, weights: npt.NDArray[np.number] | None = None
    ) -> npt.NDArray[np.float64]:
        """(n,) per-label sums of ``weights`` (m,) (pixel counts when omitted), labels 1..n."""
        return np.bincount(self.ids, weights=weights, minlength=n + 1)[1:].astype(np.float64)


def label_pixels(labels: npt.NDArray[np.integer]) -> LabelPixels:
    """Labelled pixels of ``labels`` (h, w), YX, 0 = background."""
    flat = labels.ravel()
    index = np.flatnonzero(flat)
    rows, cols = np.divmod(index, labels.shape[1])
    return LabelPixels(index, flat[index].astype(np.intp), rows, cols)
