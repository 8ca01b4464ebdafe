"""The benchmark-only ``replay`` model: deterministic maps, accounting, device-time scaling."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from pathosam_wsi.config import ModelConfig
from pathosam_wsi.errors import ConfigError
from pathosam_wsi.model import replay
from pathosam_wsi.model.registry import available_models, build_model
from tests.synthetic import draw_nuclei, grid_centres


def _tile(side: int, seed: int) -> npt.NDArray[np.uint8]:
    rgb, _ = draw_nuclei(side, side, grid_centres(side, side, 24, 12, 4, seed), 6.0, seed)
    return rgb


@pytest.fixture(scope="module")
def bank_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("replay") / "bank.npy"
    replay.build_bank([_tile(96, 1), _tile(96, 2), _tile(96, 3)], 0.5, path)
    return path


@pytest.fixture
def model(bank_path: Path, monkeypatch: pytest.MonkeyPatch) -> replay.ReplayModel:
    monkeypatch.setenv(replay.BANK_ENV, str(bank_path))
    monkeypatch.delenv(replay.RATE_ENV, raising=False)
    monkeypatch.delenv(replay.LOG_ENV, raising=False)
    replay.reset_replay_stats()
    built = build_model(ModelConfig(name="replay"), 0.5)
    assert isinstance(built, replay.ReplayModel)
    return built


def test_registered() -> None:
    assert "replay" in available_models()


def test_bank_is_classical_maps(bank_path: Path) -> None:
    bank = np.load(bank_path)
    assert bank.shape == (3, 3, 96, 96)
    assert bank.dtype == np.float32
    assert bank[:, 0].max() > 0.5  # foreground where the nuclei are


def test_maps_deterministic_and_fitted_to_tile(model: replay.ReplayModel) -> None:
    tiles = [_tile(96, 5), _tile(64, 6), np.pad(_tile(96, 7), ((0, 40), (0, 10), (0, 0)))]
    first = model.predict(tiles)
    again = model.predict(tiles[::-1])[::-1]
    for t, a, b in zip(tiles, first, again, strict=True):
        assert a.ais.shape == (3, *t.shape[:2])
        assert a.ais.dtype == np.float32
        np.testing.assert_array_equal(a.ais, b.ais)
        k = model.index_of(t)
        h, w = min(96, t.shape[0]), min(96, t.shape[1])
        np.testing.assert_array_equal(a.ais[:, :h, :w], model.bank[k][:, :h, :w])
    # A tile larger than the bank wraps around.
    np.testing.assert_array_equal(first[2].ais[:, 96:, :96], first[2].ais[:, :40, :96])


def test_accounting_and_log(
    model: replay.ReplayModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv(replay.RATE_ENV, "100")
    monkeypatch.setenv(replay.LOG_ENV, str(log))
    model.predict([_tile(64, 1)] * 3)
    model.predict([_tile(64, 2)])
    stats = replay.replay_stats()
    assert stats.calls == 2
    assert stats.blocks == 4
    assert dict(stats.batch_sizes) == {3: 1, 1: 1}
    assert 0.039 <= stats.busy_s < 0.5  # sleep never returns early; load may stretch it
    assert 0.0 < stats.busy_frac <= 1.0
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["n"] for x in lines] == [3, 1]
    assert {"pid", "t_start", "t_end", "n"} == set(lines[0])
    assert lines[0]["t_end"] - lines[0]["t_start"] >= 0.03
    replay.reset_replay_stats()
    assert replay.replay_stats().calls == 0


def test_device_time_scales_with_batch_and_rate(
    model: replay.ReplayModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiles = [_tile(64, 1)] * 4
    monkeypatch.setenv(replay.RATE_ENV, "40")
    t0 = time.perf_counter()
    model.predict(tiles)
    slow = time.perf_counter() - t0
    monkeypatch.setenv(replay.RATE_ENV, "0")  # 0: no device time
    t0 = time.perf_counter()
    model.predict(tiles)
    fast = time.perf_counter() - t0
    assert slow >= 0.1
    assert fast < slow


def test_one_device_per_process(model: replay.ReplayModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(replay.RATE_ENV, "50")
    tiles = [_tile(64, 1)] * 2  # 0.04 s of device time per call
    barrier = threading.Barrier(3)

    def call() -> None:
        barrier.wait()
        model.predict(tiles)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = replay.replay_stats()
    # Simultaneous calls queue for the device: the span holds all three, busy never exceeds it.
    assert 0.119 <= stats.busy_s < 1.0
    assert stats.span_s >= 0.115
    assert stats.busy_s <= stats.span_s + 1e-6


def test_configuration_errors(bank_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(replay.BANK_ENV, raising=False)
    with pytest.raises(ConfigError, match=replay.BANK_ENV):
        build_model(ModelConfig(name="replay"), 0.5)
    monkeypatch.setenv(replay.BANK_ENV, str(bank_path.with_name("missing.npy")))
    with pytest.raises(ConfigError, match="cannot read the replay bank"):
        build_model(ModelConfig(name="replay"), 0.5)
    monkeypatch.setenv(replay.BANK_ENV, str(bank_path))
    monkeypatch.setenv(replay.RATE_ENV, "fast")
    with pytest.raises(ConfigError, match=replay.RATE_ENV):
        build_model(ModelConfig(name="replay"), 0.5).predict([_tile(64, 1)])
