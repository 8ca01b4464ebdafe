"""With GPU workers, inference tasks carry the GPU resource and post-processing runs separately.

No GPU is needed: a CPU worker that *advertises* a ``GPU`` resource exercises the same graph.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pathosam_wsi import RunConfig, segment_slide
from pathosam_wsi.config import TilingConfig
from tests.helpers import read_outputs

pytestmark = [
    pytest.mark.distributed,
    # the per-thread slide cache of worker threads is closed by garbage collection
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def test_gpu_resource_graph_matches_local(synthetic_slide, tmp_path) -> None:
    from distributed import Client, LocalCluster, get_task_stream

    config = RunConfig(tiling=TilingConfig(tile_px=256, halo_px=48), blocks_per_task=2, threads=2)
    local = segment_slide(synthetic_slide.path, tmp_path / "local", config)
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=3,
            processes=False,
            resources={"GPU": 1},
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
        get_task_stream(client) as stream,
    ):
        result = segment_slide(synthetic_slide.path, tmp_path / "gpu", config, client=client)
    keys = [str(t["key"]) for t in stream.data]
    assert any(k.startswith("blocks-") and k.endswith("-post") for k in keys)
    a_labels, a_table = read_outputs(local.output_dir)
    b_labels, b_table = read_outputs(result.output_dir)
    np.testing.assert_array_equal(a_labels, b_labels)
    pd.testing.assert_frame_equal(a_table, b_table)
