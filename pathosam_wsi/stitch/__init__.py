"""Ownership of nuclei per block, global ids and seam-free painting."""

from pathosam_wsi.stitch.ids import assign_global_ids
from pathosam_wsi.stitch.ownership import OwnedNuclei, own_nuclei
from pathosam_wsi.stitch.paint import OwnedTile, paint_core

__all__ = [
    "OwnedNuclei",
    "OwnedTile",
    "assign_global_ids",
    "own_nuclei",
    "paint_core",
]
