"""The fine-tuning loop: seeded crops, the reference loss, a held-out split, checkpoints, resume.

Held-out split: the last ``val_frac`` of every image's rows is never cropped for training; after
each epoch the model predicts the held-out strips (and, with ``eval_train``, the training parts)
through the same path as ``segment`` (the model's ``Trainable.predictor``, e.g.
``unet_maps.predict_maps``, -> ``ais_watershed`` with PathoSAM's defaults) and logs mSA.

What is trained is a ``finetune.trainable.Trainable``: the ``learned`` model's U-Net by default,
or a PathoSAM UNETR decoder over a frozen SAM encoder (``finetune/sam_decoder.py``).

Repeatability: epoch ``e`` draws its crops from ``numpy.random.default_rng([seed, e])`` and its
torch randomness from ``torch.manual_seed(seed * 100003 + e)``, with deterministic algorithms and
no worker processes, so one seed gives the same checkpoint bytes on a CPU, and a run resumed from
``last.pt`` equals an uninterrupted one.

Files in ``out_dir``: ``last.pt`` (after every epoch: weights + optimiser + history, for resume) and
``decoder.pt`` (weights of the epoch with the best held-out mSA). Both load with
``segment --model <the trained model> --decoder FILE``; with ``cfg.teacher`` both also hold
``"teacher": {"name", "checkpoint_sha256"}`` (which prompt model re-drew the labels).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pathosam_wsi.config import WatershedConfig
from pathosam_wsi.errors import CheckpointError, ConfigError
from pathosam_wsi.evaluate import evaluate_labels
from pathosam_wsi.files import atomic_write
from pathosam_wsi.finetune.augment import Augment, random_crop
from pathosam_wsi.finetune.data import Sample
from pathosam_wsi.finetune.loss import distance_loss
from pathosam_wsi.finetune.targets import ais_targets
from pathosam_wsi.finetune.trainable import Predictor, Trainable, UNetTrainable
from pathosam_wsi.model.checkpoints import load_state_dict_file
from pathosam_wsi.model.unet_maps import MapsUNet, load_unet_checkpoint, predict_maps
from pathosam_wsi.postprocess.watershed import ais_watershed

__all__ = ["EpochLog", "TrainConfig", "evaluate_msa", "evaluate_predictor", "train"]

logger = logging.getLogger(__name__)

LAST = "last.pt"
BEST = "decoder.pt"


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything that determines a training run (with the data and the seed)."""

    widths: tuple[int, ...] = (16, 32, 64, 128)
    epochs: int = 20
    steps_per_epoch: int = 50
    batch_size: int = 4
    crop_px: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    val_frac: float = 0.2
    eval_train: bool = False
    seed: int = 0
    device: str = "cpu"
    train_mpp: float = 0.25
    """µm/px of the training images; stored in the checkpoint, used to resize at inference."""
    augment: Augment = field(default_factory=Augment)
    init: str | None = None
    """A U-Net checkpoint to start from (fine-tuning); None starts from random weights."""
    teacher: str | None = None
    """Prompt model that re-drew the labels (``finetune.teacher``); stored in both checkpoints."""
    teacher_sha256: str | None = None
    """sha256 of the teacher's local weight file; None for registry weights (hash-checked)."""

    def __post_init__(self) -> None:
        for name in ("epochs", "steps_per_epoch", "batch_size"):
            if getattr(self, name) < 1:
                value = getattr(self, name)
                raise ConfigError(f"{name} must be >= 1, got {value!r}; pass 1 or more")
        if self.crop_px < 16 or self.crop_px % 2 ** (len(self.widths) - 1):
            raise ConfigError(
                f"crop_px must be >= 16 and a multiple of {2 ** (len(self.widths) - 1)}, got "
                f"{self.crop_px!r}; pass e.g. --crop 256"
            )
        if not 0.0 <= self.val_frac < 0.9:
            raise ConfigError(f"val_frac must be in [0, 0.9), got {self.val_frac!r}; pass e.g. 0.2")


@dataclass(frozen=True)
class EpochLog:
    """What one epoch logged (NaN where not measured)."""

    epoch: int
    loss: float
    val_msa: float
    train_msa: float


def split_rows(sample: Sample, val_frac: float) -> tuple[Sample, Sample | None]:
    """(training part, held-out part) of a sample: the held-out part is its last rows."""
    h = sample.image.shape[0]
    n_val = math.floor(h * val_frac)
    if n_val == 0:
        return sample, None
    cut = h - n_val
    train = Sample(sample.name, sample.image[:cut], sample.labels[:cut])
    return train, Sample(sample.name + ":val", sample.image[cut:], sample.labels[cut:])


def evaluate_msa(net: MapsUNet, samples: Sequence[Sample], device: str = "cpu") -> float:
    """Mean mSA over ``samples`` of the U-Net's maps after PathoSAM's default watershed."""
    net.eval()
    return evaluate_predictor(lambda image: predict_maps(net, image, device=device), samples)


def evaluate_predictor(predict: Predictor, samples: Sequence[Sample]) -> float:
    """Mean mSA over ``samples`` of ``predict``'s maps after PathoSAM's default watershed."""
    if not samples:
        return float("nan")
    scores = []
    for s in samples:
        labels = ais_watershed(predict(s.image), WatershedConfig())
        scores.append(evaluate_labels(labels, s.labels).msa)
    return float(np.mean(scores))


def _batch(
    parts: Sequence[Sample], cfg: TrainConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, crop, crop, 3) uint8 crops and (B, 3, crop, crop) targets; images picked ∝ area."""
    area = np.array([p.labels.size for p in parts], np.float64)
    images, targets = [], []
    for _ in range(cfg.batch_size):
        s = parts[int(rng.choice(len(parts), p=area / area.sum()))]
        img, lab = random_crop(s.image, s.labels, cfg.crop_px, rng, cfg.augment)
        images.append(img)
        targets.append(ais_targets(lab))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(targets))


@contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic algorithms; on a GPU only where they exist (warn-only, warnings silenced).

    CUDA has no deterministic backward of bilinear ``interpolate`` (the SAM decoder's upsampling
    and resizing back) and wants ``CUBLAS_WORKSPACE_CONFIG`` for matmuls; strict mode would refuse
    to train there, and GPU runs are not bit-repeatable anyway (README "Fine-tuning").
    """
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    on_cpu = device.type == "cpu"
    torch.use_deterministic_algorithms(True, warn_only=not on_cpu)
    try:
        with warnings.catch_warnings():
            if not on_cpu:
                warnings.filterwarnings("ignore", ".*does not have a deterministic implementation")
                warnings.filterwarnings("ignore", "Deterministic behavior was enabled")
            yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn_only)


def _initial_net(cfg: TrainConfig) -> MapsUNet:
    torch.manual_seed(cfg.seed)
    if cfg.init is None:
        return MapsUNet(cfg.widths)
    net, _ = load_unet_checkpoint(cfg.init)
    return net


def _resume(path: Path, model: Trainable, opt: torch.optim.Optimizer) -> tuple[int, list[EpochLog]]:
    state = load_state_dict_file(path)
    model.load_resume(state, path)
    if "optimizer_state" not in state:
        raise CheckpointError(f"{str(path)!r} has no optimiser state; pass another --out")
    opt.load_state_dict(state["optimizer_state"])
    history = [EpochLog(*row) for row in state["history"]]
    logger.info("resuming after epoch %d from %s", state["epoch"], path)
    return int(state["epoch"]), history


def _replay(sched: torch.optim.lr_scheduler.LRScheduler, steps: int) -> None:
    """Advance the schedule by ``steps`` on resume: the learning rate is a function of the step."""
    with warnings.catch_warnings():
        # Stepping a scheduler without optimiser steps is the point here, not a mistake.
        warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
        for _ in range(steps):
            sched.step()


def _save(path: Path, ckpt: dict[str, Any]) -> None:
    """Write atomically, so a killed run never leaves half a checkpoint."""
    atomic_write(path, lambda fh: torch.save(ckpt, fh))


StepCallback = Callable[[int, int, float], None]
"""Called after every step with (epoch, step, loss)."""


def train(
    samples: Sequence[Sample],
    out_dir: Path,
    cfg: TrainConfig,
    *,
    resume: bool = False,
    model: Trainable | None = None,
    on_step: StepCallback | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> list[EpochLog]:
    """Train a maps model (default: the map U-Net of ``cfg``) on ``samples``; see the module
    docstring.

    Parameters
    ----------
    samples : sequence of Sample
        Images with instance labels at ``cfg.train_mpp``.
    out_dir : Path
        Receives ``last.pt`` and ``decoder.pt``; created if missing.
    cfg : TrainConfig
    resume : bool
        Continue from ``out_dir/last.pt`` when it exists.
    model : Trainable, optional
        What to train, on ``cfg.device``; None builds the U-Net of ``cfg`` (``widths``, ``init``).
    on_step, on_epoch : callables, optional
        Progress hooks.

    Returns
    -------
    list of EpochLog
        One per epoch, including resumed ones.
    """
    if not samples:
        raise ConfigError("no training samples; pass at least one image with labels")
    splits = [split_rows(s, cfg.val_frac) for s in samples]
    parts = [t for t, _ in splits]
    held_out = [v for _, v in splits if v is not None]
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device)
    with _deterministic(device):
        if model is None:
            model = UNetTrainable(_initial_net(cfg).to(device), device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        start, history = 0, list[EpochLog]()
        if resume and (out_dir / LAST).is_file():
            start, history = _resume(out_dir / LAST, model, opt)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=cfg.epochs * cfg.steps_per_epoch, pct_start=0.1
        )
        _replay(sched, start * cfg.steps_per_epoch)
        for epoch in range(start + 1, cfg.epochs + 1):
            loss = _epoch(model, opt, sched, parts, cfg, epoch, device, on_step)
            predict = model.predictor()
            log = EpochLog(
                epoch,
                loss,
                evaluate_predictor(predict, held_out),
                evaluate_predictor(predict, parts) if cfg.eval_train else float("nan"),
            )
            history.append(log)
            _checkpoint(out_dir, model, opt, cfg, history)
            logger.info(
                "epoch %d/%d: loss %.4f, held-out mSA %.3f, train mSA %.3f",
                epoch, cfg.epochs, log.loss, log.val_msa, log.train_msa,
            )  # fmt: skip
            if on_epoch is not None:
                on_epoch(log)
    return history


def _epoch(
    model: Trainable,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    parts: Sequence[Sample],
    cfg: TrainConfig,
    epoch: int,
    device: torch.device,
    on_step: StepCallback | None,
) -> float:
    """One epoch of ``steps_per_epoch`` steps; returns the mean loss."""
    rng = np.random.default_rng([cfg.seed, epoch])
    torch.manual_seed(cfg.seed * 100003 + epoch)
    model.train_mode()
    losses = []
    for step in range(1, cfg.steps_per_epoch + 1):
        x, y = _batch(parts, cfg, rng)
        loss = distance_loss(model.forward(x), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(epoch, step, losses[-1])
    return float(np.mean(losses))


def _checkpoint(
    out_dir: Path,
    model: Trainable,
    opt: torch.optim.Optimizer,
    cfg: TrainConfig,
    history: list[EpochLog],
) -> None:
    """``last.pt`` always; ``decoder.pt`` when this epoch has the best held-out mSA so far."""
    ckpt = model.checkpoint(cfg.train_mpp)
    if cfg.teacher is not None:
        ckpt["teacher"] = {"name": cfg.teacher, "checkpoint_sha256": cfg.teacher_sha256}
    state = {
        **ckpt,
        "optimizer_state": opt.state_dict(),
        "epoch": history[-1].epoch,
        "history": [[h.epoch, h.loss, h.val_msa, h.train_msa] for h in history],
    }
    _save(out_dir / LAST, state)
    if _is_best(history):
        _save(out_dir / BEST, ckpt)


def _is_best(history: list[EpochLog]) -> bool:
    """The last epoch is the best so far by held-out mSA (by loss without a held-out split)."""
    last = history[-1]
    if all(math.isnan(h.val_msa) for h in history):
        return last.loss <= min(h.loss for h in history)
    prev = [h.val_msa for h in history[:-1] if not math.isnan(h.val_msa)]
    return not prev or last.val_msa > max(prev)
