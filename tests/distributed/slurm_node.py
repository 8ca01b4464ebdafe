"""A single-node SLURM cluster for the tests: reuse a running one, else start it as root.

``.ci/slurm-setup.sh`` installs Debian's slurm-wlm and munge when they are missing and starts
munged, slurmctld and slurmd with one node of this machine's CPUs (docs/stack.md P13). Where that is
not possible (not root, no packages, no network) the tests that need SLURM skip, naming why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[2] / ".ci" / "slurm-setup.sh"


def _node_ready() -> str | None:
    """The state of a node that accepts jobs, or None."""
    if shutil.which("sinfo") is None:
        return None
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20, check=True
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    ready = [s for s in out if s.rstrip("*~#") in {"idle", "mix", "alloc"}]
    return ready[0] if ready else None


def ensure_slurm() -> str:
    """Start SLURM where needed; returns the node state, or skips the test with the reason."""
    state = _node_ready()
    if state is not None:
        return state
    if os.geteuid() != 0:
        pytest.skip(f"no SLURM cluster reachable and not root (uid {os.geteuid()}) to start one")
    try:
        res = subprocess.run(
            ["bash", str(SETUP)], capture_output=True, text=True, timeout=600, check=False
        )
    except (OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"could not run {SETUP.name}: {err}")
    state = _node_ready()
    if res.returncode != 0 or state is None:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        pytest.skip(f"single-node SLURM did not start ({SETUP.name} rc={res.returncode}): {tail}")
    return state


@pytest.fixture(scope="session")
def slurm_node() -> str:
    """A SLURM node that accepts jobs (state string), started when it can be."""
    return ensure_slurm()
