"""``pathosam-wsi run MANIFEST -o OUT``: a cohort of slides on threads or a dask cluster."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from pathosam_wsi.cli.errors import EXIT_INTERRUPTED, check_out_dir, error_line, fail
from pathosam_wsi.cli.options import (
    config_options,
    model_options,
    out_dir_option,
    run_config,
    slide_options,
    watershed_options,
)
from pathosam_wsi.cli.progress import ConsoleProgress, cpu_seconds_per_block
from pathosam_wsi.cli.status import echo_status
from pathosam_wsi.errors import PathoSamError
from pathosam_wsi.pipeline.layout import CohortLayout

if TYPE_CHECKING:
    from pathosam_wsi.distributed.cluster import ClusterKind

__all__ = ["run"]

EXIT_SOME_FAILED = 3


def _quiet_distributed_logs() -> None:
    """dask's own INFO lines only with -v (distributed sets its loggers to INFO on import)."""
    import logging

    import distributed  # noqa: F401  (configures its loggers first)

    logging.getLogger("distributed").setLevel(
        max(logging.getLogger().level, logging.WARNING)
        if logging.getLogger().level > logging.INFO
        else logging.INFO
    )


@click.command()
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@out_dir_option("Output root: OUT/<slide_id>/, OUT/status.parquet, OUT/nuclei/.")
@click.option(
    "--cluster",
    type=click.Choice(["auto", "local", "threads", "none", "slurm"]),
    default="auto",
    show_default=True,
    help="auto: local with GPUs, else threads (faster on CPUs); local: LocalCUDACluster "
    "(GPUs) or LocalCluster of worker processes; threads: one in-process "
    "worker; none: threads without dask.distributed (debugging); slurm: workers as SLURM "
    "jobs (pathosam-wsi[slurm], docs/cluster.md).",
)
@click.option(
    "--scheduler",
    help="Existing cluster: tcp://HOST:PORT, tls://HOST:PORT or a "
    "scheduler file (overrides --cluster).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 4096),
    help="Local workers (default: one per GPU, else per CPU).",
)
@click.option(
    "--slides-in-flight",
    type=click.IntRange(1, 1024),
    help="Slides at once (default: 2 x worker threads, at most 64).",
)
@click.option(
    "--dashboard",
    is_flag=True,
    help="Start the dashboard of a local cluster (on 127.0.0.1; off unless given).",
)
@click.option(
    "--skip-bad",
    is_flag=True,
    help="Run the slides that open and mark the rows that do not as failed (default: refuse).",
)
@click.option("--jobs", type=int, default=2, show_default=True, help="slurm: worker jobs kept up.")
@click.option("--partition", help="slurm: partition of the worker jobs.")
@click.option("--gpus-per-job", type=int, default=0, show_default=True, help="slurm: 0 or 1.")
@click.option("--job-walltime", help="slurm: --time of each job, HH:MM:SS (default 01:00:00).")
@click.option("--job-memory", help="slurm: memory per job, e.g. 16GiB (default 4GiB).")
@click.option(
    "--job-check-interval",
    type=click.FloatRange(0.1, 3600),
    default=5.0,
    show_default=True,
    help="slurm: seconds between checks for ended worker jobs (they are replaced).",
)
@click.option(
    "--jobqueue-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="slurm: YAML of further dask-jobqueue keys (cores, account, interface, ...).",
)
@model_options
@slide_options
@watershed_options
@config_options("Threads of --cluster none (default: all CPUs).")
@click.option("--overwrite", is_flag=True, help="Redo every slide from scratch.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display or table.")
@click.pass_context
def run(
    ctx: click.Context,
    manifest: Path,
    out_dir: Path,
    cluster: str,
    scheduler: str | None,
    workers: int | None,
    slides_in_flight: int | None,
    dashboard: bool,
    skip_bad: bool,
    overwrite: bool,
    quiet: bool,
    jobs: int,
    partition: str | None,
    gpus_per_job: int,
    job_walltime: str | None,
    job_memory: str | None,
    job_check_interval: float,
    jobqueue_config: Path | None,
    **_options: Any,
) -> None:
    """Segment every slide listed in MANIFEST (CSV or Parquet: path[, slide_id, mpp, roi, ...]).

    Finished slides are skipped and unfinished ones resume; exit code 3 when some slide failed.
    Settings: defaults < --config TOML < options given here < the manifest's columns per row.
    """
    from pathosam_wsi.cohort import read_manifest, read_status, run_cohort
    from pathosam_wsi.cohort_check import check_manifest_slides, describe_bad_rows
    from pathosam_wsi.distributed.cluster import connect, dashboard_link
    from pathosam_wsi.distributed.progress import forward_block_progress

    _quiet_distributed_logs()
    try:
        config = run_config(ctx)
        entries = read_manifest(manifest, config)
        check_out_dir(out_dir)
        bad = check_manifest_slides(entries)
        if bad and not skip_bad:
            raise describe_bad_rows(str(manifest), bad, len(entries))
        for b in bad:
            click.echo(
                f"warning: row {b.row} ({b.entry.slide_id}) is marked failed: {b.reason}", err=True
            )
        kind = cast("ClusterKind", cluster)
        slurm = None
        if kind == "slurm" and not scheduler:
            from pathosam_wsi.distributed.slurm import SlurmOptions

            slurm = SlurmOptions(
                jobs=jobs,
                partition=partition,
                gpus_per_job=gpus_per_job,
                job_walltime=job_walltime,
                job_memory=job_memory,
                replace_interval_s=job_check_interval,
                jobqueue_config=jobqueue_config,
                work_dir=CohortLayout(out_dir).slurm_dir,
            )
        with connect(kind, scheduler, workers, dashboard=dashboard, slurm=slurm) as client:
            link = dashboard_link(client) if (dashboard or kind == "slurm") else None
            if link and (not quiet or kind == "slurm"):
                click.echo(f"dashboard: {link}", err=True)
            progress = ConsoleProgress(
                disable=quiet, slides=len(entries), cpu_s_per_block=cpu_seconds_per_block(config)
            )
            forward = forward_block_progress(None if quiet else client, progress.on_block)
            with progress, forward, warnings.catch_warnings():
                warnings.simplefilter("default")
                rows = run_cohort(
                    entries,
                    out_dir,
                    client=client,
                    overwrite=overwrite,
                    slides_in_flight=slides_in_flight,
                    on_event=progress,
                )
    except PathoSamError as err:
        fail(error_line(err))
    except KeyboardInterrupt:
        fail("interrupted; rerun the same command to resume", EXIT_INTERRUPTED)
    if not quiet:
        echo_status(read_status(out_dir))
    failed = [r for r in rows if r.state != "done"]
    if failed:
        click.echo(
            f"{len(failed)} of {len(rows)} slides failed: "
            f"see {CohortLayout(out_dir).status_parquet}",
            err=True,
        )
        sys.exit(EXIT_SOME_FAILED)
