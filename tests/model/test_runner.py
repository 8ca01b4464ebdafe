"""Batched inference: batch independence, precisions, batch-size memory and OOM halving."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathosam_wsi.errors import ConfigError
from pathosam_wsi.model import runner as runner_mod
from pathosam_wsi.model.runner import InferenceRunner, resolve_device
from pathosam_wsi.model.sam_encoder import build_image_encoder, enable_sdpa_attention
from pathosam_wsi.model.synthetic_weights import deterministic_state_dict
from pathosam_wsi.model.unetr_decoder import AISDecoder


def _runner(enc_kwargs: dict, dec_kwargs: dict, **kwargs) -> InferenceRunner:
    encoder = build_image_encoder("vit_b", **enc_kwargs)
    encoder.load_state_dict(deterministic_state_dict(encoder.state_dict(), 3, std=0.1))
    enable_sdpa_attention(encoder)
    decoder = AISDecoder(3, True, **dec_kwargs)
    decoder.load_state_dict(deterministic_state_dict(decoder.state_dict(), 4, std=0.2))
    semantic = AISDecoder(6, False, **dec_kwargs)
    semantic.load_state_dict(deterministic_state_dict(semantic.state_dict(), 5, std=0.2))
    return InferenceRunner(
        encoder, {"ais": decoder, "semantic": semantic}, target_px=256, device="cpu", **kwargs
    )


def test_output_independent_of_batch_composition(
    tiny_encoder_kwargs, tiny_decoder_kwargs, he_tile
) -> None:
    run = _runner(tiny_encoder_kwargs, tiny_decoder_kwargs, batch_size=3)
    tiles = [he_tile(512, 512, 1), he_tile(300, 512, 2), np.full((512, 400, 3), 240, np.uint8)]
    together = run.predict(tiles)
    alone = [run.predict([t])[0] for t in tiles]
    for t, a, b in zip(tiles, together, alone, strict=True):
        assert a["ais"].shape == (3, *t.shape[:2])
        assert a["ais"].dtype == np.float32
        assert a["semantic"].shape == (6, *t.shape[:2])
        # float rounding only: oneDNN picks other NHWC kernels per batch size (measured 1.2e-5);
        # batch-dependent statistics differ by more (test_batch_mode_emulation_depends_on_batch)
        assert np.abs(a["ais"] - b["ais"]).max() < 1e-4
        assert np.abs(a["semantic"] - b["semantic"]).max() < 1e-4
    # the maps are not constant, so the comparison above means something
    assert together[0]["ais"].std() > 1e-3


def test_batch_mode_emulation_depends_on_batch(
    tiny_encoder_kwargs, tiny_decoder_kwargs, he_tile
) -> None:
    run = _runner(tiny_encoder_kwargs, tiny_decoder_kwargs, batch_size=2, batchnorm="batch")
    tiles = [he_tile(256, 256, 1), np.full((256, 256, 3), 240, np.uint8)]
    together = run.predict(tiles)
    alone = run.predict(tiles[:1])
    assert np.abs(together[0]["ais"] - alone[0]["ais"]).max() > 1e-4


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_close_to_fp32(
    tiny_encoder_kwargs, tiny_decoder_kwargs, he_tile, precision
) -> None:
    tiles = [he_tile(256, 256, 3)]
    ref = _runner(tiny_encoder_kwargs, tiny_decoder_kwargs, batch_size=1).predict(tiles)[0]["ais"]
    low = _runner(tiny_encoder_kwargs, tiny_decoder_kwargs, batch_size=1, precision=precision)
    out = low.predict(tiles)[0]["ais"]
    assert out.dtype == np.float32
    deviation = np.abs(out - ref).max()
    assert 0 < deviation < 0.1


def test_auto_batch_size_is_remembered_and_halved_on_oom(
    tiny_encoder_kwargs, tiny_decoder_kwargs, he_tile, monkeypatch
) -> None:
    monkeypatch.setattr(runner_mod, "_BATCH_MEMO", {})
    run = _runner(tiny_encoder_kwargs, tiny_decoder_kwargs, model_key="tiny-oom")
    assert 1 <= run.batch_size() <= 8
    monkeypatch.setitem(runner_mod._BATCH_MEMO, ("cpu", "tiny-oom"), 8)
    real_forward = run._forward
    seen: list[int] = []

    def limited(pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        seen.append(pixels.shape[0])
        if pixels.shape[0] > 2:
            raise torch.OutOfMemoryError("simulated")
        return real_forward(pixels)

    monkeypatch.setattr(run, "_forward", limited)
    out = run.predict([he_tile(128, 128, i) for i in range(5)])
    assert len(out) == 5
    assert seen[:2] == [5, 4]
    assert set(seen[2:]) <= {2, 1}
    assert runner_mod._BATCH_MEMO[("cpu", "tiny-oom")] == 2
    assert run.batch_size() == 2


def test_oom_at_batch_one_propagates(
    tiny_encoder_kwargs, tiny_decoder_kwargs, he_tile, monkeypatch
) -> None:
    run = _runner(tiny_encoder_kwargs, tiny_decoder_kwargs, batch_size=1)

    def broken(pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        raise torch.OutOfMemoryError("simulated")

    monkeypatch.setattr(run, "_forward", broken)
    with pytest.raises(torch.OutOfMemoryError):
        run.predict([he_tile(64, 64, 0)])


def test_options_validated(tiny_encoder_kwargs, tiny_decoder_kwargs) -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="precision"):
        _runner(tiny_encoder_kwargs, tiny_decoder_kwargs, precision="int8")
    with pytest.raises(ConfigError, match="batch size"):
        _runner(tiny_encoder_kwargs, tiny_decoder_kwargs, batch_size=0)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            resolve_device("cuda")
    assert _runner(tiny_encoder_kwargs, tiny_decoder_kwargs).predict([]) == []


def test_tf32_equals_fp32_on_cpu(tiny_encoder_kwargs, tiny_decoder_kwargs, he_tile) -> None:
    """TF32 only changes CUDA math flags; on CPU it is exactly fp32."""
    tiles = [he_tile(200, 256, 7)]
    ref = _runner(tiny_encoder_kwargs, tiny_decoder_kwargs, batch_size=1).predict(tiles)[0]
    out = _runner(tiny_encoder_kwargs, tiny_decoder_kwargs, batch_size=1, precision="tf32")
    assert np.array_equal(out.predict(tiles)[0]["ais"], ref["ais"])
    assert torch.backends.cuda.matmul.allow_tf32 is False  # never touched on CPU


def test_tiles_of_mixed_sizes_and_slides_across_batches(
    tiny_encoder_kwargs, tiny_decoder_kwargs, he_tile
) -> None:
    """A batch mixing sizes (as blocks of several slides do) spread over several device batches."""
    rng = np.random.default_rng(1)
    tiles = [
        he_tile(128, 128, 1),
        rng.integers(0, 256, (160, 96, 3), dtype=np.uint8),
        he_tile(128, 128, 2)[::-1],  # a non-contiguous view
        he_tile(64, 200, 3),
        np.full((128, 128, 3), 250, np.uint8),
    ]
    tiles[1].setflags(write=False)  # read-only blocks (e.g. from a memory map) work too
    run = _runner(tiny_encoder_kwargs, tiny_decoder_kwargs, batch_size=2)
    spread = run.predict(tiles)
    assert run.stats.batches == 3
    assert run.stats.tiles == 5
    assert run.stats.last_batch_size == 2
    assert run.stats.busy_s > 0
    alone = [run.predict([t])[0] for t in tiles]
    together = _runner(tiny_encoder_kwargs, tiny_decoder_kwargs, batch_size=5).predict(tiles)
    for t, a, b, c in zip(tiles, spread, alone, together, strict=True):
        assert a["ais"].shape == (3, *t.shape[:2])
        assert a["ais"].dtype == np.float32
        assert a["ais"].flags.c_contiguous
        for role in ("ais", "semantic"):
            # float rounding of oneDNN kernels chosen per batch size only (1.2e-5 measured)
            assert np.abs(a[role] - b[role]).max() < 1e-4
            assert np.abs(a[role] - c[role]).max() < 1e-4


def test_upload_is_exact(tiny_encoder_kwargs, tiny_decoder_kwargs, he_tile) -> None:
    run = _runner(tiny_encoder_kwargs, tiny_decoder_kwargs, batch_size=2)
    tiles = [he_tile(31, 17, 1), he_tile(64, 64, 2)[:, ::-1]]
    for tile, tensor in zip(tiles, run._upload(tiles), strict=True):
        assert tensor.dtype == torch.uint8
        assert np.array_equal(tensor.numpy(), tile)
    with pytest.raises(ConfigError, match="uint8"):
        run._upload([np.zeros((4, 4, 3), np.float32)])


def test_cli_accepts_tf32(tmp_path) -> None:
    from click.testing import CliRunner

    from pathosam_wsi.cli import main

    args = ["segment", str(tmp_path / "missing.tif"), "-o", str(tmp_path / "out")]
    bad = CliRunner().invoke(main, [*args, "--precision", "int8"])
    assert bad.exit_code == 2
    assert "--precision" in bad.output
    good = CliRunner().invoke(main, [*args, "--precision", "tf32"])
    assert "--precision" not in good.output
