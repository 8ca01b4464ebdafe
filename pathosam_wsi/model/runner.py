"""Batched encoder + decoder inference on CPU or one CUDA device.

Tiles are preprocessed on the host, stacked into batches and run under ``torch.inference_mode``
with optional autocast (bf16 / fp16). On CUDA the host batch is pinned and copied with
``non_blocking=True`` on a side stream, so the copy of batch k+1 overlaps the compute of batch k.
The batch size comes from free device memory; an out-of-memory error halves it and the working
size is remembered per device and model for the rest of the process.

The decoder BatchNorm layers use per-tile statistics by default, so a tile's output does not
depend on the other tiles of its batch (pathosam-reference.md §5).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from pathosam_wsi.errors import ConfigError
from pathosam_wsi.model.preprocess import SAM_INPUT_PX, postprocess_maps, preprocess_tiles
from pathosam_wsi.model.unetr_decoder import AISDecoder

__all__ = [
    "PRECISIONS",
    "InferenceRunner",
    "cpu_has_amx",
    "estimate_tile_bytes",
    "resolve_device",
]

logger = logging.getLogger(__name__)

PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
_BATCH_MEMO: dict[tuple[str, str], int] = {}
"""(device, model key) -> batch size that ran without running out of memory."""
_MAX_BATCH = {"cuda": 64, "cpu": 8}
_MEMORY_FRACTION = {"cuda": 0.8, "cpu": 0.5}


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda if available, else cpu; other strings as ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"invalid device {device!r}; expected auto, cpu or cuda[:N]") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use cpu or auto")
    return resolved


def estimate_tile_bytes(encoder: nn.Module, decoders: int, precision: str, target_px: int) -> int:
    """Rough peak activation memory of one tile (encoder global attention + decoder maps)."""
    element = 4 if precision == "fp32" else 2
    tokens = (target_px // 16) ** 2
    heads = int(encoder.blocks[0].attn.num_heads)  # type: ignore[index, union-attr]
    attention = 3 * heads * tokens * tokens * element  # logits, rel-pos bias, softmax
    decoder = 8 * 64 * target_px * target_px * 4  # ~8 live 64-channel full-size maps (fp32 norms)
    return attention + decoder * max(decoders, 1)


def cpu_has_amx() -> bool | None:
    """True/False from the ``amx_bf16`` flag of /proc/cpuinfo; None where that file is missing."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return any("amx_bf16" in line for line in info if line.startswith("flags"))
    except OSError:
        return None


def _free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


class InferenceRunner:
    """Run a SAM image encoder and one or more UNETR decoders over batches of tiles.

    Parameters
    ----------
    encoder : nn.Module
        SAM ``ImageEncoderViT`` (weights loaded).
    decoders : mapping of role -> AISDecoder
        E.g. ``{"ais": ..., "semantic": ...}``; each gets the same embeddings.
    device : str
        ``auto``, ``cpu`` or ``cuda[:N]``.
    precision : {"fp32", "bf16", "fp16"}
        Autocast dtype (fp32 = no autocast, as the reference).
    batch_size : int, optional
        Fixed batch size; None chooses it from free memory.
    compile : bool
        Wrap encoder and decoders in ``torch.compile``.
    intensity : {"none", "per_tile_minmax"}
        Input handling (see ``preprocess_tile``).
    batchnorm : {"per_tile", "running", "batch"}
        Decoder BatchNorm statistics; ``batch`` makes outputs depend on the batch (reference
        emulation only).
    model_key : str
        Name under which the working batch size is remembered.
    target_px : int
        Encoder input size (1024 for SAM; tiny test encoders use less).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoders: Mapping[str, AISDecoder],
        *,
        device: str = "auto",
        precision: str = "fp32",
        batch_size: int | None = None,
        compile: bool = False,
        intensity: str = "none",
        batchnorm: str = "per_tile",
        model_key: str = "",
        target_px: int = SAM_INPUT_PX,
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {batch_size!r}")
        self.device = resolve_device(device)
        # One forward pass at a time per model: on CPU torch already uses every core for one
        # batch (two concurrent passes would oversubscribe), on a GPU they would compete for
        # memory. Other worker threads meanwhile read blocks and run the watershed.
        self._lock = threading.Lock()
        self.precision, self.intensity, self.batchnorm = precision, intensity, batchnorm
        self.target_px, self.fixed_batch_size = target_px, batch_size
        self.model_key = model_key or type(encoder).__name__
        self.encoder = encoder.to(self.device).eval()
        # NHWC decoder activations: oneDNN convolves them without per-layer reorders (CPU only;
        # CUDA keeps the layout that the golden tests and the GPU benchmark measured).
        self.decoders = {
            role: d.to(self.device).set_channels_last(self.device.type == "cpu")
            for role, d in decoders.items()
        }
        if self.device.type == "cpu" and precision != "fp32" and cpu_has_amx() is False:
            # Measured (benchmarks/bench_model_cpu.py, benchmarks/README.md): without AMX the
            # AVX-512 bf16/fp16 kernels are no faster than fp32 (GEMM 52/74 vs 89 GFLOP/s).
            logger.info("%s on a CPU without AMX is usually slower than fp32 here", precision)
        self._encode: Any = torch.compile(self.encoder) if compile else self.encoder
        self._decode: dict[str, Any] = {
            role: torch.compile(d) if compile else d for role, d in self.decoders.items()
        }

    def batch_size(self) -> int:
        """The batch size in use: fixed, remembered, or estimated from free memory."""
        if self.fixed_batch_size is not None:
            return self.fixed_batch_size
        key = (str(self.device), self.model_key)
        if key not in _BATCH_MEMO:
            kind = self.device.type if self.device.type in _MAX_BATCH else "cpu"
            per_tile = estimate_tile_bytes(
                self.encoder, len(self.decoders), self.precision, self.target_px
            )
            fit = int(_free_bytes(self.device) * _MEMORY_FRACTION[kind] // per_tile)
            _BATCH_MEMO[key] = max(1, min(fit, _MAX_BATCH[kind]))
            logger.info("batch size %d for %s on %s", _BATCH_MEMO[key], self.model_key, self.device)
        return _BATCH_MEMO[key]

    def _autocast(self) -> AbstractContextManager[Any]:
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def _forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encoder once, every decoder on its embeddings; maps as float32 (B, C, T, T)."""
        with self._autocast():
            features = self._encode(pixels)  # (B, 256, 64, 64)
            return {
                role: decode(features, self.batchnorm).float()
                for role, decode in self._decode.items()
            }

    def _host_batches(
        self, tiles: Sequence[npt.NDArray[np.uint8]], size: int
    ) -> Iterator[tuple[int, torch.Tensor, list[tuple[int, int]]]]:
        """(start, pixels on the device, input sizes) per batch; CUDA copies are prefetched."""
        copy_stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        for start in range(0, len(tiles), size):
            prepared = preprocess_tiles(tiles[start : start + size], self.intensity, self.target_px)
            pixels = prepared.pixels
            if copy_stream is not None:
                with torch.cuda.stream(copy_stream):
                    pixels = pixels.pin_memory().to(self.device, non_blocking=True)
                torch.cuda.current_stream(self.device).wait_stream(copy_stream)
                pixels.record_stream(torch.cuda.current_stream(self.device))
            yield start, pixels, prepared.input_sizes

    def predict(
        self, tiles: Sequence[npt.NDArray[np.uint8]]
    ) -> list[dict[str, npt.NDArray[np.float32]]]:
        """Maps for every tile, resized back to the tile's size.

        Parameters
        ----------
        tiles : sequence of (H_i, W_i, 3) uint8, YXC

        Returns
        -------
        list of dict role -> (C, H_i, W_i) float32, CYX, tile pixels
        """
        if len(tiles) == 0:
            return []
        with self._lock:
            return self._predict_with_retry(tiles)

    def _predict_with_retry(
        self, tiles: Sequence[npt.NDArray[np.uint8]]
    ) -> list[dict[str, npt.NDArray[np.float32]]]:
        """Halve the batch size on out-of-memory until it fits (remembered per device)."""
        while True:
            size = self.batch_size()
            try:
                return self._predict_batches(tiles, size)
            except torch.OutOfMemoryError:
                if size == 1:
                    raise
                self._shrink(size)

    def _shrink(self, size: int) -> None:
        new = max(1, size // 2)
        logger.warning(
            "out of memory at batch size %d on %s; retrying with %d", size, self.device, new
        )
        if self.fixed_batch_size is not None:
            self.fixed_batch_size = new
        _BATCH_MEMO[(str(self.device), self.model_key)] = new
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _predict_batches(
        self, tiles: Sequence[npt.NDArray[np.uint8]], size: int
    ) -> list[dict[str, npt.NDArray[np.float32]]]:
        results: list[dict[str, npt.NDArray[np.float32]]] = []
        with torch.inference_mode():
            batches = self._host_batches(tiles, size)
            pending = next(batches, None)
            while pending is not None:
                start, pixels, input_sizes = pending
                maps = self._forward(pixels)  # asynchronous on CUDA
                # Prepare and copy the next batch while the device still computes this one.
                pending = next(batches, None)
                for i, input_size in enumerate(input_sizes):
                    tile = tiles[start + i]
                    original = (int(tile.shape[0]), int(tile.shape[1]))
                    results.append(
                        {
                            role: postprocess_maps(m[i], input_size, original).cpu().numpy()
                            for role, m in maps.items()
                        }
                    )
        return results
