"""Run a cohort on SLURM GPU jobs through dask-jobqueue, with temporary TLS certificates.

Usage (inside an allocation or on a login node that may run long processes; see submit.sh)::

    python deploy/slurm/cohort_slurm.py MANIFEST OUT --jobs 8 [--tile 512 ...]

Requires ``pip install dask-jobqueue==0.9.0`` next to ``pathosam-wsi[cuda]`` and
``deploy/slurm/jobqueue.yaml`` in the dask config path. A recipe: not executed on the build machine.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main() -> int:
    """Start the SLURM cluster, run the cohort, stop the jobs; exit 3 when some slide failed."""
    from dask_jobqueue import SLURMCluster
    from distributed import Client
    from distributed.security import Security

    from pathosam_wsi.cohort import read_manifest, run_cohort
    from pathosam_wsi.config import RunConfig, TilingConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("out")
    parser.add_argument("--jobs", type=int, default=4, help="GPU worker jobs (one GPU each)")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--halo", type=int, default=64)
    parser.add_argument("--slides-in-flight", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    # Fresh self-signed certificates for this run only: scheduler, workers and this client
    # authenticate each other and encrypt every message (dask-jobqueue copies them to the jobs
    # through shared-temp-directory).
    security = Security.temporary()
    config = RunConfig(tiling=TilingConfig(tile_px=args.tile, halo_px=args.halo))
    with SLURMCluster(config_name="slurm-gpu", security=security, protocol="tls://") as cluster:
        cluster.scale(jobs=args.jobs)
        with Client(cluster, security=security) as client:
            client.wait_for_workers(1, timeout=3600)
            logging.info("scheduler %s, dashboard %s", cluster.scheduler_address,
                         client.dashboard_link)
            rows = run_cohort(read_manifest(args.manifest, config), args.out, client=client,
                              slides_in_flight=args.slides_in_flight or 2 * args.jobs)
    failed = [r.slide_id for r in rows if r.state != "done"]
    if failed:
        logging.error("%d slide(s) failed: %s", len(failed), ", ".join(failed[:20]))
        return 3
    return 0


if __name__ == "__main__":  # worker processes must not re-run this (stack.md P11)
    sys.exit(main())
