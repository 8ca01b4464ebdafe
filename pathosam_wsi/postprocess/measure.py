"""Per-nucleus measurements of one block's owned nuclei (vectorised where possible)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pathosam_wsi.postprocess.pixels import LabelPixels, label_pixels

__all__ = ["label_means", "pixel_means", "semantic_classes", "semantic_classes_of_pixels"]


def label_means(
    values: npt.NDArray[np.floating], labels: npt.NDArray[np.uint32], n: int
) -> npt.NDArray[np.float64]:
    """Mean of ``values`` (h, w) over each label 1..n of ``labels`` (h, w) -> (n,)."""
    return pixel_means(values, label_pixels(labels), n)


def pixel_means(
    values: npt.NDArray[np.floating], px: LabelPixels, n: int
) -> npt.NDArray[np.float64]:
    """Mean of ``values`` (h, w) over each label 1..n of the pixel lists ``px`` -> (n,).

    Sums run over the labelled pixels in raster order, as over the whole image: bit-identical.
    """
    counts = np.bincount(px.ids, minlength=n + 1)[1:]
    weights = values.ravel()[px.index].astype(np.float64)
    sums = np.bincount(px.ids, weights=weights, minlength=n + 1)[1:]
    return sums / np.maximum(counts, 1)


def semantic_classes(
    semantic: npt.NDArray[np.float32], labels: npt.NDArray[np.uint32], n: int
) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.float32]]:
    """Class of each nucleus from per-class probabilities.

    Parameters
    ----------
    semantic : (C, h, w) float32, CYX
        Class probabilities; class 0 is background and is never assigned.
    labels : (h, w) uint32, YX
        Labels 1..n.

    Returns
    -------
    class_id : (n,) int16
        Argmax over classes 1..C-1 of the class probability averaged over the nucleus.
    class_prob : (n,) float32
        That average probability.
    """
    return semantic_classes_of_pixels(semantic, label_pixels(labels), n)


def semantic_classes_of_pixels(
    semantic: npt.NDArray[np.float32], px: LabelPixels, n: int
) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.float32]]:
    """``semantic_classes`` from the labels' pixel lists."""
    means = np.stack([pixel_means(semantic[c], px, n) for c in range(1, semantic.shape[0])])
    best = np.argmax(means, axis=0)
    prob = means[best, np.arange(n)] if n else np.zeros(0)
    return (best + 1).astype(np.int16), prob.astype(np.float32)
