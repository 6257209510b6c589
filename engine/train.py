"""The training loop: an importable :func:`train` and the recipe class behind it.

:class:`TrainingRecipe` is the whole loop in one readable class (setup, one loss step,
evaluation, checkpoint, fit, cleanup). Features and the :class:`TrainConfig` field that
controls each:

=====================================  ===================================================
AdamW, decay on weight matrices only    ``lr``, ``weight_decay``
linear warm-up, then cosine decay       ``warmup_steps``, ``min_lr_ratio`` (LambdaLR,
                                        resumable)
length of the run                       ``epochs``, ``max_steps``
mixed precision                         ``amp``: fp16 autocast + GradScaler on CUDA, bf16
                                        autocast on CPU (no scaler); losses in float32
CUDA prefetcher                         automatic on CUDA: pinned memory, non-blocking
                                        copies on a side stream
DDP                                     automatic under ``torchrun`` (RANK / WORLD_SIZE /
                                        LOCAL_RANK): nccl on CUDA, gloo on CPU,
                                        DistributedSampler, only rank 0 logs and writes
gradient clipping                       ``grad_clip`` (global norm; 0 = off)
weight averaging (EMA)                  ``ema_decay`` (0 = off): an exponential moving average
                                        of the weights (``torch.optim.swa_utils``; decay
                                        warmed up as ``min(ema_decay, (1 + n) / (10 + n))``
                                        after n updates, so the first weights fade) is what
                                        is validated, picked for ``best.pt`` and saved as
                                        ``model``; the live weights are saved as
                                        ``live_model`` for resume
input normalisation                     stats of the train split (``engine.data.feature_stats``)
                                        set on the model before training, saved with it
validation loss + MPJPE (mm)            ``eval_every`` steps, at each epoch end and at the end;
                                        ``max_val_batches`` caps its cost
checkpoints                             ``last.pt`` at every evaluation and on exit,
                                        ``best.pt`` at the lowest validation MPJPE
fine-tuning                             ``init_from``: start from trained weights (.pt or
                                        .safetensors) and their input normalisation
data sources                            ``ModelConfig.num_domains`` > 1: each window's
                                        ``domain`` selects its source's vector;
                                        ``engine_share``: every real window once per epoch
                                        plus engine/synthetic ones making up that share
                                        (:class:`ShareSampler`)
resume                                  ``train(..., resume=True)``: model, optimizer,
                                        scheduler, scaler, step, epoch, batch within the
                                        epoch, RNG states; the loss curve continues
progress bar, metrics, curves           tqdm (loss, samples/s), ``metrics.csv`` every
                                        ``log_every`` steps, ``curves.png`` at each evaluation
resolved configs                        ``config.json`` in the run folder
non-finite losses                       the step is skipped and counted; more than
                                        ``max_nonfinite`` in a row raise TrainingError
SIGTERM / Ctrl-C                        finish the current step, save ``last.pt``, return
                                        (a second Ctrl-C interrupts at once)
torch.compile                           ``compile`` (off by default)
=====================================  ===================================================

Batches are dicts as produced by :class:`engine.data.WindowDataset` (features (B, S, 25, 18),
valid (B, S), target (B, S, 22, 6), weight (B, S), offsets (B, 21, 3), has_root_rotation (B,),
domain (B,)).
"""
from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import logging
import math
import os
import random
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .checkpoint import (atomic_write_bytes, config_differences, load_checkpoint, rng_state,
                         save_checkpoint, set_rng_state)
from .data import DOMAINS
from .errors import CheckpointError, DatasetError, InputError, TrainingError
from .features import FEATURE_VERSION
from .losses import TERMS, LossConfig, compute_losses, mpjpe_sum
from .model import ModelConfig, MotionTransformer
from .skeleton import DEFAULT_OFFSETS

log = logging.getLogger(__name__)

LAST, BEST = "last.pt", "best.pt"
METRICS, CURVES, CONFIG = "metrics.csv", "curves.png", "config.json"
LOSS_COLUMNS = (*TERMS, "total")
VAL_COLUMNS = tuple(f"val_{t}" for t in LOSS_COLUMNS) + ("val_mpjpe_mm", "val_live_mpjpe_mm")
COLUMNS = ("step", "epoch", "lr", *LOSS_COLUMNS, "grad_norm", "samples_per_s",
           "nonfinite_skipped", *VAL_COLUMNS)


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 512              # windows per optimizer step, per process
    num_workers: int = 8               # DataLoader workers per process (capped at the CPUs)
    window: int = 64                   # frames per training window
    hop: int | None = None             # frames between window starts (None: dataset default)
    min_valid_frames: int = 16         # windows with fewer weighted frames are dropped
    lr: float = 1e-4                   # peak learning rate (AdamW)
    min_lr_ratio: float = 0.1          # the cosine decays to lr * min_lr_ratio
    warmup_steps: int = 500            # linear warm-up from lr / warmup_steps
    weight_decay: float = 0.01         # AdamW decay of weight matrices
    grad_clip: float = 1.0             # max global gradient norm (0: no clipping)
    ema_decay: float = 0.0             # EMA of the weights per step (0: off; e.g. 0.999),
                                       # warmed up (see ema_decay_at)
    epochs: int = 100                  # passes over the train split
    max_steps: int | None = None       # stop after this many steps (None: epochs decide)
    amp: bool = True                   # fp16 + GradScaler on CUDA, bf16 on CPU
    device: str = "auto"               # "auto", "cpu", "cuda" or "cuda:N"
    seed: int = 0                      # seeds python, numpy, torch and the data order
    eval_every: int = 1000             # steps between evaluations (plus each epoch end)
    log_every: int = 50                # steps between metrics.csv rows
    max_val_batches: int | None = None  # cap on validation batches (None: whole split)
    max_nonfinite: int = 20            # consecutive non-finite losses tolerated
    compile: bool = False              # torch.compile the model
    init_from: str | None = None       # start from these weights (.pt or .safetensors; their
                                       # input normalisation too) instead of random ones
    engine_share: float | None = None  # share of each epoch's windows from the other data
                                       # sources (engine, synthetic), the real windows all
                                       # in once; None: as many as the data holds
    train_split: str = "train"         # splits of the prepared dataset
    val_split: str = "test"

    def __post_init__(self) -> None:
        positive = ("batch_size", "window", "epochs", "eval_every", "log_every", "max_nonfinite")
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise InputError(f"train config {name} must be a positive integer, "
                                 f"got {getattr(self, name)!r}")
        for name in ("max_steps", "hop", "max_val_batches"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise InputError(f"train config {name} must be a positive integer or null, got {v!r}")
        for name in ("num_workers", "warmup_steps", "min_valid_frames"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise InputError(f"train config {name} must be an integer >= 0, "
                                 f"got {getattr(self, name)!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"train config lr must be a positive number, got {self.lr!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise InputError(f"train config min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise InputError("train config weight_decay and grad_clip must be >= 0")
        if self.engine_share is not None and not 0 < self.engine_share < 1:
            raise InputError(f"train config engine_share must be in (0, 1) or null, "
                             f"got {self.engine_share!r}")
        if not 0 <= self.ema_decay < 1:
            raise InputError(f"train config ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise InputError(f"train config device must be auto, cpu or cuda[:N], got {self.device!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def ema_decay_at(decay: float, updates: int) -> float:
    """Decay of the weight average at its ``updates``-th update (1-based after the first
    copy): ``min(decay, (1 + n) / (10 + n))``. Without the warm-up a 0.999 average would
    still hold 5 % of the first step's weights after 3,000 steps."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


def _ema_update(decay: float):
    """``AveragedModel`` ``multi_avg_fn``: avg <- avg + (1 - d) (current - avg), d warmed up."""
    @torch.no_grad()
    def update(averaged: list, current: list, num_averaged) -> None:
        weight = 1.0 - ema_decay_at(decay, int(num_averaged))
        for a, c in zip(averaged, current):
            a.lerp_(c, weight)
    return update


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak lr for optimizer step ``step`` (0-based): linear warm-up to 1
    over ``warmup_steps``, then a cosine from 1 to ``min_ratio`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class ResumableSampler(DistributedSampler):
    """DistributedSampler (shuffled with ``seed + epoch``) that can start inside an epoch:
    ``skip`` samples of this rank's shard are left out (set after ``set_epoch``)."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, shuffle: bool, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=seed, drop_last=False)
        self.skip = 0

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


def item_domains(dataset: Dataset) -> np.ndarray:
    """(len(dataset),) int64 data source (``engine.data.DOMAINS`` index) of every item: a
    WindowDataset's window -> entry -> domain, or a ``domains`` array with one per item."""
    domains = getattr(dataset, "domains", None)
    windows = getattr(dataset, "windows", None)
    if domains is not None and windows is not None:
        return np.asarray(domains, np.int64)[np.asarray(windows)[:, 0]]
    if domains is not None and len(domains) == len(dataset):
        return np.asarray(domains, np.int64)
    raise InputError("engine_share needs a dataset that knows each window's data source")


class ShareSampler(ResumableSampler):
    """:class:`ResumableSampler` whose epoch holds every real window once plus other-source
    windows (engine, synthetic) making up ``share`` of the epoch: drawn afresh each epoch
    (without replacement while there are enough), shuffled together, from ``seed + epoch``,
    so a resumed run sees the same epoch. Shards across ranks as DistributedSampler does."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, share: float):
        super().__init__(dataset, num_replicas, rank, True, seed)
        domains = item_domains(dataset)
        self.real = np.flatnonzero(domains == 0)
        self.other = np.flatnonzero(domains != 0)
        if not len(self.real) or not len(self.other):
            raise InputError(f"engine_share is set but the training data has "
                             f"{len(self.real)} real and {len(self.other)} engine/synthetic "
                             f"windows: it needs both")
        self.share = share
        self.n_other = max(1, int(round(len(self.real) * share / (1.0 - share))))
        self.total_size = -(-(len(self.real) + self.n_other) // num_replicas) * num_replicas
        self.num_samples = self.total_size // num_replicas

    def epoch_indices(self) -> np.ndarray:
        """All ranks' indices of the current epoch, before sharding (``total_size``)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.n_other <= len(self.other):
            other = rng.permutation(self.other)[:self.n_other]
        else:
            other = rng.choice(self.other, self.n_other, replace=True)
        idx = rng.permutation(np.concatenate([self.real, other]))
        return np.resize(idx, self.total_size)   # pads by repeating the start, as DDP does

    def __iter__(self):
        idx = self.epoch_indices()[self.rank:self.total_size:self.num_replicas]
        return itertools.islice(iter(idx.tolist()), self.skip, None)


class CudaPrefetcher:
    """Iterates a DataLoader (pinned memory) and copies the next batch to the GPU on a side
    stream while the current batch trains."""

    def __init__(self, loader: DataLoader, device: torch.device):
        self.loader, self.device = loader, device
        self.stream = torch.cuda.Stream(device)

    def _copy(self, batch: dict | None) -> dict | None:
        if batch is None:
            return None
        with torch.cuda.stream(self.stream):
            return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v
                    for k, v in batch.items()}

    def __iter__(self):
        it = iter(self.loader)
        nxt = self._copy(next(it, None))
        while nxt is not None:
            torch.cuda.current_stream(self.device).wait_stream(self.stream)
            batch = nxt
            for v in batch.values():
                if torch.is_tensor(v):
                    v.record_stream(torch.cuda.current_stream(self.device))
            nxt = self._copy(next(it, None))
            yield batch

    def __len__(self) -> int:
        return len(self.loader)


def dataset_feature_stats(dataset: Dataset, max_items: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """(450,) mean and std of the features of weighted frames, for input normalisation.

    A prepared :class:`engine.data.WindowDataset` uses ``engine.data.feature_stats`` (every
    frame once); any other dataset of the same items is sampled (up to ``max_items`` windows,
    evenly spaced).
    """
    from .data import WindowDataset, feature_stats

    if isinstance(dataset, WindowDataset):
        return feature_stats(dataset)
    n = len(dataset)
    idx = np.unique(np.linspace(0, n - 1, min(n, max_items)).astype(np.int64)) if n else []
    total = torch.zeros(450, dtype=torch.float64)
    total_sq = torch.zeros(450, dtype=torch.float64)
    count = 0
    for i in idx:
        item = dataset[int(i)]
        x = torch.as_tensor(item["features"])[torch.as_tensor(item["weight"]) > 0]
        x = x.reshape(-1, 450).double()
        total += x.sum(0)
        total_sq += (x * x).sum(0)
        count += x.shape[0]
    if count == 0:
        raise DatasetError("the training set has no weighted frames to compute feature statistics")
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    return mean.float(), std.float()


class MetricsLog:
    """``metrics.csv``: one row per logged step, flushed per row. On resume, rows after the
    checkpoint's step (written before a crash) and unreadable rows are dropped first."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        self.rows: list[dict] = []
        if resume_step is not None and path.exists():
            with open(path, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    try:
                        step = int(row.get("step") or "")
                    except ValueError:
                        continue
                    if None in row.values() or None in row or step > resume_step:
                        continue  # a partial last line, or a step the checkpoint does not have
                    self.rows.append({k: row.get(k, "") for k in COLUMNS})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        data = buf.getvalue().encode("utf-8")
        atomic_write_bytes(path, lambda f: f.write(data))
        self.file = open(path, "a", newline="", encoding="utf-8")

    def append(self, row: dict) -> None:
        full = {k: _fmt(row.get(k)) for k in COLUMNS}
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n").writerow(full)
        self.file.write(buf.getvalue())  # one write per row: a crash leaves whole rows
        self.file.flush()
        self.rows.append(full)

    def sync(self) -> None:
        os.fsync(self.file.fileno())

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def plot_curves(rows: list[dict], path: Path) -> None:
    """``curves.png``: train / validation loss and validation MPJPE against the step."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def series(key):
        pts = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in ("", None)]
        pts = [(s, v) for s, v in pts if math.isfinite(v)]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig = Figure(figsize=(10, 4), dpi=80)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    positive = True
    for key, label in (("total", "train loss"), ("val_total", "validation loss")):
        xs, ys = series(key)
        if xs:
            ax1.plot(xs, ys, label=label, marker="." if len(xs) < 50 else None)
            ax1.legend(loc="upper right")
            positive = positive and min(ys) > 0
    if positive:
        ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_ylabel("loss")
    xs, ys = series("val_mpjpe_mm")
    ax2.plot(xs, ys, marker=".", color="C2")
    ax2.set_xlabel("step")
    ax2.set_ylabel("validation MPJPE (mm)")
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.13, top=0.96, wspace=0.25)  # tight_layout is slow
    atomic_write_bytes(path, lambda f: fig.savefig(f, format="png"))


def write_json(path: Path, obj: Any) -> None:
    data = (json.dumps(obj, indent=2) + "\n").encode("utf-8")
    atomic_write_bytes(path, lambda f: f.write(data))


def _copy_atomic(src: Path, dst: Path) -> None:
    def write(f):
        with open(src, "rb") as s:
            shutil.copyfileobj(s, f)
    atomic_write_bytes(dst, write)


class _StopRequest:
    """SIGTERM / SIGINT handlers that ask the loop to stop after the current step.

    A second SIGINT raises KeyboardInterrupt at once. Handlers are only installed from the
    main thread and are restored on exit.
    """

    def __init__(self) -> None:
        self.signal: str | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        log.warning("%s received: stopping after this step (last.pt will be saved)", self.signal)

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self._old[s] = signal.signal(s, self._handle)

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()


class TrainingRecipe:
    """One training run: ``setup()``, then ``fit()`` (calls ``train_step`` / ``evaluate`` /
    ``save``), then ``cleanup()``. See the module docstring for the features."""

    def __init__(self, cfg: TrainConfig, model_cfg: ModelConfig, loss_cfg: LossConfig,
                 out_dir: str | os.PathLike, train_set: Dataset, val_set: Dataset | None = None,
                 resume: bool = False, stats: tuple[torch.Tensor, torch.Tensor] | None = None,
                 data_root: str | os.PathLike | None = None):
        self.cfg, self.model_cfg, self.loss_cfg = cfg, model_cfg, loss_cfg
        self.out_dir = Path(out_dir)
        self.train_set, self.val_set = train_set, val_set
        self.resume, self.stats, self.data_root = resume, stats, data_root
        self.step = self.epoch = self.batch_in_epoch = 0
        self.best_metric: float | None = None
        self.nonfinite_total = self.nonfinite_run = 0
        self.last_train: dict[str, float] = {}
        self.last_val: dict[str, float] = {}
        self._stop = _StopRequest()
        self._updating = False
        self._owns_process_group = False
        self.metrics: MetricsLog | None = None
        self._pbar = None

    # ------------------------------------------------------------------ setup
    def _resolve_device(self) -> torch.device:
        want = self.cfg.device
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        if want.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"device {self.cfg.device!r} requested but CUDA is not available")
        if want == "cuda":
            want = f"cuda:{self.local_rank}"
        return torch.device(want)

    def _init_distributed(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(self.world)))
        self.device = self._resolve_device()
        if self.world > 1 and not dist.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
            self._owns_process_group = True
        self.is_main = self.rank == 0

    def _seed(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def setup(self) -> None:
        cfg = self.cfg
        self._init_distributed()
        if len(self.train_set) == 0:
            raise DatasetError("the training set is empty")
        last = self.out_dir / LAST
        if not self.resume and last.exists():
            raise InputError(f"{self.out_dir} already holds a training run ({LAST}); resume it "
                             "(--resume) or choose another folder")
        if self.resume and not last.exists():
            raise CheckpointError(f"nothing to resume: {last} does not exist")
        if self.loss_cfg.w_joints > 0 and not self.model_cfg.joint_head:
            raise InputError("loss.w_joints > 0 needs a joint head: set model.joint_head=true "
                             "(or loss.w_joints=0)")
        if self.loss_cfg.w_frame > 0 and not self.model_cfg.frame_branch:
            raise InputError("loss.w_frame > 0 needs a per-frame branch: set "
                             "model.frame_branch to its width (or loss.w_frame=0)")
        if self.model_cfg.frame_branch and not self.loss_cfg.w_frame > 0:
            raise InputError("model.frame_branch needs loss.w_frame > 0: nothing else "
                             "trains the branch")
        self._seed(cfg.seed + self.rank)

        # Model, optimizer, schedule, precision.
        self.raw_model = MotionTransformer(self.model_cfg).to(self.device)
        named = list(self.raw_model.named_parameters())
        decay = [p for n, p in named if p.dim() >= 2 and n != "domain_embed"]
        no_decay = [p for n, p in named if p.dim() < 2 or n == "domain_embed"]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
        cuda = self.device.type == "cuda"
        self.amp_dtype = (torch.float16 if cuda else torch.bfloat16) if cfg.amp else None
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp and cuda)

        # Data.
        for split, ds in (("training", self.train_set), ("validation", self.val_set)):
            top = int(getattr(ds, "domains", np.zeros(1, np.int64)).max(initial=0))
            if self.model_cfg.num_domains > 1 and top >= self.model_cfg.num_domains:
                raise InputError(f"the {split} data has {DOMAINS[top]} entries (domain {top}) but "
                                 f"model.num_domains is {self.model_cfg.num_domains}; set "
                                 f"model.num_domains={top + 1}")
        self.sampler = (ResumableSampler(self.train_set, self.world, self.rank, True, cfg.seed)
                        if cfg.engine_share is None else
                        ShareSampler(self.train_set, self.world, self.rank, cfg.seed,
                                     cfg.engine_share))
        workers = min(cfg.num_workers, max(0, available_cpus() // max(1, self.local_world)))
        self.loader_gen = torch.Generator()
        self.loader = DataLoader(self.train_set, batch_size=cfg.batch_size, sampler=self.sampler,
                                 num_workers=workers, pin_memory=cuda, drop_last=False,
                                 generator=self.loader_gen)
        self.steps_per_epoch = len(self.loader)
        self.val_loader = None
        if self.val_set is not None and len(self.val_set) > 0:
            val_sampler = DistributedSampler(self.val_set, num_replicas=self.world,
                                             rank=self.rank, shuffle=False)
            self.val_loader = DataLoader(self.val_set, batch_size=cfg.batch_size,
                                         sampler=val_sampler, num_workers=workers,
                                         pin_memory=cuda, generator=torch.Generator())
        elif self.is_main:
            log.warning("no validation set: no validation metrics and no %s", BEST)
        total = cfg.epochs * self.steps_per_epoch
        self.total_steps = min(total, cfg.max_steps) if cfg.max_steps else total
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, cfg.warmup_steps, self.total_steps,
                                                cfg.min_lr_ratio))

        # The weight average starts as a copy of the initial (or resumed live) weights.
        self.ema = None
        if self.resume:
            ckpt = self._load(last)
        elif cfg.init_from:
            ckpt = None
            self._init_weights(Path(cfg.init_from))
        else:
            ckpt = None
            mean, std = self.stats if self.stats is not None else dataset_feature_stats(self.train_set)
            self.raw_model.set_input_normalization(torch.as_tensor(mean).to(self.device),
                                                   torch.as_tensor(std).to(self.device))
        if cfg.ema_decay > 0:
            from torch.optim.swa_utils import AveragedModel
            self.ema = AveragedModel(self.raw_model, multi_avg_fn=_ema_update(cfg.ema_decay),
                                     use_buffers=True)
            if ckpt is not None and "live_model" in ckpt:  # the average was saved as "model"
                self.ema.module.load_state_dict(ckpt["model"])
                self.ema.n_averaged.fill_(int(ckpt.get("ema_updates", 1)))

        self.model = torch.compile(self.raw_model) if cfg.compile else self.raw_model
        if self.world > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if cuda else None)

        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            for tmp in self.out_dir.glob(".*.tmp"):  # left by a killed run
                tmp.unlink()
            write_json(self.out_dir / CONFIG, self.resolved_config())
            self.metrics = MetricsLog(self.out_dir / METRICS, self.step if self.resume else None)
            log.info("training %d parameters on %s (world %d): %d windows, %d steps per epoch, "
                     "%d steps in all -> %s", self.raw_model.num_parameters(), self.device,
                     self.world, len(self.train_set), self.steps_per_epoch, self.total_steps,
                     self.out_dir)

    def resolved_config(self) -> dict:
        return {"train": self.cfg.to_dict(), "model": self.model_cfg.to_dict(),
                "loss": self.loss_cfg.to_dict(), "feature_version": FEATURE_VERSION,
                "data_root": None if self.data_root is None else str(self.data_root),
                "world_size": self.world, "train_windows": len(self.train_set),
                "val_windows": 0 if self.val_set is None else len(self.val_set),
                "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps}

    def _init_weights(self, path: Path) -> None:
        """Fine-tuning: this run's model starts as the weights at ``path`` (a training
        checkpoint's inference weights, or exported safetensors), input normalisation
        included. Domain vectors the weights lack start at zero (the weights are the real-video
        model); any other difference of architecture raises CheckpointError."""
        from dataclasses import replace

        from .checkpoint import load_model

        src, _ = load_model(path, device=self.device)  # folded: the real-video model
        want = replace(self.model_cfg, num_domains=1, dropout=src.cfg.dropout)
        diffs = config_differences(src.cfg.to_dict(), want.to_dict())
        if diffs:
            raise CheckpointError(f"cannot start from {path}: its model differs from this "
                                  f"recipe's: {'; '.join(diffs)}")
        missing, unexpected = self.raw_model.load_state_dict(src.state_dict(), strict=False)
        if unexpected or set(missing) - {"domain_embed"}:
            raise CheckpointError(f"cannot start from {path}: parameters differ "
                                  f"({', '.join((missing + unexpected)[:5])})")
        if self.is_main:
            log.info("starting from the weights of %s", path)

    def _load(self, path: Path) -> dict:
        ckpt = load_checkpoint(path, self.model_cfg)
        # With weight averaging, "model" is the average and "live_model" the trained weights.
        live = ckpt.get("live_model", ckpt["model"])
        if not isinstance(live, dict):
            raise CheckpointError(f"{path}: live_model is not a state dict")
        self.raw_model.load_state_dict(live)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step, self.epoch = int(ckpt["step"]), int(ckpt["epoch"])
        self.batch_in_epoch = int(ckpt.get("batch_in_epoch", 0))
        self.best_metric = ckpt.get("best_metric")
        self.nonfinite_total = int(ckpt.get("nonfinite_total", 0))
        if self.rank == 0:
            set_rng_state(ckpt["rng"])
        else:
            self._seed(self.cfg.seed + self.rank + 7919 * self.step)
        if self.is_main:
            diffs = config_differences(ckpt.get("train_config", {}), self.cfg.to_dict())
            if diffs:
                log.info("resuming with a changed train config: %s", "; ".join(diffs))
            log.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.step,
                     self.epoch, self.batch_in_epoch)
        return ckpt

    # ------------------------------------------------------------------ steps
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v
                for k, v in batch.items()}

    def _all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t)
        return t

    def _domain(self, batch: dict) -> torch.Tensor | None:
        """(B,) data source of each window for a model with domain vectors, else None."""
        return batch.get("domain") if self.model_cfg.num_domains > 1 else None

    def _forward(self, model: torch.nn.Module, batch: dict):
        """(output (B, S, 22, 6), the joint head's joints (B, S, 21, 3) or None, the per-frame
        branch's joints (B, S, 20, 3) or None)."""
        if not self.model_cfg.joint_head:
            return model(batch["features"], batch["valid"], domain=self._domain(batch)), None, None
        return model(batch["features"], batch["valid"], domain=self._domain(batch),
                     return_joints=True, return_frame=True)

    def train_step(self, batch: dict) -> dict[str, float] | None:
        """One optimizer step on a batch (on the device). Returns the loss terms (mean over
        ranks) and ``grad_norm``, or None when the step was skipped (non-finite loss or
        gradients). Raises TrainingError after more than ``max_nonfinite`` skips in a row."""
        self.model.train()
        with self._autocast():
            pred, joints, frame = self._forward(self.model, batch)
        losses = compute_losses(pred, batch, self.loss_cfg, joints, frame)
        stop = 1.0 if self._stop.signal else 0.0
        vec = torch.stack([losses[k].detach() for k in LOSS_COLUMNS]
                          + [torch.tensor(stop, device=self.device)])
        vec = self._all_reduce(vec).tolist()
        if vec[-1] > 0 and self._stop.signal is None:
            self._stop.signal = "peer"  # another rank was asked to stop
        values = {k: v / self.world for k, v in zip(LOSS_COLUMNS, vec)}
        if not math.isfinite(values["total"]):
            self.optimizer.zero_grad(set_to_none=True)
            return self._skip("loss", values)
        self._updating = True
        self.scaler.scale(losses["total"]).backward()
        self.scaler.unscale_(self.optimizer)
        params = self.raw_model.parameters()
        if self.cfg.grad_clip > 0:
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip))
        else:
            norm = float(torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None]))
        if not math.isfinite(norm) and not self.scaler.is_enabled():
            self.optimizer.zero_grad(set_to_none=True)
            self._updating = False  # nothing was changed
            return self._skip("gradient", values)
        self.scaler.step(self.optimizer)  # with a scaler: skipped on inf/NaN gradients
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()  # the schedule follows updates; skipped steps do not advance it
        if self.ema is not None:
            self.ema.update_parameters(self.raw_model)
        self.nonfinite_run = 0
        values["grad_norm"] = norm
        return values

    def _skip(self, what: str, values: dict) -> None:
        self.nonfinite_total += 1
        self.nonfinite_run += 1
        if self.is_main:
            log.warning("step %d: non-finite %s (total %s), step skipped (%d in a row)",
                        self.step + 1, what, values["total"], self.nonfinite_run)
        if self.nonfinite_run > self.cfg.max_nonfinite:
            raise TrainingError(f"{self.nonfinite_run} non-finite losses in a row (limit "
                                f"{self.cfg.max_nonfinite}): lower the learning rate or check "
                                "the data")
        return None

    def evaluated_model(self) -> torch.nn.Module:
        """The weights that are validated and shipped: the average with ``ema_decay``, else
        the live model."""
        if self.ema is not None:
            return self.ema.module
        return self.model.module if isinstance(
            self.model, torch.nn.parallel.DistributedDataParallel) else self.model

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module | None = None) -> dict[str, float]:
        """Validation loss terms and MPJPE (mm, default body) of ``model`` (default
        :meth:`evaluated_model`), over all ranks."""
        if self.val_loader is None:
            return {}
        model = self.evaluated_model() if model is None else model
        model.eval()
        acc = torch.zeros(len(LOSS_COLUMNS) + 3, dtype=torch.float64, device=self.device)
        self.val_loader.generator.manual_seed(self.cfg.seed)
        for i, batch in enumerate(self.val_loader):
            if self.cfg.max_val_batches and i >= self.cfg.max_val_batches:
                break
            batch = self._to_device(batch)
            with self._autocast():
                pred, joints, frame = self._forward(model, batch)
            losses = compute_losses(pred, batch, self.loss_cfg, joints, frame)
            w = batch["weight"].double().sum()
            acc[:len(LOSS_COLUMNS)] += torch.stack([losses[k].double() for k in LOSS_COLUMNS]) * w
            acc[len(LOSS_COLUMNS)] += w
            err, n = mpjpe_sum(pred, batch)
            acc[-2] += err
            acc[-1] += n
        self._all_reduce(acc)
        model.train()
        a = acc.tolist()
        wsum, nsum = a[len(LOSS_COLUMNS)], a[-1]
        out = {f"val_{k}": (a[i] / wsum if wsum > 0 else float("nan"))
               for i, k in enumerate(LOSS_COLUMNS)}
        out["val_mpjpe_mm"] = a[-2] / nsum if nsum > 0 else float("nan")
        return out

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        extra = {}
        if self.ema is not None:
            extra = {"live_model": self.raw_model.state_dict(),
                     "ema_updates": int(self.ema.n_averaged)}
        return {
            "model": (self.ema.module if self.ema is not None else self.raw_model).state_dict(),
            **extra,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "best_metric": self.best_metric, "nonfinite_total": self.nonfinite_total,
            "rng": rng_state(),
            "model_config": self.model_cfg.to_dict(), "train_config": self.cfg.to_dict(),
            "loss_config": self.loss_cfg.to_dict(), "feature_version": FEATURE_VERSION,
            "offsets": DEFAULT_OFFSETS.tolist(), "world_size": self.world,
        }

    def save(self, best: bool = False) -> None:
        """Rank 0: write ``last.pt`` (and copy it to ``best.pt``). Refuses a non-finite model."""
        if not self.is_main:
            return
        tensors = itertools.chain(self.raw_model.state_dict().items(),
                                  self.ema.module.state_dict().items() if self.ema is not None else ())
        bad = [n for n, p in tensors if p.is_floating_point() and not bool(torch.isfinite(p).all())]
        if bad:
            raise TrainingError(f"model parameters became non-finite ({', '.join(bad[:3])}); "
                                "nothing was saved")
        save_checkpoint(self.out_dir / LAST, self.state())
        if best:
            _copy_atomic(self.out_dir / LAST, self.out_dir / BEST)
        if self.metrics is not None:
            self.metrics.sync()

    # ------------------------------------------------------------------ loop
    def _batches(self):
        if self.device.type == "cuda":
            return iter(CudaPrefetcher(self.loader, self.device))
        return (self._to_device(b) for b in self.loader)

    def fit(self) -> dict:
        """Train until ``total_steps`` / ``epochs`` or a stop request; returns a summary."""
        self._stop.install()
        redirect = contextlib.nullcontext()
        if self.is_main:
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm
            self._pbar = tqdm(total=self.total_steps, initial=self.step, desc="train",
                              unit="step", dynamic_ncols=True)
            redirect = logging_redirect_tqdm()  # log lines above the bar, not through it
        try:
            with redirect:
                self._loop()
                if self._stop.signal:
                    self.save()
                    if self.is_main:
                        log.warning("stopped at step %d (%s); resume with --resume", self.step,
                                    self._stop.signal)
        except KeyboardInterrupt:
            if self._updating:
                log.warning("interrupted during an update: %s keeps the last saved state", LAST)
            else:
                self.save()
            raise
        except TrainingError:
            if not self._updating:
                self.save()
            raise
        finally:
            self._stop.restore()
            if self._pbar is not None:
                self._pbar.close()
        return self.summary()

    def _loop(self) -> None:
        cfg = self.cfg
        acc: dict[str, float] = {}
        n_acc = 0
        t0, samples = time.perf_counter(), 0
        while self.step < self.total_steps and self.epoch < cfg.epochs and not self._stop.signal:
            self.sampler.set_epoch(self.epoch)
            self.sampler.skip = self.batch_in_epoch * cfg.batch_size
            self.loader_gen.manual_seed(cfg.seed * 100003 + self.epoch)
            for batch in self._batches():
                step_epoch = self.epoch
                lr = self.optimizer.param_groups[0]["lr"]
                values = self.train_step(batch)
                self.step += 1
                self.batch_in_epoch += 1
                epoch_end = self.batch_in_epoch >= self.steps_per_epoch
                if epoch_end:
                    self.epoch += 1
                    self.batch_in_epoch = 0
                self._updating = False  # model and counters agree again
                samples += int(batch["features"].shape[0]) * self.world
                if values is not None:
                    for k, v in values.items():
                        acc[k] = acc.get(k, 0.0) + v
                    n_acc += 1
                finished = self.step >= self.total_steps or self.epoch >= cfg.epochs
                do_eval = self.step % cfg.eval_every == 0 or epoch_end or finished
                if self.step % cfg.log_every == 0 or do_eval:
                    row = {"step": self.step, "epoch": step_epoch, "lr": lr,
                           "samples_per_s": samples / max(time.perf_counter() - t0, 1e-9),
                           "nonfinite_skipped": self.nonfinite_total}
                    row.update({k: v / n_acc for k, v in acc.items()} if n_acc else {})
                    self.last_train = {k: v for k, v in row.items() if k in LOSS_COLUMNS}
                    if do_eval:
                        self.last_val = self.evaluate()
                        row.update(self.last_val)
                        if self.ema is not None:  # the live weights, for comparison
                            live = self.evaluate(self.raw_model).get("val_mpjpe_mm")
                            row["val_live_mpjpe_mm"] = live
                    self._log_row(row, do_eval)
                    acc, n_acc, t0, samples = {}, 0, time.perf_counter(), 0
                if self._pbar is not None:
                    self._pbar.update(1)
                if finished or self._stop.signal:
                    break

    def _log_row(self, row: dict, evaluated: bool) -> None:
        if not self.is_main:
            return
        assert self.metrics is not None
        self.metrics.append(row)
        if self._pbar is not None and "total" in row:
            self._pbar.set_postfix(loss=f"{row['total']:.4g}",
                                   sps=f"{row['samples_per_s']:.0f}", refresh=False)
        if not evaluated:
            return
        mpjpe = row.get("val_mpjpe_mm")
        improved = mpjpe is not None and math.isfinite(mpjpe) and (
            self.best_metric is None or mpjpe < self.best_metric)
        if improved:
            self.best_metric = float(mpjpe)
        self.save(best=improved)
        plot_curves(self.metrics.rows, self.out_dir / CURVES)
        if mpjpe is not None:
            log.info("step %d: val loss %.4g, val MPJPE %.1f mm%s", row["step"],
                     row.get("val_total", float("nan")), mpjpe, " (best)" if improved else "")

    def summary(self) -> dict:
        best = self.out_dir / BEST
        return {"out_dir": str(self.out_dir), "step": self.step, "epoch": self.epoch,
                "train": dict(self.last_train), "val": dict(self.last_val),
                "best_val_mpjpe_mm": self.best_metric, "nonfinite_steps": self.nonfinite_total,
                "interrupted": self._stop.signal, "world_size": self.world,
                "checkpoint": str(self.out_dir / LAST),
                "best_checkpoint": str(best) if best.exists() else None}

    def cleanup(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
        if self._owns_process_group and dist.is_initialized():
            dist.destroy_process_group()


def build_datasets(data_root: str | os.PathLike, cfg: TrainConfig) -> tuple[Dataset, Dataset | None]:
    """Train and validation :class:`engine.data.WindowDataset` of a prepared dataset folder
    (validation: None when the folder has no entries in ``cfg.val_split``)."""
    from .data import MAP_NAME, WindowDataset, load_dataset_map

    train_set = WindowDataset(data_root, cfg.train_split, window=cfg.window, hop=cfg.hop,
                              min_valid_frames=cfg.min_valid_frames)
    has_val = any(e.get(f"split_{cfg.val_split}") for e in load_dataset_map(Path(data_root)))
    if not has_val:
        log.warning("%s has no %s entries: training without validation",
                    Path(data_root) / MAP_NAME, cfg.val_split)
        return train_set, None
    val_set = WindowDataset(data_root, cfg.val_split, window=cfg.window,
                            min_valid_frames=cfg.min_valid_frames)
    return train_set, val_set


def train(cfg: TrainConfig, model_cfg: ModelConfig, loss_cfg: LossConfig,
          data_root: str | os.PathLike | None, out_dir: str | os.PathLike, resume: bool = False,
          train_set: Dataset | None = None, val_set: Dataset | None = None,
          stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Train a MotionTransformer; see the module docstring for what happens and where.

    Datasets: ``train_set`` / ``val_set`` when given, else built from the prepared folder
    ``data_root`` (:func:`build_datasets`). ``stats``: (450,) input mean and std (default:
    computed from the train set). Run under ``torchrun`` for DDP.
    Returns a summary dict: out_dir, step, epoch, train and val (last metrics),
    best_val_mpjpe_mm, nonfinite_steps, interrupted (signal name or None), world_size,
    checkpoint, best_checkpoint.
    """
    if train_set is None:
        if data_root is None:
            raise InputError("train() needs a data_root or a train_set")
        train_set, built_val = build_datasets(data_root, cfg)
        val_set = built_val if val_set is None else val_set
    recipe = TrainingRecipe(cfg, model_cfg, loss_cfg, out_dir, train_set, val_set,
                            resume=resume, stats=stats, data_root=data_root)
    try:
        recipe.setup()
        return recipe.fit()
    finally:
        recipe.cleanup()


def config_from_dict(cls, d: dict, section: str):
    """A frozen config dataclass from a dict; unknown keys raise InputError naming them."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise InputError(f"unknown {section} config key(s) {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(names))})")
    try:
        return cls(**d)
    except (TypeError, ValueError) as err:
        raise InputError(f"bad {section} config: {err}") from err
