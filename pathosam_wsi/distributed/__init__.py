"""The only package that imports dask: builds and runs each slide's task graph."""

from pathosam_wsi.distributed.graph import SlideRunResult, run_slide_graph

__all__ = ["SlideRunResult", "run_slide_graph"]
