"""Dask workers as SLURM jobs (``pathosam-wsi run --cluster slurm``), through dask-jobqueue.

The driver (this process) starts the scheduler and submits ``jobs`` worker jobs. Every job is one
dask worker process with ``cores`` threads (``--cpus-per-task``), one GPU when asked for
(``--gres=gpu:1`` and the worker resource ``GPU=1`` that routes model inference to it).

Security: scheduler, workers and client authenticate each other with fresh temporary TLS
certificates (``Security.temporary()``, written for the jobs into ``work_dir/tls``, mode 0700); the
scheduler listens on the submit host's private address only, the dashboard on loopback (reach it
with ``ssh -L``). A dask scheduler runs whatever a connected client sends it, so it must never be
reachable from outside the cluster network (docs/cluster.md).

Jobs that end (walltime, preemption, ``scancel``) are replaced: a keeper thread compares the
cluster's jobs with ``squeue`` every few seconds, forgets ended ones and scales back to ``jobs``;
dask reschedules the lost worker's tasks and finished blocks are files, so outputs are unchanged.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shlex
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pathosam_wsi.errors import ConfigError

if TYPE_CHECKING:
    from distributed import Client
    from distributed.security import Security

__all__ = [
    "SlurmOptions",
    "cluster_kwargs",
    "load_jobqueue_config",
    "make_slurm_client",
    "private_address",
    "render_job_script",
]

log = logging.getLogger(__name__)

_INSTALL_HINT = 'install the SLURM extra: pip install "pathosam-wsi[slurm]"'
# Keys that this module sets itself: a --jobqueue-config may not override them.
_OWN_KEYS = frozenset({"protocol", "security", "shared-temp-directory", "log-directory"})
# Renamed in dask-jobqueue 0.8 (FutureWarning when set): key -> new name.
_RENAMED = {"extra": "worker-extra-args", "env-extra": "job-script-prologue"}
_RENAMED |= {"job-extra": "job-extra-directives", "header-skip": "job-directives-skip"}
# Keyword arguments for the cluster, not for each job.
_CLUSTER_ONLY = ("scheduler_options", "shared_temp_directory")


@dataclass(frozen=True, kw_only=True)
class SlurmOptions:
    """Worker jobs of ``--cluster slurm``.

    Parameters
    ----------
    jobs : int
        Worker jobs kept running (ended jobs are replaced up to this count).
    partition : str, optional
        ``--partition`` of the jobs (default: the site's default partition).
    gpus_per_job : int
        0 (CPU jobs) or 1 (``--gres=gpu:1`` and the worker resource ``GPU=1``).
    job_walltime : str, optional
        ``--time`` of each job, ``HH:MM:SS`` (default: the config file's, else 01:00:00).
    job_memory : str, optional
        Memory per job, e.g. ``16GiB`` (default: the config file's, else 4GiB).
    jobqueue_config : path, optional
        YAML with further dask-jobqueue SLURM keys (``cores``, ``account``, ``interface``,
        ``job-script-prologue``, ...), either flat or under ``jobqueue: slurm:``.
    work_dir : path, optional
        Folder on the shared file system for job logs and the temporary TLS files
        (default: ``./pathosam-slurm``); created before any job is submitted.
    replace_interval_s : float
        Seconds between two checks of ended jobs.
    max_replacements : int, optional
        Jobs resubmitted at most (default ``10 * jobs``): stops a broken job environment from
        submitting jobs forever.
    start_timeout_s : float
        Seconds to wait for the first worker to connect (jobs may queue).
    """

    jobs: int = 2
    partition: str | None = None
    gpus_per_job: int = 0
    job_walltime: str | None = None
    job_memory: str | None = None
    jobqueue_config: Path | None = None
    work_dir: Path | None = None
    replace_interval_s: float = 5.0
    max_replacements: int | None = None
    start_timeout_s: float = 3600.0
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ConfigError(f"--jobs must be >= 1, got {self.jobs!r}; ask for one job or more")
        if self.gpus_per_job not in (0, 1):
            raise ConfigError(
                f"--gpus-per-job must be 0 or 1, got {self.gpus_per_job!r}: one dask worker "
                "drives one GPU; ask for more jobs (--jobs) to use more GPUs"
            )


def load_jobqueue_config(path: Path | None) -> dict[str, Any]:
    """The SLURM section of a dask-jobqueue YAML file (flat, or under ``jobqueue: slurm:``)."""
    if path is None:
        return {}
    import yaml  # type: ignore[import-untyped]

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(
            f"cannot read --jobqueue-config {str(path)!r}: {err}; expected a YAML file of "
            "dask-jobqueue SLURM keys"
        ) from err
    if isinstance(data, dict) and isinstance(data.get("jobqueue"), dict):
        data = data["jobqueue"].get("slurm", {})
    if not isinstance(data, dict):
        raise ConfigError(
            f"--jobqueue-config {str(path)!r} holds {type(data).__name__}, expected a mapping "
            "of dask-jobqueue SLURM keys (cores, memory, account, ...)"
        )
    known = set(_jobqueue_defaults())
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"--jobqueue-config {str(path)!r}: unknown key(s) {unknown!r}; expected keys of "
            f"dask-jobqueue's SLURM section: {', '.join(sorted(known))}"
        )
    renamed = {k: _RENAMED[k] for k in sorted(set(data) & set(_RENAMED))}
    if renamed:
        raise ConfigError(
            f"--jobqueue-config {str(path)!r} uses deprecated dask-jobqueue key(s) {renamed!r} "
            "(old -> new); rename them"
        )
    own = sorted(set(data) & _OWN_KEYS)
    if own:
        raise ConfigError(
            f"--jobqueue-config {str(path)!r} sets {own!r}, which pathosam-wsi sets itself "
            "(TLS, log and certificate folders); remove them"
        )
    return {str(k): v for k, v in data.items()}


def _jobqueue_defaults() -> dict[str, Any]:
    """dask-jobqueue's own SLURM defaults (its config file is loaded on import)."""
    import dask

    _import_jobqueue()
    return dict(dask.config.get("jobqueue.slurm"))


def _import_jobqueue() -> Any:
    try:
        import dask_jobqueue
    except ImportError as err:
        raise ConfigError(f"--cluster slurm needs dask-jobqueue ({err}); {_INSTALL_HINT}") from err
    return dask_jobqueue


def private_address() -> tuple[str, str]:
    """``(ip, interface)``: the first private, non-loopback IPv4 address of this host.

    Falls back to ``("127.0.0.1", "lo")`` (jobs on this host only) with a warning. Public
    addresses are never chosen: the scheduler runs code for whoever reaches it.
    """
    import socket

    import psutil

    for name, addrs in sorted(psutil.net_if_addrs().items()):
        for a in addrs:
            if a.family != socket.AF_INET:
                continue
            ip = ipaddress.ip_address(a.address)
            if ip.is_private and not (ip.is_loopback or ip.is_link_local):
                return a.address, name
    log.warning(
        "no private IPv4 address on this host; the scheduler listens on 127.0.0.1, so only "
        "jobs on this host can connect (set `interface` in --jobqueue-config for a cluster)"
    )
    return "127.0.0.1", "lo"


def _interface_address(name: str) -> str:
    """IPv4 address of a network interface; refuses public addresses."""
    import socket

    import psutil

    addrs = [a.address for a in psutil.net_if_addrs().get(name, []) if a.family == socket.AF_INET]
    if not addrs:
        raise ConfigError(
            f"interface {name!r} has no IPv4 address on this host; expected one of "
            f"{', '.join(sorted(psutil.net_if_addrs()))} (`ip -br addr`)"
        )
    if not ipaddress.ip_address(addrs[0]).is_private:
        raise ConfigError(
            f"interface {name!r} has the public address {addrs[0]}; the dask scheduler must "
            "listen on a private cluster network only: choose that interface (e.g. ib0)"
        )
    return addrs[0]


def _job_env(options: SlurmOptions) -> list[str]:
    """Prologue lines: the driver's PYTHONPATH and extra variables travel into the job."""
    env = dict(options.extra_env)
    if os.environ.get("PYTHONPATH") and "PYTHONPATH" not in env:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]


def cluster_kwargs(
    options: SlurmOptions, *, security: Security | None, host: str | None = None
) -> dict[str, Any]:
    """Keyword arguments of ``dask_jobqueue.SLURMCluster`` for these options (pure, no jobs).

    ``host`` is the scheduler's listening address (default: from ``interface`` of the config file,
    else :func:`private_address`). Creates ``work_dir/logs`` and ``work_dir/tls`` (mode 0700).
    """
    conf = load_jobqueue_config(options.jobqueue_config)
    interface = conf.pop("interface", None)
    if host is None:
        host = _interface_address(interface) if interface else None
    if host is None:
        host, interface = private_address()
    work = Path(options.work_dir or "pathosam-slurm").absolute()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    (work / "tls").mkdir(parents=True, exist_ok=True)
    (work / "tls").chmod(0o700)

    scheduler_options = {"host": host, "dashboard_address": "127.0.0.1:0"}
    scheduler_options.update(conf.pop("scheduler-options", None) or {})
    cores = int(conf.pop("cores", None) or 1)
    gres = [f"--gres=gpu:{options.gpus_per_job}"] if options.gpus_per_job else []
    # No worker dashboard: it would listen on the cluster interface without TLS.
    gpu_args = ["--no-dashboard"] + (["--resources", "GPU=1"] if options.gpus_per_job else [])
    kw: dict[str, Any] = {k.replace("-", "_"): v for k, v in conf.items() if v is not None}
    kw.update(
        cores=cores,
        processes=1,
        memory=options.job_memory or conf.get("memory") or "4GiB",
        walltime=options.job_walltime or conf.get("walltime") or "01:00:00",
        job_name=conf.get("name") or "pathosam-worker",
        job_extra_directives=[*(conf.get("job-extra-directives") or []), *gres],
        worker_extra_args=[*(conf.get("worker-extra-args") or []), *gpu_args],
        job_script_prologue=[*(conf.get("job-script-prologue") or []), *_job_env(options)],
        log_directory=str(work / "logs"),
        shared_temp_directory=str(work / "tls"),
        scheduler_options=scheduler_options,
        interface=interface,
        protocol="tls://" if security is not None else None,
        security=security,
        python=conf.get("python") or sys.executable,
        death_timeout=conf.get("death-timeout") or 60,
    )
    kw.pop("name", None)
    if options.partition:
        kw["queue"] = options.partition
    return kw


def render_job_script(options: SlurmOptions, scheduler_address: str, host: str) -> str:
    """The worker job script that ``--cluster slurm`` would submit (no scheduler, no job).

    TLS file arguments are left out (each run has fresh certificates); ``host`` stands for the
    scheduler's listening address.
    """
    from dask_jobqueue.slurm import SLURMJob

    kw = cluster_kwargs(options, security=None, host=host)
    for key in _CLUSTER_ONLY:
        kw.pop(key)
    kw["protocol"] = "tls://"
    return str(SLURMJob(scheduler_address, name="pathosam-worker-0", **kw).job_script())


def _queued_job_ids() -> set[str] | None:
    """Ids of this user's pending or running SLURM jobs; None when squeue fails."""
    try:
        out = subprocess.run(
            ["squeue", "--me", "-h", "-o", "%i %T"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        log.warning("squeue failed (%s); ended jobs are not replaced this round", err)
        return None
    ids = set()
    for line in out.splitlines():
        job_id, _, state = line.partition(" ")
        if state not in {"COMPLETING", "CANCELLED", "COMPLETED", "FAILED", "TIMEOUT"}:
            ids.add(job_id)
    return ids


class JobKeeper:
    """Replaces ended worker jobs, keeping ``jobs`` submitted (a daemon thread)."""

    def __init__(self, cluster: Any, jobs: int, interval_s: float, max_replacements: int) -> None:
        self.cluster = cluster
        self.jobs = jobs
        self.interval_s = interval_s
        self.max_replacements = max_replacements
        self.replaced: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slurm-job-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.interval_s + 35)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # keep replacing jobs whatever one round hit
                log.exception("checking SLURM worker jobs failed")

    def check(self) -> list[str]:
        """Forget jobs that left the queue and scale back up; returns the ended job ids."""
        from distributed.utils import sync

        queued = _queued_job_ids()
        if queued is None:
            return []
        jobs = dict(self.cluster.workers)
        ended = {n: j.job_id for n, j in jobs.items() if j.job_id and j.job_id not in queued}
        if not ended:
            return []
        if len(self.replaced) + len(ended) > self.max_replacements:
            log.error(
                "SLURM worker jobs keep ending (%d replaced so far, cap %d); not replacing %s: "
                "see the job logs and fix the job environment",
                len(self.replaced),
                self.max_replacements,
                ", ".join(ended.values()),
            )
            return []

        async def forget() -> None:
            for name in ended:
                # A fresh spec name for the replacement, so dask's delayed cleanup of the lost
                # worker (lost-worker-timeout) cannot cancel the new job.
                self.cluster.worker_spec.pop(name, None)
                job = self.cluster.workers.pop(name, None)
                if job is not None:
                    job.job_id = None  # already gone: nothing to scancel
                    await job.close()

        sync(self.cluster.loop, forget)
        self.replaced.extend(ended.values())
        log.warning(
            "SLURM worker job(s) %s ended; submitting %d replacement(s)",
            ", ".join(ended.values()),
            len(ended),
        )
        self.cluster.scale(jobs=self.jobs)
        return list(ended.values())


def _cluster_class() -> type:
    jq = _import_jobqueue()

    class PathoSamSLURMCluster(jq.SLURMCluster):  # type: ignore[misc,name-defined]
        """SLURMCluster whose dashboard link is the loopback address it listens on."""

        keeper: JobKeeper | None = None

        @property
        def dashboard_link(self) -> str:
            from distributed.utils import format_dashboard_link

            port = self.scheduler_info.get("services", {}).get("dashboard")
            return format_dashboard_link("127.0.0.1", port) if port else ""

        def close(self, timeout: float | None = None) -> Any:
            if self.keeper is not None:
                self.keeper.stop()
            return super().close(timeout=timeout)

    return PathoSamSLURMCluster


def make_slurm_client(options: SlurmOptions) -> Client:
    """Start the scheduler, submit ``options.jobs`` worker jobs, return a TLS client.

    Parameters
    ----------
    options : SlurmOptions
        Jobs, partition, GPUs, walltime, memory, config file and work folder.

    Returns
    -------
    distributed.Client
        Owns its cluster: ``client.close(); client.cluster.close()`` cancels the jobs.

    Raises
    ------
    ConfigError
        dask-jobqueue or cryptography missing, bad config file or interface, or no worker
        connected within ``options.start_timeout_s``.
    """
    from distributed import Client
    from distributed.security import Security

    cls = _cluster_class()
    try:
        security = Security.temporary()
    except ImportError as err:
        raise ConfigError(
            f"temporary TLS certificates need the cryptography package ({err}); {_INSTALL_HINT}"
        ) from err
    kw = cluster_kwargs(options, security=security)
    try:
        cluster = cls(**kw)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"dask-jobqueue rejected the SLURM settings: {err}; check --jobqueue-config "
            f"{options.jobqueue_config!s} and the --job-* options"
        ) from err
    try:
        log.info("SLURM worker job script:\n%s", cluster.job_script())
        cluster.scale(jobs=options.jobs)
        cluster.keeper = JobKeeper(
            cluster,
            options.jobs,
            options.replace_interval_s,
            options.max_replacements or 10 * options.jobs,
        )
        cluster.keeper.start()
        client = Client(cluster, security=security)
        log.info(
            "scheduler %s; waiting for the first of %d SLURM worker jobs",
            cluster.scheduler_address,
            options.jobs,
        )
        try:
            client.wait_for_workers(1, timeout=options.start_timeout_s)
        except TimeoutError as err:
            client.close()
            raise ConfigError(
                f"no SLURM worker connected within {options.start_timeout_s:.0f} s; see "
                f"`squeue --me` and the job logs in {kw['log_directory']}"
            ) from err
    except BaseException:
        cluster.close()
        raise
    return client
