"""The only package that imports dask: builds and runs each slide's task graph, makes clients."""

from pathosam_wsi.distributed.cluster import connect, dashboard_link, make_client
from pathosam_wsi.distributed.graph import SlideRunResult, run_slide_graph

__all__ = ["SlideRunResult", "connect", "dashboard_link", "make_client", "run_slide_graph"]
