"""Prepared datasets: the map, one sequence, training windows, feature statistics.

A prepared dataset folder ``DS`` (written by ``blaze2cap prepare``) holds

* ``dataset_map.json``: a JSON list of entries. The seed's keys: ``source`` (landmarks,
  relative path), ``target`` (relative path), ``subject``, ``split_train``, ``split_test``;
  ours: ``sequence``, ``camera``, ``stride``, ``offset``, ``mirror``, ``frames``, ``fps``,
  ``aspect``, ``focal`` (optional: focal length / long image side), ``flags`` (relative
  path), ``skeleton_offsets`` ((21, 3) list or null), ``has_root_rotation``,
  ``source_format``, ``weight`` (optional, default 1: multiplies the entry's frame weights,
  e.g. to mix rendered data-engine clips with the real pairs), ``domain`` (optional: the
  data source, ``DOMAINS``; default from ``source_format`` and ``synthetic``);
* ``source`` files: (F, 33, 10) float32 BlazePose landmarks (``engine.skeleton`` channels);
* ``target`` files: (F, 22, 6) float32 slots (``engine.kinematics.rotations_to_slots``);
* ``flags`` files: (F,) uint8 bitfield per frame, bits ``FLAG_*`` below.

:class:`WindowDataset` computes the model features once per entry over the whole entry
(``engine.features.compute_features``), caches them for the split as memory-mapped ``.npy``
files under ``DS/cache/`` and serves fixed-length windows. Paths in a map are checked: an
absolute path, a ``..`` component or a path that resolves outside the folder is refused.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from . import rotations as rot
from .atomic import atomic_write_bytes, write_json_atomic  # noqa: F401 (re-exported)
from .errors import DatasetError
from . import features as _features
from .features import (DEFAULT_ASPECT, DEFAULT_FOCAL, NUM_FEATURES, NUM_KEYPOINTS,
                       compute_features)
from .skeleton import (CH_ANCHOR, CH_ANCHOR_COPY, DEFAULT_OFFSETS, NUM_BLAZEPOSE, NUM_CHANNELS,
                       NUM_JOINTS, NUM_SLOTS, mirror_joint_permutation)

log = logging.getLogger(__name__)

#: Bump when weights or the cache layout change: old caches are then rebuilt (the cache key
#: also holds ``engine.features.FEATURE_VERSION`` and a hash of that module's source).
FEATURE_CODE_VERSION = 1

FLAG_ALIGNED = 1   # a ground-truth frame exists for this landmark frame
FLAG_IN_VIEW = 2   # all 12 evaluation joints project inside the image
FLAG_TRACKED = 4   # in view and BlazePose is on the subject (median 2D error < 150 px)
FLAG_CLEAN = 8     # detected and median 2D error < 100 px: usable as a training target
ALL_FLAGS = FLAG_ALIGNED | FLAG_IN_VIEW | FLAG_TRACKED | FLAG_CLEAN

_IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # padding target rotations

#: Data sources, as indices of ``ModelConfig.num_domains`` vectors: real BlazePose on real
#: video, real BlazePose on data-engine renders, synthetic noise on projected joints.
DOMAINS = ("real", "engine", "synthetic")

DEFAULT_FPS = 60.0
MAP_NAME = "dataset_map.json"
SPLITS = ("train", "test")

Array = Any  # np.ndarray | torch.Tensor


# ---------------------------------------------------------------------------------------------
# Atomic files (``engine.atomic``; ``write_json_atomic`` is re-exported for ``prepare``)
# ---------------------------------------------------------------------------------------------
def save_npy_atomic(path: Path, arr: np.ndarray) -> None:
    """``np.save`` through a temporary file in the same folder, fsync, then rename."""
    atomic_write_bytes(path, lambda f: np.save(f, np.ascontiguousarray(arr), allow_pickle=False))


# ---------------------------------------------------------------------------------------------
# Mirroring (left/right): written once, used by ``prepare`` and available to augmentation
# ---------------------------------------------------------------------------------------------
_JOINT_PERM = mirror_joint_permutation()
_SLOT_PERM = np.concatenate([[0], _JOINT_PERM + 1])
_X_SIGN = np.array([-1.0, 1.0, 1.0], dtype=np.float32)
# 6D of M R M (M = diag(-1, 1, 1)): column 0 -> -M c0, column 1 -> M c1.
_SIGN_6D = np.array([1.0, -1.0, -1.0, -1.0, 1.0, 1.0], dtype=np.float32)


def _like(x: Array, a: np.ndarray) -> Array:
    if isinstance(x, torch.Tensor):
        return torch.as_tensor(a, dtype=x.dtype, device=x.device)
    return a.astype(x.dtype, copy=False)


def mirror_rotations(glob: Array) -> Array:
    """Left/right mirror of global rotations (..., 21, 3, 3): ``G'_j = M G_perm(j) M``.

    M = ``engine.rotations.MIRROR_X`` flips the camera x axis; perm swaps left/right joints.
    Together with :func:`mirror_offsets` and x-flipped positions, forward kinematics of the
    result is the mirror image of the original joints.
    """
    m = _like(glob, rot.MIRROR_X)
    return m @ glob[..., _JOINT_PERM, :, :] @ m


def mirror_offsets(offsets: Array) -> Array:
    """Skeleton offsets (..., 21, 3) of the mirrored body: sides swapped, x negated."""
    return offsets[..., _JOINT_PERM, :] * _like(offsets, _X_SIGN)


def mirror_positions(points: Array) -> Array:
    """Points (..., 3) in the camera frame, x negated."""
    return points * _like(points, _X_SIGN)


def mirror_targets(target: Array) -> Array:
    """Slots (..., 22, 6) of the mirrored motion (exact, no re-orthonormalisation).

    Slot 0: dx and x negated. Rotation slots: left/right swapped and conjugated by M (the
    global root rotation and every local rotation transform the same way).
    """
    out = target[..., _SLOT_PERM, :]
    sign = np.ones((NUM_SLOTS, 6), dtype=np.float32)
    sign[0] = [-1, 1, 1, -1, 1, 1]
    sign[1:] = _SIGN_6D
    return out * _like(target, sign)


# ---------------------------------------------------------------------------------------------
# Temporal subsampling of landmarks
# ---------------------------------------------------------------------------------------------
def subsample_landmarks(lm: np.ndarray, stride: int, offset: int) -> np.ndarray:
    """Frames ``offset, offset + stride, ...`` of (F, 33, 10) landmarks, anchors recomputed.

    The anchor channels (4 and 9) of a kept, detected frame are 1 unless the frame restarts
    a track: the previous kept frame had no detection, or a skipped frame in between had
    none. The first kept frame starts a track (0). Frames without a detection stay all zero.
    With stride 1 this reproduces MediaPipe's own anchor channel from the second frame on.
    """
    if stride < 1 or not 0 <= offset < stride:
        raise ValueError(f"need stride >= 1 and 0 <= offset < stride, got {stride}, {offset}")
    det = (lm != 0).any(axis=(1, 2))
    idx = np.arange(offset, lm.shape[0], stride)
    out = lm[idx].copy()
    missing = np.concatenate([[0], np.cumsum(~det)])  # missing[k] = undetected among [0, k)
    anchor = np.zeros(len(idx), dtype=bool)
    if len(idx) > 1:
        prev = idx[:-1]
        # undetected frames among [prev, cur): the previous kept frame and the skipped ones
        anchor[1:] = (missing[idx[1:]] - missing[prev]) == 0
    anchor &= det[idx]
    a = anchor.astype(out.dtype)[:, None]
    out[:, :, CH_ANCHOR] = np.where(det[idx][:, None], a, 0)
    out[:, :, CH_ANCHOR_COPY] = out[:, :, CH_ANCHOR]
    return out


# ---------------------------------------------------------------------------------------------
# Map and sequences
# ---------------------------------------------------------------------------------------------
def _entry_name(entry: Any, i: int) -> str:
    if isinstance(entry, dict) and isinstance(entry.get("source"), str):
        return f"entry {i} ({entry['source']})"
    return f"entry {i}"


def safe_path(root: Path, rel: Any, what: str) -> Path:
    """``root / rel`` for a relative path that stays inside ``root``; DatasetError otherwise."""
    if not isinstance(rel, str) or not rel:
        raise DatasetError(f"{what}: path must be a non-empty string, got {rel!r}")
    if (PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).is_absolute()
            or PureWindowsPath(rel).drive or rel.startswith(("/", "\\"))):
        raise DatasetError(f"{what}: absolute path {rel!r} is not allowed")
    parts = rel.replace("\\", "/").split("/")
    if ".." in parts:
        raise DatasetError(f"{what}: path {rel!r} contains '..'")
    root_r = Path(root).resolve()
    full = (root_r / rel).resolve()
    if full != root_r and root_r not in full.parents:
        raise DatasetError(f"{what}: path {rel!r} resolves outside {root}")
    return full


def _normalise_map(data: Any, path: Path) -> list[dict]:
    """Accept the plain list, or a {"train": [...], "test": [...]} variant of the seed."""
    if isinstance(data, dict) and set(data) <= {"train", "test"} and data:
        out = []
        for split in ("train", "test"):
            for e in data.get(split, []):
                if not isinstance(e, dict):
                    raise DatasetError(f"{path}: {split} entries must be objects")
                out.append({**e, "split_train": split == "train", "split_test": split == "test"})
        return out
    if not isinstance(data, list):
        raise DatasetError(f"{path} must hold a JSON list of entries")
    return data


def load_dataset_map(root: Path, check_files: bool = True) -> list[dict]:
    """Read and check ``root/dataset_map.json``; returns its entries (list of dicts).

    Every entry needs string ``source`` and ``target`` paths (``flags`` optional) that are
    relative, free of ``..`` and inside ``root``; with ``check_files`` they must exist.
    Raises DatasetError naming the first offending entry (missing files: the first few).
    """
    root = Path(root)
    path = root / MAP_NAME
    if not path.is_file():
        raise DatasetError(f"{path} not found: run 'blaze2cap prepare' first")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} is not valid JSON ({err})") from err
    entries = _normalise_map(data, path)
    missing = []
    for i, e in enumerate(entries):
        name = _entry_name(e, i)
        if not isinstance(e, dict):
            raise DatasetError(f"{path}: {name} is not an object")
        for key in ("source", "target") + (("flags",) if e.get("flags") is not None else ()):
            full = safe_path(root, e.get(key), f"{path.name} {name} {key}")
            if check_files and not full.is_file():
                missing.append(f"{name} {key} {e[key]}")
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DatasetError(f"{len(missing)} file(s) listed in {path} are missing: "
                           f"{'; '.join(missing[:5])}{more}")
    return entries


def entry_offsets(entry: dict) -> np.ndarray:
    """(21, 3) float32 skeleton offsets of an entry (the default body when it has none)."""
    off = entry.get("skeleton_offsets")
    if off is None:
        return np.array(DEFAULT_OFFSETS, dtype=np.float32)
    arr = np.asarray(off, dtype=np.float32)
    if arr.shape != (NUM_JOINTS, 3) or not np.isfinite(arr).all():
        raise DatasetError(
            f"skeleton_offsets of {entry.get('source')} must be 21 x 3 finite numbers")
    return arr


def entry_weight(entry: dict) -> float:
    """An entry's loss weight (``weight`` key, default 1): a finite number >= 0."""
    w = entry.get("weight", 1.0)
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not np.isfinite(w) or w < 0:
        raise DatasetError(f"weight of {entry.get('source')} must be a finite number >= 0, got {w!r}")
    return float(w)


def entry_domain(entry: dict) -> int:
    """An entry's data source, an index into ``DOMAINS``: its ``domain`` key (a name or an
    index), else 1 for data-engine clips, 2 for synthetic entries, 0 for the rest."""
    d = entry.get("domain")
    if d is None:
        if entry.get("source_format") == "dataengine":
            return 1
        return 2 if entry.get("synthetic") else 0
    if isinstance(d, str) and d in DOMAINS:
        return DOMAINS.index(d)
    if isinstance(d, int) and not isinstance(d, bool) and 0 <= d < len(DOMAINS):
        return d
    raise DatasetError(f"domain of {entry.get('source')} must be one of {DOMAINS} or an index "
                       f"below {len(DOMAINS)}, got {d!r}")


def frame_weights(valid: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """(F,) float32: 1 where features are valid and the flags say aligned and clean."""
    need = FLAG_ALIGNED | FLAG_CLEAN
    return (valid & ((flags & need) == need)).astype(np.float32)


def load_npy(path: Path, what: str, mmap: bool = False) -> np.ndarray:
    """``np.load`` without pickles; a missing, corrupt or pickled file raises DatasetError
    naming ``what`` and the path."""
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError) as err:
        raise DatasetError(f"cannot read {what} {path}: {err}") from err


def load_sequence(root: Path, entry: dict) -> dict:
    """One entry's arrays and metadata.

    Returns dict: landmarks (F, 33, 10) float32, target (F, 22, 6) float32, flags (F,) uint8
    (all bits set when the entry has no flags file), offsets (21, 3) float32 metres, aspect
    (width / height), focal (focal length / long image side), fps, has_root_rotation (bool).
    """
    root = Path(root)
    src = safe_path(root, entry.get("source"), "source")
    tgt = safe_path(root, entry.get("target"), "target")
    lm = load_npy(src, "landmarks").astype(np.float32, copy=False)
    target = load_npy(tgt, "target").astype(np.float32, copy=False)
    if lm.ndim != 3 or lm.shape[1:] != (NUM_BLAZEPOSE, NUM_CHANNELS):
        raise DatasetError(f"{src} must have shape (frames, 33, 10), got {lm.shape}")
    if target.ndim != 3 or target.shape[1:] != (NUM_SLOTS, 6):
        raise DatasetError(f"{tgt} must have shape (frames, 22, 6), got {target.shape}")
    if lm.shape[0] != target.shape[0]:
        raise DatasetError(f"{src} has {lm.shape[0]} frames but {tgt} has {target.shape[0]}")
    if entry.get("flags") is not None:
        fpath = safe_path(root, entry["flags"], "flags")
        flags = load_npy(fpath, "flags").astype(np.uint8, copy=False)
        if flags.shape != (lm.shape[0],):
            raise DatasetError(f"{fpath} must have shape ({lm.shape[0]},), got {flags.shape}")
    else:
        flags = np.full(lm.shape[0], ALL_FLAGS, dtype=np.uint8)
    return {
        "landmarks": lm,
        "target": target,
        "flags": flags,
        "offsets": entry_offsets(entry),
        "aspect": float(entry.get("aspect") or DEFAULT_ASPECT),
        "focal": float(entry.get("focal") or DEFAULT_FOCAL),
        "fps": float(entry.get("fps") or DEFAULT_FPS),
        "has_root_rotation": bool(entry.get("has_root_rotation", True)),
    }


# ---------------------------------------------------------------------------------------------
# Windows
# ---------------------------------------------------------------------------------------------
_CACHE_ARRAYS = ("features", "valid", "target", "weight")


def _in_split(entry: dict, split: str) -> bool:
    return bool(entry.get(f"split_{split}", False))


def _cache_key(root: Path, entries: list[dict], split: str) -> str:
    h = hashlib.sha256()
    h.update((root / MAP_NAME).read_bytes())
    h.update(f"|v{FEATURE_CODE_VERSION}|f{_features.FEATURE_VERSION}|{split}|".encode())
    src = Path(_features.__file__)
    if src.suffix == ".py" and src.is_file():  # feature code edited without a version bump
        h.update(src.read_bytes())
    for e in entries:  # a rewritten data file (same map) must not reuse a stale cache
        for key in ("source", "target", "flags"):
            if e.get(key) is not None:
                st = (root / e[key]).stat()
                h.update(f"{e[key]}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:20]


def _build_cache(root: Path, entries: list[dict], final: Path) -> None:
    """Compute features of every entry into memory-mapped arrays under ``final`` (atomic)."""
    lengths = []
    for e in entries:
        shape = load_npy(safe_path(root, e["source"], "source"), "landmarks", mmap=True).shape
        lengths.append(int(shape[0]))
    n = int(sum(lengths))
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{secrets.token_hex(6)}"
    tmp.mkdir()  # umask permissions (mkdtemp would make the cache private, 0o700)
    try:
        mm = np.lib.format.open_memmap
        feats = mm(tmp / "features.npy", mode="w+", dtype=np.float32,
                   shape=(n, NUM_KEYPOINTS, NUM_FEATURES))
        valid = mm(tmp / "valid.npy", mode="w+", dtype=np.bool_, shape=(n,))
        target = mm(tmp / "target.npy", mode="w+", dtype=np.float32, shape=(n, NUM_SLOTS, 6))
        weight = mm(tmp / "weight.npy", mode="w+", dtype=np.float32, shape=(n,))
        offsets = np.zeros((len(entries), NUM_JOINTS, 3), dtype=np.float32)
        has_root = np.zeros(len(entries), dtype=bool)
        for i, e in enumerate(entries):
            seq = load_sequence(root, e)
            if seq["landmarks"].shape[0] != lengths[i]:
                raise DatasetError(f"{e['source']} changed while the cache was being built")
            f, v, _ = compute_features(seq["landmarks"], seq["aspect"], focal=seq["focal"])
            sl = slice(starts[i], starts[i + 1])
            feats[sl], valid[sl], target[sl] = f, v, seq["target"]
            weight[sl] = frame_weights(v, seq["flags"]) * entry_weight(e)
            offsets[i], has_root[i] = seq["offsets"], seq["has_root_rotation"]
        for arr in (feats, valid, target, weight):
            arr.flush()
        del feats, valid, target, weight
        np.save(tmp / "starts.npy", starts)
        np.save(tmp / "offsets.npy", offsets)
        np.save(tmp / "has_root_rotation.npy", has_root)
        for p in tmp.iterdir():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "starts.npy").is_file():
                raise
            log.debug("another process built %s first", final)  # theirs is identical
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


class WindowDataset(Dataset):
    """Fixed-length windows of one split of a prepared dataset.

    Item (dict of tensors), S = ``window``:
      features (S, 25, 18) float32, valid (S,) bool (feature validity), target (S, 22, 6)
      float32 slots, weight (S,) float32 (the entry's ``weight``, default 1, on valid,
      aligned and clean frames, else 0),
      offsets (21, 3) float32 metres, has_root_rotation () bool, domain () int64
      (:func:`entry_domain`), entry () int64 (index into ``self.entries``), start () int64
      (first frame of the window in the entry).

    Windows start every ``hop`` frames (default ``window // 2`` for train, ``window`` for
    test) and one more covers the tail; frames past the end of an entry are padding (zero
    features, invalid, identity rotations, weight 0). Windows with fewer than
    ``min_valid_frames`` weighted frames are dropped. Features are computed once per entry
    and cached as memory-mapped files in ``cache_dir`` (default ``root/cache``), keyed on
    the split, ``dataset_map.json``, the data files' sizes and times and
    ``FEATURE_CODE_VERSION``; a second construction only reads them.
    """

    def __init__(self, root: Path, split: str = "train", window: int = 64, hop: int | None = None,
                 min_valid_frames: int = 16, cache_dir: Path | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.root = Path(root)
        self.split = split
        self.window = int(window)
        self.hop = int(hop) if hop else (max(1, window // 2) if split == "train" else window)
        self.min_valid_frames = int(min_valid_frames)
        self.entries = [e for e in load_dataset_map(self.root) if _in_split(e, split)]
        if not self.entries:
            raise DatasetError(f"{self.root / MAP_NAME} has no entries in the {split} split")
        cache_root = Path(cache_dir) if cache_dir is not None else self.root / "cache"
        key = _cache_key(self.root, self.entries, split)
        self.cache_path = cache_root / f"{split}-{key}"
        if not (self.cache_path / "starts.npy").is_file():
            log.info("computing features of %d %s entries -> %s", len(self.entries), split,
                     self.cache_path)
            _build_cache(self.root, self.entries, self.cache_path)
            self._remove_stale(cache_root, split)
        self.starts = np.load(self.cache_path / "starts.npy")
        self.offsets = np.load(self.cache_path / "offsets.npy")
        self.has_root_rotation = np.load(self.cache_path / "has_root_rotation.npy")
        if len(self.starts) != len(self.entries) + 1:
            raise DatasetError(f"cache {self.cache_path} does not match the map; delete it")
        self.domains = np.array([entry_domain(e) for e in self.entries], dtype=np.int64)
        self._arrays: dict[str, np.ndarray] | None = None
        self.windows = self._make_windows(np.load(self.cache_path / "weight.npy", mmap_mode="r"))

    def _remove_stale(self, cache_root: Path, split: str) -> None:
        for p in cache_root.glob(f"{split}-*"):
            if p != self.cache_path and p.is_dir():
                shutil.rmtree(p)  # open memory maps elsewhere stay valid (POSIX)
                log.info("removed stale feature cache %s", p)

    def _make_windows(self, weight: np.ndarray) -> np.ndarray:
        """(W, 2) int64 rows (entry, start); ``min_valid_frames`` counts frames with weight > 0
        (an entry's weight scales the loss, not which windows exist)."""
        cum = np.concatenate([[0.0], np.cumsum(np.asarray(weight) > 0, dtype=np.float64)])
        rows = []
        for e in range(len(self.entries)):
            a, b = int(self.starts[e]), int(self.starts[e + 1])
            length = b - a
            if length == 0:
                continue
            s = np.arange(0, max(length - self.window, 0) + 1, self.hop)
            if s[-1] + self.window < length:
                s = np.append(s, s[-1] + self.hop)
            ends = np.minimum(s + self.window, length)
            n_w = cum[a + ends] - cum[a + s]
            keep = s[n_w >= self.min_valid_frames - 1e-6]
            rows.append(np.stack([np.full(len(keep), e), keep], axis=1))
        out = np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 2), np.int64)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """The split's cached arrays, memory-mapped (features (N, 25, 18), valid (N,),
        target (N, 22, 6), weight (N,)); entry e spans rows ``starts[e]:starts[e + 1]``."""
        if self._arrays is None:
            self._arrays = {k: np.load(self.cache_path / f"{k}.npy", mmap_mode="r")
                            for k in _CACHE_ARRAYS}
        return self._arrays

    def __getstate__(self) -> dict:  # workers reopen the memory maps instead of pickling data
        state = self.__dict__.copy()
        state["_arrays"] = None
        return state

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        e, s = (int(x) for x in self.windows[i])
        arr = self.arrays()
        a = int(self.starts[e]) + s
        n = min(self.window, int(self.starts[e + 1]) - a)
        S = self.window
        feats = np.zeros((S, NUM_KEYPOINTS, NUM_FEATURES), dtype=np.float32)
        valid = np.zeros(S, dtype=bool)
        target = np.zeros((S, NUM_SLOTS, 6), dtype=np.float32)
        target[:, 1:] = _IDENTITY_6D
        weight = np.zeros(S, dtype=np.float32)
        feats[:n] = arr["features"][a:a + n]
        valid[:n] = arr["valid"][a:a + n]
        target[:n] = arr["target"][a:a + n]
        weight[:n] = arr["weight"][a:a + n]
        return {
            "features": torch.from_numpy(feats),
            "valid": torch.from_numpy(valid),
            "target": torch.from_numpy(target),
            "weight": torch.from_numpy(weight),
            "offsets": torch.from_numpy(self.offsets[e].copy()),
            "has_root_rotation": torch.tensor(bool(self.has_root_rotation[e])),
            "domain": torch.tensor(int(self.domains[e]), dtype=torch.int64),
            "entry": torch.tensor(e, dtype=torch.int64),
            "start": torch.tensor(s, dtype=torch.int64),
        }


def feature_stats(dataset: WindowDataset, chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std (each (450,) float32 tensors) of the features over the weighted frames of
    the dataset's split (each frame once, whatever the windows), for
    ``MotionTransformer.set_input_normalization``."""
    arr = dataset.arrays()
    d = NUM_KEYPOINTS * NUM_FEATURES
    total = np.zeros(d, dtype=np.float64)
    total_sq = np.zeros(d, dtype=np.float64)
    count = 0
    n = arr["weight"].shape[0]
    for a in range(0, n, chunk):
        w = np.asarray(arr["weight"][a:a + chunk]) > 0
        if not w.any():
            continue
        x = np.asarray(arr["features"][a:a + chunk])[w].reshape(-1, d).astype(np.float64)
        total += x.sum(0)
        total_sq += (x * x).sum(0)
        count += x.shape[0]
    if count == 0:
        raise DatasetError(f"the {dataset.split} split has no usable (weighted) frames")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    return torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(std.astype(np.float32))
