"""The only package that imports dask: executes tasks (threads or a cluster), makes clients."""

from pathosam_wsi.distributed.cluster import connect, dashboard_link, make_client
from pathosam_wsi.distributed.executor import (
    ClientExecutor,
    TaskExecutor,
    ThreadExecutor,
    make_executor,
)

__all__ = [
    "ClientExecutor",
    "TaskExecutor",
    "ThreadExecutor",
    "connect",
    "dashboard_link",
    "make_client",
    "make_executor",
]
