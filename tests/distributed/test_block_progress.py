"""Blocks finished on worker processes reach the driver's progress one by one."""

from __future__ import annotations

import time

import pytest
from distributed import Client

from pathosam_wsi.distributed.progress import forward_block_progress
from pathosam_wsi.pipeline.progress import BlockDone, block_done


def _finish_blocks(slide_id: str, n: int) -> int:
    """On a worker: report ``n`` finished blocks as run_shard does."""
    for b in range(n):
        block_done(BlockDone(slide_id, b, nuclei=b, model_s=0.5))
    return n


@pytest.mark.distributed
def test_worker_blocks_are_forwarded_one_by_one(client: Client) -> None:
    seen: list[BlockDone] = []
    with forward_block_progress(client, seen.append):
        futures = [client.submit(_finish_blocks, f"s{i}", 3, pure=False) for i in range(2)]
        assert sum(f.result() for f in futures) == 6
        deadline = time.monotonic() + 30
        while len(seen) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert sorted((e.slide_id, e.block_id, e.nuclei) for e in seen) == [
        (s, b, b) for s in ("s0", "s1") for b in range(3)
    ]
    # after the block no worker forwards any more
    client.submit(_finish_blocks, "late", 1, pure=False).result()
    time.sleep(0.5)
    assert all(e.slide_id != "late" for e in seen)


def test_without_a_client_nothing_is_forwarded() -> None:
    seen: list[BlockDone] = []
    with forward_block_progress(None, seen.append):
        pass
    assert seen == []
