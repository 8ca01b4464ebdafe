"""Batched encoder + decoder inference on CPU or one CUDA device.

Tiles travel to the device as uint8: each batch is packed into one (pinned, on CUDA) host buffer
and copied with ``non_blocking=True`` on a side stream, so the copy of batch k+1 overlaps the
compute of batch k. Resizing (bit-identical to PIL's bilinear), SAM normalisation and padding run
on the device (``preprocess_on_device``), the same torch code on CPU and CUDA. The maps are
cropped and resized back on the device and come back in one device-to-host copy per batch into
pinned memory, waited for with an event. The forward runs under ``torch.inference_mode`` with
optional autocast (bf16 / fp16) or TF32 matmuls/convolutions (``tf32``, CUDA only, set for the
forward and restored afterwards). The batch size comes from free device memory; an out-of-memory
error halves it and the working size is remembered per device and model for the rest of the
process.

The decoder BatchNorm layers use per-tile statistics by default, so a tile's output does not
depend on the other tiles of its batch (docs/pathosam-reference.md §5).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from pathosam_wsi.errors import ConfigError
from pathosam_wsi.model.preprocess import (
    INTENSITY_MODES,
    SAM_INPUT_PX,
    check_tile,
    postprocess_maps,
    preprocess_on_device,
)
from pathosam_wsi.model.unetr_decoder import AISDecoder

__all__ = [
    "PRECISIONS",
    "InferenceRunner",
    "RunnerStats",
    "cpu_has_amx",
    "estimate_tile_bytes",
    "resolve_device",
    "tf32_math",
]

logger = logging.getLogger(__name__)

PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "tf32": None,  # fp32 storage; TF32 tensor-core matmuls/convolutions on CUDA (see tf32_math)
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
    element = 4 if precision in ("fp32", "tf32") else 2
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


@dataclass
class RunnerStats:
    """Counters of one runner (cumulative; benchmarks read and reset them).

    Attributes
    ----------
    calls, tiles, batches : int
        ``predict`` calls, tiles and device batches processed.
    busy_s : float
        Seconds inside the batched device work (upload, preprocessing, forward, maps back; each
        batch ends with the device-to-host copy waited for), i.e. time the device was kept busy.
    last_batch_size : int
        Batch size of the latest batch loop.
    """

    calls: int = 0
    tiles: int = 0
    batches: int = 0
    busy_s: float = 0.0
    last_batch_size: int = 0


@contextmanager
def tf32_math(enabled: bool) -> Iterator[None]:
    """TF32 matmuls and cuDNN convolutions for the block; the previous flags come back after."""
    if not enabled:
        yield
        return
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


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
    precision : {"fp32", "tf32", "bf16", "fp16"}
        fp32 = no autocast, as the reference; tf32 = fp32 storage with TF32 matmuls and
        convolutions on CUDA (identical to fp32 on CPU); bf16 / fp16 = autocast dtype.
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
    channels_last : bool
        NHWC decoder activations (oneDNN on CPU and cuDNN tensor cores on CUDA convolve them
        without layout reorders); outputs equal NCHW up to float rounding.
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
        channels_last: bool = True,
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if intensity not in INTENSITY_MODES:
            raise ConfigError(f"intensity must be one of {INTENSITY_MODES}, got {intensity!r}")
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
        self.stats = RunnerStats()
        self.encoder = encoder.to(self.device).eval()
        self.decoders = {
            role: d.to(self.device).set_channels_last(channels_last) for role, d in decoders.items()
        }
        if self.device.type == "cpu" and precision in ("bf16", "fp16") and cpu_has_amx() is False:
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

    def _numerics(self) -> AbstractContextManager[Any]:
        """Autocast (bf16 / fp16) or scoped TF32 flags (tf32 on CUDA); nothing for fp32."""
        dtype = PRECISIONS[self.precision]
        if dtype is not None:
            return torch.autocast(self.device.type, dtype=dtype)
        return tf32_math(self.precision == "tf32" and self.device.type == "cuda")

    def _forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encoder once, every decoder on its embeddings; maps as float32 (B, C, T, T)."""
        with self._numerics():
            features = self._encode(pixels)  # (B, 256, 64, 64)
            return {
                role: decode(features, self.batchnorm).float()
                for role, decode in self._decode.items()
            }

    def _upload(self, tiles: Sequence[npt.NDArray[np.uint8]]) -> list[torch.Tensor]:
        """Tiles as uint8 device tensors: one packed (pinned on CUDA) buffer, one copy."""
        for tile in tiles:
            check_tile(tile)
        sizes = [int(t.size) for t in tiles]
        cuda = self.device.type == "cuda"
        host = torch.empty(sum(sizes), dtype=torch.uint8, pin_memory=cuda)
        packed = host.numpy()
        offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        for tile, start, stop in zip(tiles, offsets[:-1], offsets[1:], strict=True):
            packed[start:stop].reshape(tile.shape)[...] = tile
        flat = host.to(self.device, non_blocking=True) if cuda else host
        return [
            flat[start:stop].view(tile.shape)
            for tile, start, stop in zip(tiles, offsets[:-1], offsets[1:], strict=True)
        ]

    def _device_batches(
        self, tiles: Sequence[npt.NDArray[np.uint8]], size: int
    ) -> Iterator[tuple[int, list[torch.Tensor]]]:
        """(start, uint8 tiles on the device) per batch; CUDA uploads run on a side stream."""
        copy_stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        for start in range(0, len(tiles), size):
            chunk = tiles[start : start + size]
            if copy_stream is None:
                yield start, self._upload(chunk)
                continue
            with torch.cuda.stream(copy_stream):
                on_device = self._upload(chunk)
            compute = torch.cuda.current_stream(self.device)
            compute.wait_stream(copy_stream)
            for tensor in on_device[:1]:  # views of one buffer: recording one covers all
                tensor.record_stream(compute)
            yield start, on_device

    def predict(
        self, tiles: Sequence[npt.NDArray[np.uint8]]
    ) -> list[dict[str, npt.NDArray[np.float32]]]:
        """Maps for every tile, resized back to the tile's size.

        Parameters
        ----------
        tiles : sequence of (H_i, W_i, 3) uint8, YXC
            Tiles of any sizes (and slides); each result depends only on its own tile.

        Returns
        -------
        list of dict role -> (C, H_i, W_i) float32, CYX, tile pixels
            Arrays may be views of one host buffer per batch.
        """
        if len(tiles) == 0:
            return []
        with self._lock:
            self.stats.calls += 1
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
        self.stats.last_batch_size = size
        started = time.perf_counter()
        with torch.inference_mode():
            batches = self._device_batches(tiles, size)
            pending = next(batches, None)
            while pending is not None:
                _start, on_device = pending
                prepared = preprocess_on_device(on_device, self.intensity, self.target_px)
                maps = self._forward(prepared.pixels)  # asynchronous on CUDA
                back = self._maps_back(maps, prepared.input_sizes, prepared.original_sizes)
                # Upload the next batch while the device still computes this one.
                pending = next(batches, None)
                results.extend(self._to_host(back))
                self.stats.batches += 1
        self.stats.tiles += len(tiles)
        self.stats.busy_s += time.perf_counter() - started
        return results

    @staticmethod
    def _maps_back(
        maps: Mapping[str, torch.Tensor],
        input_sizes: Sequence[tuple[int, int]],
        original_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, torch.Tensor]]:
        """Per tile and role (C, H, W) float32 device tensors; tiles of one geometry together."""
        out: list[dict[str, torch.Tensor]] = [{} for _ in input_sizes]
        groups: dict[tuple[tuple[int, int], tuple[int, int]], list[int]] = {}
        for i, key in enumerate(zip(input_sizes, original_sizes, strict=True)):
            groups.setdefault(key, []).append(i)
        for (input_size, original), members in groups.items():
            for role, m in maps.items():
                # stack, not an index tensor: a host-to-device index copy would wait for the
                # forward pass and stall the upload of the next batch
                group = torch.stack([m[i] for i in members])  # (G, C, T, T)
                resized = postprocess_maps(group, input_size, original)
                for j, i in enumerate(members):
                    out[i][role] = resized[j]  # (C, H, W)
        return out

    def _to_host(
        self, maps: Sequence[Mapping[str, torch.Tensor]]
    ) -> list[dict[str, npt.NDArray[np.float32]]]:
        """One device-to-host copy (pinned, non-blocking, event-synchronised) for a batch."""
        parts = [(i, role, m) for i, tile_maps in enumerate(maps) for role, m in tile_maps.items()]
        flat = torch.cat([m.reshape(-1) for _, _, m in parts])  # float32, on the device
        if self.device.type == "cuda":
            host = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
            host.copy_(flat, non_blocking=True)
            done = torch.cuda.Event()
            done.record(torch.cuda.current_stream(self.device))
            done.synchronize()
        else:
            host = flat
        array = host.numpy()
        results: list[dict[str, npt.NDArray[np.float32]]] = [{} for _ in maps]
        offset = 0
        for i, role, m in parts:
            n = m.numel()
            results[i][role] = array[offset : offset + n].reshape(m.shape)
            offset += n
        return results
