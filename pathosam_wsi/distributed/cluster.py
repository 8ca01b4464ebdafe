"""Clients for every place the engine runs: this process, local workers, or an existing cluster.

``--cluster auto`` (the default) is ``local`` on a machine with GPUs and ``threads`` without: on
CPUs one in-process worker with a thread per core was measured faster than worker processes
(two sample slides on 2 cores: README "Cohorts and clusters"), since the block kernels release
the GIL and no pixels or results cross processes. ``--cluster local`` starts one worker per GPU
through dask-cuda's ``LocalCUDACluster`` when GPUs are present and dask-cuda is installed,
otherwise a ``LocalCluster`` of single-threaded worker processes; ``--scheduler ADDRESS|FILE``
connects to a cluster started elsewhere (SLURM, Kubernetes, ``dask scheduler``); ``none`` runs
each slide's graph on dask's threaded scheduler in this process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pathosam_wsi.errors import ConfigError

if TYPE_CHECKING:
    from distributed import Client

    from pathosam_wsi.distributed.slurm import SlurmOptions

__all__ = [
    "ClusterKind",
    "auto_kind",
    "connect",
    "dashboard_link",
    "has_gpu_workers",
    "make_client",
]

log = logging.getLogger(__name__)

ClusterKind = Literal["auto", "local", "threads", "none", "slurm"]
_KINDS = ("auto", "local", "threads", "none", "slurm")
_LOCAL_HOST = "127.0.0.1"
"""Local clusters (scheduler, workers, dashboard) listen on loopback only."""


def _gpu_count() -> int:
    """CUDA devices visible to torch (0 on CPU builds or without a driver)."""
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def auto_kind() -> ClusterKind:
    """What ``auto`` means here: ``local`` with GPUs, ``threads`` without (faster on CPUs)."""
    return "local" if _gpu_count() > 0 else "threads"


class _ShutdownNoise(logging.Filter):
    """Drops the nanny's "Worker process still alive after 4.0 seconds, killing" lines.

    They are printed when a worker process of our own local cluster takes longer than the
    nanny's fixed 4 s to exit (interpreter teardown of torch/zarr on a busy machine); the results
    are written by then, and the process is ended either way.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "still alive after" not in record.getMessage()


@contextmanager
def _quiet_shutdown() -> Iterator[None]:
    """Close a local cluster without the nanny's kill warnings."""
    logger, noise = logging.getLogger("distributed.nanny"), _ShutdownNoise()
    logger.addFilter(noise)
    try:
        yield
    finally:
        logger.removeFilter(noise)


def _nvml_error() -> type[BaseException]:
    """pynvml's base error class, or OSError where pynvml is missing (docs/stack.md P3)."""
    try:
        import pynvml
    except ImportError:
        return OSError
    return pynvml.NVMLError  # type: ignore[no-any-return]


def _http_options(dashboard: bool) -> dict[str, Any]:
    """HTTP servers of scheduler and workers on 127.0.0.1 only; the dashboard only if asked.

    The scheduler and every worker always serve HTTP (health, metrics); without an address they
    listen on all interfaces, scheduler on port 8787.
    """
    return {
        "dashboard_address": f"{_LOCAL_HOST}:0",
        "worker_dashboard_address": f"{_LOCAL_HOST}:0",
        "scheduler_kwargs": {"dashboard": dashboard},
    }


def _cuda_cluster(n_workers: int | None, dashboard: bool) -> Any | None:
    """A ``LocalCUDACluster`` with a ``GPU`` resource per worker, or None where it cannot start."""
    if _gpu_count() == 0:
        return None
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError as err:
        log.warning(
            "GPUs found but dask-cuda is not importable (%s); install pathosam-wsi[cuda] "
            "for one worker per GPU; using a plain LocalCluster",
            err,
        )
        return None
    # One GPU slot per worker, plus CPU threads: post-processing of a finished batch runs on the
    # same worker (its maps stay in memory there) while the GPU slot serves the next batch.
    gpus = n_workers or _gpu_count()
    threads = max(2, (os.cpu_count() or 2) // max(gpus, 1))
    try:
        return LocalCUDACluster(
            n_workers=n_workers,
            resources={"GPU": 1},
            host=_LOCAL_HOST,
            threads_per_worker=threads,
            **_http_options(dashboard),
        )
    except (_nvml_error(), OSError, RuntimeError) as err:
        log.warning("LocalCUDACluster failed (%s); using a CPU LocalCluster", err)
        return None


def _local_cluster(kind: ClusterKind, n_workers: int | None, dashboard: bool) -> Any:
    from distributed import LocalCluster

    if kind == "threads":
        return LocalCluster(
            n_workers=1,
            threads_per_worker=n_workers or os.cpu_count() or 1,
            processes=False,
            **_http_options(dashboard),
        )
    cluster = _cuda_cluster(n_workers, dashboard)
    if cluster is not None:
        return cluster
    return LocalCluster(
        n_workers=n_workers or os.cpu_count() or 1,
        threads_per_worker=1,
        processes=True,
        host=_LOCAL_HOST,
        **_http_options(dashboard),
    )


def _connect(scheduler: str, timeout_s: float) -> Client:
    from distributed import Client

    try:
        if Path(scheduler).is_file():
            return Client(scheduler_file=scheduler, timeout=timeout_s)
        return Client(scheduler, timeout=timeout_s)
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"cannot connect to dask scheduler {scheduler!r}: {err}; expected tcp://HOST:PORT, "
            "tls://HOST:PORT or a scheduler file of a running scheduler"
        ) from err


def make_client(
    cluster: ClusterKind = "auto",
    scheduler: str | None = None,
    n_workers: int | None = None,
    *,
    dashboard: bool = False,
    timeout_s: float = 30.0,
    slurm: SlurmOptions | None = None,
) -> Client | None:
    """A ``distributed.Client`` for the requested cluster, or None for in-process threads.

    Parameters
    ----------
    cluster : {"auto", "local", "threads", "none", "slurm"}
        ``auto``: ``local`` with GPUs, else ``threads``; ``local``: LocalCUDACluster (GPUs) or
        LocalCluster of ``n_workers`` single-threaded processes; ``threads``: one in-process
        worker with ``n_workers`` threads; ``none``: no client. Ignored when ``scheduler`` is given.
    scheduler : str, optional
        Address (``tcp://HOST:PORT``, ``tls://HOST:PORT``) or scheduler-file path of an existing
        cluster; TLS settings come from dask's configuration (``distributed.comm.tls.*``).
    n_workers : int, optional
        Local workers (default: one per GPU with dask-cuda, else one per CPU).
    dashboard : bool
        Start the dashboard of a local cluster on a free port of 127.0.0.1 (off by default).
    timeout_s : float
        Seconds to wait for an existing scheduler.
    slurm : SlurmOptions, optional
        Worker jobs of ``cluster="slurm"`` (see :mod:`pathosam_wsi.distributed.slurm`).

    Returns
    -------
    distributed.Client or None
        A client made here owns its local cluster: close both with :func:`connect` or
        ``client.close(); client.cluster.close()``.

    Raises
    ------
    ConfigError
        Unknown cluster kind or unreachable scheduler.
    """
    if scheduler:
        return _connect(scheduler, timeout_s)
    if cluster not in _KINDS:
        raise ConfigError(f"cluster {cluster!r} is unknown; expected one of {', '.join(_KINDS)}")
    if cluster == "auto":
        cluster = auto_kind()
    if cluster == "none":
        return None
    if cluster == "slurm":
        from pathosam_wsi.distributed.slurm import SlurmOptions, make_slurm_client

        return make_slurm_client(slurm or SlurmOptions())
    from distributed import Client

    local = _local_cluster(cluster, n_workers, dashboard)
    return Client(local)


@contextmanager
def connect(
    cluster: ClusterKind = "auto",
    scheduler: str | None = None,
    n_workers: int | None = None,
    *,
    dashboard: bool = False,
    slurm: SlurmOptions | None = None,
) -> Iterator[Client | None]:
    """``make_client`` as a context manager that closes the client and any cluster it started."""
    client = make_client(cluster, scheduler, n_workers, dashboard=dashboard, slurm=slurm)
    try:
        yield client
    finally:
        if client is not None:
            owned = None if scheduler else client.cluster
            with _quiet_shutdown():
                client.close()
                if owned is not None:
                    owned.close()


def has_gpu_workers(client: Client) -> bool:
    """Whether any worker advertises a ``GPU`` resource."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {}).values()
    return any(w.get("resources", {}).get("GPU") for w in workers)


def dashboard_link(client: Client | None) -> str | None:
    """The dashboard URL when the scheduler serves one."""
    if client is None:
        return None
    services = client.scheduler_info(n_workers=0).get("services", {})
    if "dashboard" not in services:
        return None
    if client.cluster is not None:  # a local cluster: its HTTP server listens on loopback only
        return f"http://{_LOCAL_HOST}:{services['dashboard']}/status"
    return str(client.dashboard_link)
