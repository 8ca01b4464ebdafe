"""Solidity (area / convex hull area) of pixel-outline rings, exactly, without GEOS.

Ring vertices are pixel-edge midpoints, multiples of 0.5 px; in half-pixel units they are small
integers, so every area below is an exact integer sum, equal to the exact value GEOS computes for
the same ring and hull (shoelace terms of such coordinates are exact in float64). The hull of a
ring is the hull of its leftmost and rightmost vertex on each level: a y-monotone polygon (left
chain down, right chain up, left <= right on every level). A vertex that is reflex or collinear
between its chain neighbours (one level apart at least) is not an extreme point of the set, and
dropping it keeps the polygon y-monotone with left <= right, so dropping such vertices (all
polygons at once, repeatedly) until every turn is convex leaves exactly the hull's vertices.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["ring_solidity"]


def _shoelace8(
    x: npt.NDArray[np.int64], y: npt.NDArray[np.int64], group: npt.NDArray[np.intp], n: int
) -> npt.NDArray[np.float64]:
    """|8 x area| of closed polygons (vertices in half-px, each polygon's vertices contiguous)."""
    start = np.searchsorted(group, np.arange(n))
    end = np.searchsorted(group, np.arange(n), side="right")
    nxt = np.arange(1, x.size + 1)
    has = end > start
    nxt[end[has] - 1] = start[has]
    cross = x * y[nxt] - x[nxt] * y
    return np.abs(np.bincount(group, weights=cross, minlength=n)).astype(np.float64)


def _row_extremes(
    x: npt.NDArray[np.int64], y: npt.NDArray[np.int64], offsets: npt.NDArray[np.int64], n: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.intp]]:
    """Leftmost vertices by rising y, then rightmost by falling y, of each ring (clockwise)."""
    ring = np.repeat(np.arange(n), np.diff(offsets))
    y0 = np.minimum.reduceat(y, offsets[:-1])
    levels = np.maximum.reduceat(y, offsets[:-1]) - y0 + 1
    level_off = np.concatenate([[0], np.cumsum(levels)])
    slot = level_off[ring] + y[: ring.size] - y0[ring]
    big = np.iinfo(np.int64).max
    left = np.full(int(level_off[-1]), big, np.int64)
    right = np.full(int(level_off[-1]), -big, np.int64)
    np.minimum.at(left, slot, x[: ring.size])
    np.maximum.at(right, slot, x[: ring.size])
    slot_ring = np.repeat(np.arange(n), levels)
    slot_y = np.arange(slot_ring.size) - level_off[slot_ring] + y0[slot_ring]
    use_l = left != big
    # A lone vertex on an inner level (a local y-extremum of the ring) goes into both chains, so
    # that left <= right on every level; the copy on the wrong side is reflex and dropped later.
    # (A pixel outline's hull has positive width on every inner level, so the copies never both
    # stay.) Lone vertices on the top and bottom levels join the chains once.
    inner = (slot_y != y0[slot_ring]) & (slot_y != y0[slot_ring] + levels[slot_ring] - 1)
    use_r = use_l & ((right != left) | inner)
    # Right-side vertices go in falling y: reverse the slot order inside each ring.
    rev = level_off[slot_ring] + level_off[slot_ring + 1] - 1 - np.arange(slot_ring.size)
    key_l = np.flatnonzero(use_l)
    key_r = rev[np.flatnonzero(use_r[rev])]
    order_ring = np.concatenate([slot_ring[key_l], slot_ring[key_r]])
    px = np.concatenate([left[key_l], right[key_r]])
    py = np.concatenate([slot_y[key_l], slot_y[key_r]])
    order = np.argsort(order_ring, kind="stable")
    return px[order], py[order], order_ring[order]


def ring_solidity(
    ring_xy: npt.NDArray[np.float64], offsets: npt.NDArray[np.int64], n: int
) -> npt.NDArray[np.float64]:
    """Ring area / convex hull area of each of ``n`` closed rings (1 where the hull is empty).

    Parameters
    ----------
    ring_xy : (P, 2) float64
        Closed rings, x then y, px; every coordinate a multiple of 0.5 (pixel outlines).
    offsets : (n + 1,) int64
        Ring i is ``ring_xy[offsets[i]:offsets[i + 1]]``.
    n : int
        Number of rings.

    Returns
    -------
    (n,) float64

    Raises
    ------
    ValueError
        If a coordinate is not a multiple of 0.5.
    """
    if n == 0:
        return np.zeros(0)
    half = ring_xy * 2
    if not np.array_equal(half, np.rint(half)):
        raise ValueError("ring vertices must be multiples of 0.5 px (pixel outlines)")
    x = half[:, 0].astype(np.int64)
    y = half[:, 1].astype(np.int64)
    area8 = _shoelace8(x, y, np.repeat(np.arange(n), np.diff(offsets)), n)
    hx, hy, hg = _row_extremes(x, y, offsets, n)
    while True:
        start = np.searchsorted(hg, np.arange(n))
        end = np.searchsorted(hg, np.arange(n), side="right")
        has = end > start
        prev, nxt = np.arange(-1, hx.size - 1), np.arange(1, hx.size + 1)
        prev[start[has]], nxt[end[has] - 1] = end[has] - 1, start[has]
        cross = (hx - hx[prev]) * (hy[nxt] - hy) - (hy - hy[prev]) * (hx[nxt] - hx)
        convex = cross < 0
        if convex.all():
            break
        hx, hy, hg = hx[convex], hy[convex], hg[convex]
    hull8 = _shoelace8(hx, hy, hg, n)
    return np.divide(area8, hull8, out=np.ones(n), where=hull8 > 0)
