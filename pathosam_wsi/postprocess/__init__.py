"""Per-block post-processing kernels (numpy/scipy/scikit-image only, no dask)."""

from pathosam_wsi.postprocess.watershed import ais_watershed, smooth_maps

__all__ = ["ais_watershed", "smooth_maps"]
