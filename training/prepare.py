"""``blaze2cap prepare``: build a training dataset folder from TotalCapture or a seed HF folder.

From the shared TotalCapture package (``--totalcapture DIR``), for every BlazePose file:

* align to the GT with the file's measured offset (BlazePose frame i <-> GT frame i + offset)
  and keep the overlap;
* targets in the camera frame: ``rotations_to_slots(R @ G_world, hips position)``;
* per-frame flags (aligned / in view / tracked / clean, see ``training.totalcapture``);
* training sequences: every stride s in ``--strides`` and start offset o < s (60/30/20 fps),
  the landmarks' anchor channels and slot 0's displacement recomputed on the kept frames,
  plus a left/right mirrored copy (unless ``--no-mirror``);
* validation sequences (``--val``, default S2_freestyle2, all cameras): stride 1, no mirror.
  The split is by sequence, never by frame.

With ``--engine DIR`` (and ``--engine-weight W``), the clips of a data-engine folder
(``blaze2cap synth``: real BlazePose on rendered bodies) become extra training entries with a
``weight`` key (see :func:`_engine_entries` and ``engine.data``).

From a folder in the seed's Hugging Face layout (``--hf DIR``): (F, 25, 7) landmarks and
(F, 22, 6) root-delta targets are converted to this layout (see :func:`convert_hf_landmarks`
and :func:`convert_hf_target`); unsafe or missing paths are refused.

Output ``DS/``: ``dataset_map.json`` (JSON list, the seed's keys plus ours: see
``engine.data``), ``blaze_augmented/``, ``gt_augmented/``, ``flags_augmented/``, each file
written atomically.
"""
from __future__ import annotations

import argparse
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine import rotations as rot
from engine.data import (load_npy, ALL_FLAGS, FLAG_ALIGNED, FLAG_CLEAN, FLAG_IN_VIEW, FLAG_TRACKED, MAP_NAME, load_dataset_map,
                         mirror_offsets, mirror_positions, mirror_rotations, safe_path,
                         save_npy_atomic, subsample_landmarks, write_json_atomic)
from engine.errors import DatasetError
from engine.features import DEFAULT_ASPECT, mirror_landmarks
from engine.kinematics import rotations_to_slots
from engine.skeleton import (EVAL_JOINT_INDICES, CH_ANCHOR, CH_ANCHOR_COPY, CH_IMAGE, CH_VIS, CH_WORLD, CH_WORLD_VIS,
                             FEATURE_LANDMARK_INDICES, NUM_BLAZEPOSE, NUM_CHANNELS, NUM_SLOTS)

from . import totalcapture as tc

log = logging.getLogger(__name__)

DEFAULT_VAL = ("S2_freestyle2",)
HF_NUM_KEYPOINTS = len(FEATURE_LANDMARK_INDICES)  # 25
HF_NUM_CHANNELS = 7
_HF_NAME = re.compile(r"(S\d+)_([A-Za-z]+\d*)_cam(\d+)_seg(\d+)_s(\d+)_o(\d+)")


@dataclass(frozen=True)
class PrepareConfig:
    """Options of ``prepare --totalcapture`` (one per command-line flag)."""

    val_sequences: tuple[str, ...] = DEFAULT_VAL  # validation sequences (split_test)
    strides: tuple[int, ...] = (1, 2, 3)          # temporal strides of training entries
    mirror: bool = True                           # add left/right mirrored training entries
    sequences: tuple[str, ...] | None = None      # only these sequences (None: all)
    cameras: tuple[int, ...] | None = None        # only these cameras (None: all)
    synthetic: bool = False                       # add synthetic inputs for every GT sequence
    synthetic_strides: tuple[int, ...] = (1, 2)   # strides of the synthetic entries (offset 0)
    seed: int = 0                                 # seed of the synthetic noise
    engine: Path | None = None                    # a data-engine folder (blaze2cap synth)
    engine_weight: float = 1.0                    # loss weight of the data-engine entries


@dataclass
class Summary:
    """What a prepare run wrote."""

    entries: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})
    frames: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})
    clean_frames: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})
    skipped: list[str] = field(default_factory=list)
    trimmed: int = 0

    def add(self, entry: dict, flags: np.ndarray) -> None:
        split = "test" if entry["split_test"] else "train"
        need = FLAG_ALIGNED | FLAG_CLEAN
        self.entries[split] += 1
        self.frames[split] += int(len(flags))
        self.clean_frames[split] += int(((flags & need) == need).sum())


def _rel(*parts: str) -> str:
    return "/".join(parts)


def _write_entry(out: Path, subject: str, action: str, camera: int, tag: str,
                 lm: np.ndarray, target: np.ndarray, flags: np.ndarray) -> dict:
    """Write one (landmarks, target, flags) triple; returns the relative paths."""
    base = (subject, action, f"cam{camera}")
    stem = f"{subject}_{action}_cam{camera}_seg0_{tag}.npy"
    paths = {
        "source": _rel("blaze_augmented", *base, f"blaze_{stem}"),
        "target": _rel("gt_augmented", *base, f"gt_{stem}"),
        "flags": _rel("flags_augmented", *base, f"flags_{stem}"),
    }
    save_npy_atomic(out / paths["source"], lm.astype(np.float32))
    save_npy_atomic(out / paths["target"], target.astype(np.float32))
    save_npy_atomic(out / paths["flags"], flags.astype(np.uint8))
    return paths


def prepare_totalcapture(tc_dir: Path, out: Path, cfg: PrepareConfig = PrepareConfig()) -> Summary:
    """Build ``out`` from the shared TotalCapture package; returns the summary."""
    tc_dir, out = Path(tc_dir), Path(out)
    cams = tc.load_cameras(tc_dir)
    alignment = tc.load_alignment(tc_dir)
    skel = tc.load_skeleton_offsets(tc_dir)
    files = tc.list_blazepose_files(tc_dir)
    unknown_val = set(cfg.val_sequences) - {f.sequence for f in files}
    if unknown_val:
        raise DatasetError(f"no BlazePose files for validation sequence(s) "
                           f"{', '.join(sorted(unknown_val))}")
    if cfg.sequences is not None:
        unknown = set(cfg.sequences) - {f.sequence for f in files}
        if unknown:
            raise DatasetError(f"no BlazePose files for sequence(s) {', '.join(sorted(unknown))}")
        files = [f for f in files if f.sequence in cfg.sequences]
    if cfg.cameras is not None:
        files = [f for f in files if f.camera in cfg.cameras]
    if not files:
        raise DatasetError(f"no BlazePose files selected in {tc_dir / 'blazepose'}")
    for s in cfg.strides:
        if s < 1:
            raise DatasetError(f"strides must be >= 1, got {s}")

    summary = Summary()
    entries: list[dict] = []
    gt_cache: dict[str, tc.GroundTruth] = {}
    for bf in files:
        seq = bf.sequence
        if seq not in gt_cache:
            gt_cache[seq] = tc.load_gt(tc_dir, seq)
        gt = gt_cache[seq]
        if gt.orientations is None:
            if seq not in summary.skipped:
                log.info("skipping %s: its ground truth has no orientations", seq)
                summary.skipped.append(seq)
            continue
        if bf.name not in alignment:
            raise DatasetError(f"alignment.json has no offset for {bf.name}")
        if seq not in skel:
            raise DatasetError(f"skeleton.json has no offsets for {seq}")
        offset = int(alignment[bf.name]["offset_frames"])
        cam = cams[bf.camera]
        lm_all = load_npy(bf.path, "BlazePose landmarks")
        if lm_all.shape[1:] != (NUM_BLAZEPOSE, NUM_CHANNELS):
            raise DatasetError(f"{bf.path} must have shape (frames, 33, 10), got {lm_all.shape}")
        flags_all = tc.frame_flags(lm_all, gt.positions, cam, offset)
        b0, g0, n = tc.overlap(len(lm_all), len(gt.positions), offset)
        if n == 0:
            summary.skipped.append(bf.name)
            log.info("skipping %s: no overlap with the ground truth", bf.name)
            continue
        lm = lm_all[b0:b0 + n]
        flags = flags_all[b0:b0 + n]
        glob = tc.rotations_to_camera(tc.gt_rotations_world(gt)[g0:g0 + n], cam)   # (n, 21, 3, 3)
        hips = tc.world_to_camera(gt.positions[g0:g0 + n, 0], cam)                 # (n, 3)
        offsets = skel[seq]
        is_val = seq in cfg.val_sequences
        mirrors = (False, True) if cfg.mirror else (False,)
        variants = [(1, 0, False)] if is_val else [
            (s, o, m) for s in cfg.strides for o in range(s) for m in mirrors]
        mirrored = None
        for stride, start, mirror in variants:
            idx = np.arange(start, n, stride)
            if len(idx) == 0:
                continue
            lm_s = subsample_landmarks(lm, stride, start)
            g_s, h_s, off_s = glob[idx], hips[idx], offsets
            if mirror:
                if mirrored is None:
                    mirrored = (mirror_rotations(glob), mirror_positions(hips))
                lm_s = mirror_landmarks(lm_s)
                g_s, h_s, off_s = mirrored[0][idx], mirrored[1][idx], mirror_offsets(offsets)
            target = rotations_to_slots(g_s, h_s)
            tag = f"s{stride}_o{start}" + ("_m" if mirror else "")
            paths = _write_entry(out, bf.subject, bf.action, bf.camera, tag, lm_s, target,
                                 flags[idx])
            entry = {
                "source": paths["source"], "target": paths["target"], "subject": bf.subject,
                "split_train": not is_val, "split_test": is_val,
                "sequence": seq, "camera": bf.camera, "stride": stride, "offset": start,
                "mirror": mirror, "frames": int(len(idx)), "fps": tc.GT_FPS / stride,
                "aspect": cam.width / cam.height, "focal": cam.fx / max(cam.width, cam.height),
                "flags": paths["flags"],
                "skeleton_offsets": np.round(off_s.astype(np.float64), 7).tolist(),
                "has_root_rotation": True, "source_format": "blaze2cap",
                "alignment_offset_frames": offset,
            }
            entries.append(entry)
            summary.add(entry, flags[idx])
    if cfg.synthetic:
        entries += _synthetic_entries(tc_dir, out, cfg, cams, skel, summary)
    if cfg.engine is not None:
        entries += _engine_entries(Path(cfg.engine), out, cfg, summary)
    if not entries:
        raise DatasetError("nothing to write: every selected sequence was skipped")
    write_json_atomic(out / MAP_NAME, entries)
    return summary


def _synthetic_entries(tc_dir: Path, out: Path, cfg: PrepareConfig, cams: dict, skel: dict,
                       summary: Summary) -> list[dict]:
    """Training entries with synthetic BlazePose input (``training.synthetic``) for every GT
    sequence with orientations, seen from every camera; validation sequences excluded. The
    noise model is fitted on the real training pairs and saved as ``noise_model.json``."""
    from . import synthetic as syn

    model = syn.fit_from_totalcapture(tc_dir, tuple(cfg.val_sequences))
    model.save(out / "noise_model.json")
    rng = np.random.default_rng(cfg.seed)
    entries = []
    for gt_path in sorted((tc_dir / "gt").glob("*.npz")):
        seq = gt_path.stem
        if seq in cfg.val_sequences or (cfg.sequences is not None and seq not in cfg.sequences):
            continue
        gt = tc.load_gt(tc_dir, seq)
        if gt.orientations is None or seq not in skel:
            continue
        subject, action = seq.split("_", 1)
        g_world = tc.gt_rotations_world(gt)
        for cam_id, cam in sorted(cams.items()):
            if cfg.cameras is not None and cam_id not in cfg.cameras:
                continue
            glob = tc.rotations_to_camera(g_world, cam)
            pos = tc.world_to_camera(gt.positions, cam)
            camd = dict(fx=cam.fx, fy=cam.fy, cx=cam.cx, cy=cam.cy,
                        image_width=cam.width, image_height=cam.height)
            lm = syn.synthesize(pos, glob, camd, model, rng)
            uv = tc.project(pos[:, list(EVAL_JOINT_INDICES)], cam)
            in_view = (np.isfinite(uv).all(-1) & (uv[..., 0] >= 0) & (uv[..., 0] < cam.width)
                       & (uv[..., 1] >= 0) & (uv[..., 1] < cam.height)).all(-1)
            det = tc.detected_frames(lm)
            flags = (FLAG_ALIGNED | np.where(in_view, FLAG_IN_VIEW, 0)
                     | np.where(in_view & det, FLAG_TRACKED | FLAG_CLEAN, 0)).astype(np.uint8)
            for stride in cfg.synthetic_strides:
                idx = np.arange(0, len(lm), stride)
                target = rotations_to_slots(glob[idx], pos[idx, 0])
                paths = _write_entry(out, subject, action, cam_id, f"s{stride}_o0_syn",
                                     subsample_landmarks(lm, stride, 0), target, flags[idx])
                entry = {
                    "source": paths["source"], "target": paths["target"], "subject": subject,
                    "split_train": True, "split_test": False, "sequence": seq, "camera": cam_id,
                    "stride": stride, "offset": 0, "mirror": False, "frames": int(len(idx)),
                    "fps": tc.GT_FPS / stride, "aspect": cam.width / cam.height,
                    "focal": cam.fx / max(cam.width, cam.height), "flags": paths["flags"],
                    "skeleton_offsets": np.round(skel[seq].astype(np.float64), 7).tolist(),
                    "has_root_rotation": True, "source_format": "blaze2cap", "synthetic": True,
                }
                entries.append(entry)
                summary.add(entry, flags[idx])
    log.info("synthetic: %d entries", len(entries))
    return entries


def _engine_entries(engine_dir: Path, out: Path, cfg: PrepareConfig, summary: Summary) -> list[dict]:
    """Training entries from a data-engine folder (``blaze2cap synth``): real BlazePose on
    rendered bodies. Every finished clip gives the same variants as a real training file
    (strides, start offsets, mirror), with the clip's own skeleton offsets and camera, and
    ``weight`` = ``cfg.engine_weight``. Clips whose motion is a validation sequence are left
    out (the split stays by motion). Flags as for the real files, with 2D distances measured
    at a long image side of 1920 pixels."""
    from dataengine.engine import CLIP_DIR, read_clip, read_manifest

    if not (cfg.engine_weight >= 0 and np.isfinite(cfg.engine_weight)):
        raise DatasetError(f"--engine-weight must be a finite number >= 0, got {cfg.engine_weight}")
    manifest = read_manifest(engine_dir)
    if not manifest:
        raise DatasetError(f"{engine_dir} has no finished data-engine clips (manifest.jsonl)")
    entries, left_out = [], 0
    mirrors = (False, True) if cfg.mirror else (False,)
    for m in manifest:
        if m["sequence"] in cfg.val_sequences:
            left_out += 1
            continue
        clip = read_clip(safe_path(engine_dir, f"{CLIP_DIR}/{m['name']}.npz", "engine clip"))
        lm, pos = clip["landmarks"], clip["positions"].astype(np.float64)
        glob, off = clip["rotations"].astype(np.float64), clip["offsets"].astype(np.float64)
        fx, fy, cx, cy, w, h = (float(v) for v in clip["camera"])
        k = 1920.0 / max(w, h)
        cam = tc.Camera(camera_id=0, R=np.eye(3), t=np.zeros(3), fx=fx * k, fy=fy * k, cx=cx * k,
                        cy=cy * k, width=int(round(w * k)), height=int(round(h * k)))
        flags = tc.frame_flags(lm, pos, cam, 0)
        cam_id = int(m["camera"].get("tc_camera") or 0)
        for stride, start, mirror in [(s, o, mr) for s in cfg.strides for o in range(s) for mr in mirrors]:
            idx = np.arange(start, len(lm), stride)
            if len(idx) == 0:
                continue
            lm_s, g_s, p_s, off_s = subsample_landmarks(lm, stride, start), glob[idx], pos[idx, 0], off
            if mirror:
                lm_s, g_s = mirror_landmarks(lm_s), mirror_rotations(g_s)
                p_s, off_s = mirror_positions(p_s), mirror_offsets(off)
            tag = f"s{stride}_o{start}" + ("_m" if mirror else "")
            paths = _write_entry(out, "engine", m["name"], cam_id, tag, lm_s,
                                 rotations_to_slots(g_s, p_s), flags[idx])
            entry = {
                "source": paths["source"], "target": paths["target"], "subject": "engine",
                "split_train": True, "split_test": False, "sequence": m["sequence"],
                "camera": cam_id, "stride": stride, "offset": start, "mirror": mirror,
                "frames": int(len(idx)), "fps": float(m["fps"]) / stride, "aspect": w / h,
                "focal": fx / max(w, h), "flags": paths["flags"],
                "skeleton_offsets": np.round(off_s, 7).tolist(), "has_root_rotation": True,
                "source_format": "dataengine", "engine_clip": m["name"],
                "weight": float(cfg.engine_weight),
            }
            entries.append(entry)
            summary.add(entry, flags[idx])
    if left_out:
        summary.skipped.append(f"{left_out} engine clip(s) of validation motions")
    log.info("data engine: %d entries from %d clips", len(entries), len(manifest) - left_out)
    return entries


# ---------------------------------------------------------------------------------------------
# Seed Hugging Face layout
# ---------------------------------------------------------------------------------------------
def convert_hf_landmarks(x: np.ndarray) -> np.ndarray:
    """Seed (F, 25, 7) landmarks -> (F, 33, 10).

    Seed channels: world x, y, z (metres), image x, y (normalised), visibility, anchor flag
    (0 = track start). The 25 keypoints are ``engine.skeleton.FEATURE_LANDMARKS`` in order;
    the 8 other landmarks stay zero, relative depth (channel 7) is 0, visibility fills
    channels 3 and 8 and the anchor flag channels 4 and 9. Frames without a detection (all
    zero) stay all zero.
    """
    f = x.shape[0]
    out = np.zeros((f, NUM_BLAZEPOSE, NUM_CHANNELS), dtype=np.float32)
    idx = list(FEATURE_LANDMARK_INDICES)
    out[:, idx, CH_WORLD] = x[:, :, 0:3]
    out[:, idx, CH_IMAGE] = x[:, :, 3:5]
    out[:, idx, CH_WORLD_VIS] = x[:, :, 5]
    out[:, idx, CH_VIS] = x[:, :, 5]
    detected = (x != 0).any(axis=(1, 2))
    anchor = np.where(detected[:, None], x[:, :, 6], 0.0)
    out[:, idx, CH_ANCHOR] = anchor
    out[:, idx, CH_ANCHOR_COPY] = anchor
    return out


def convert_hf_target(y: np.ndarray) -> np.ndarray:
    """Seed (F, 22, 6) targets -> ours (F, 22, 6).

    Seed: slot 0 = (dx, dy, dz, 0, 0, 0), slot 1 = the root rotation's change from the
    previous frame as 6D (all zero, or degenerate, on a segment's first frame), slots 2..21
    local rotations. Ours: slot 0 = (dx, dy, dz, position) with the position accumulated
    from 0 (``p_0 = 0``, ``p_t = p_{t-1} + d_t``); slot 1 = the root rotation integrated from
    identity, ``R_t = R_{t-1} @ Delta_t`` (a degenerate delta counts as identity). The
    absolute root pose of the seed data is unknown: entries say ``has_root_rotation`` false.
    """
    y = np.nan_to_num(np.asarray(y, dtype=np.float64))
    out = y.copy()
    d = y[:, 0, 0:3]
    pos = np.cumsum(d, axis=0) - d[:1]
    out[:, 0, 3:6] = pos
    d6 = y[:, 1]
    degenerate = ((np.linalg.norm(d6[:, 0:3], axis=-1) < 1e-6)
                  | (np.linalg.norm(np.cross(d6[:, 0:3], d6[:, 3:6]), axis=-1) < 1e-6))
    delta = rot.rotation_6d_to_matrix(d6)
    delta[degenerate] = np.eye(3)
    cur = np.eye(3)
    root = np.empty_like(delta)
    for t in range(len(delta)):  # sequential by nature; 3x3 products are cheap
        cur = cur @ delta[t]
        root[t] = cur
    out[:, 1] = rot.matrix_to_rotation_6d(root)
    return out.astype(np.float32)


def _hf_meta(source: str) -> dict:
    m = _HF_NAME.search(Path(source).name)
    if m is None:
        return {"sequence": Path(source).stem, "camera": None, "stride": 1, "offset": 0}
    subject, action, cam, _seg, stride, offset = m.groups()
    return {"sequence": f"{subject}_{action}", "camera": int(cam), "stride": int(stride),
            "offset": int(offset)}


def _flags_path(source: str) -> str:
    parts = source.replace("\\", "/").split("/")
    if parts[0] == "blaze_augmented":
        parts = parts[1:]
    name = parts[-1]
    parts[-1] = "flags_" + (name[len("blaze_"):] if name.startswith("blaze_") else name)
    return _rel("flags_augmented", *parts)


def prepare_hf(hf_dir: Path, out: Path) -> Summary:
    """Convert a seed Hugging Face folder (``dataset_map.json``, ``blaze_augmented/``,
    ``gt_augmented/``) into ``out``; returns the summary (``trimmed`` counts entries whose
    landmark and target lengths differed and were cut to the shorter)."""
    hf_dir, out = Path(hf_dir), Path(out)
    if hf_dir.resolve() == out.resolve():
        raise DatasetError("--out must differ from the --hf folder (it would be overwritten)")
    entries_in = load_dataset_map(hf_dir)
    summary = Summary()
    entries = []
    for i, e in enumerate(entries_in):
        src = safe_path(hf_dir, e["source"], f"entry {i} source")
        tgt = safe_path(hf_dir, e["target"], f"entry {i} target")
        x = load_npy(src, f"the landmarks of entry {i}")
        y = load_npy(tgt, f"the target of entry {i}")
        if x.ndim != 3 or x.shape[1:] != (HF_NUM_KEYPOINTS, HF_NUM_CHANNELS):
            raise DatasetError(
                f"entry {i} ({e['source']}) must have shape (frames, 25, 7), got {x.shape}")
        if y.ndim != 3 or y.shape[1:] != (NUM_SLOTS, 6):
            raise DatasetError(
                f"entry {i} ({e['target']}) must have shape (frames, 22, 6), got {y.shape}")
        if len(x) != len(y):
            log.warning("entry %d (%s): %d landmark frames but %d target frames; trimmed to %d",
                        i, e["source"], len(x), len(y), min(len(x), len(y)))
            summary.trimmed += 1
            n = min(len(x), len(y))
            x, y = x[:n], y[:n]
        if len(x) == 0:
            summary.skipped.append(e["source"])
            continue
        x = np.nan_to_num(x.astype(np.float32))
        lm = convert_hf_landmarks(x)
        target = convert_hf_target(y)
        detected = (x != 0).any(axis=(1, 2))
        flags = np.where(detected, ALL_FLAGS, FLAG_ALIGNED).astype(np.uint8)
        fpath = _flags_path(e["source"])
        # Output paths mirror the input's, which were checked to be safe above.
        save_npy_atomic(out / e["source"], lm)
        save_npy_atomic(out / e["target"], target)
        save_npy_atomic(out / fpath, flags)
        meta = _hf_meta(e["source"])
        entry = {
            "source": e["source"], "target": e["target"], "subject": e.get("subject"),
            "split_train": bool(e.get("split_train", False)),
            "split_test": bool(e.get("split_test", False)),
            **meta, "mirror": False, "frames": int(len(lm)),
            "fps": tc.GT_FPS / meta["stride"], "aspect": DEFAULT_ASPECT, "flags": fpath,
            "skeleton_offsets": None, "has_root_rotation": False, "source_format": "hf",
        }
        entries.append(entry)
        summary.add(entry, flags)
    if not entries:
        raise DatasetError(f"{hf_dir / MAP_NAME} lists no usable entries")
    write_json_atomic(out / MAP_NAME, entries)
    return summary


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def _csv(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _csv_int(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in _csv(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from err


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--totalcapture", type=Path, metavar="DIR",
                     help="the shared TotalCapture package (../shared/data/totalcapture)")
    src.add_argument("--hf", type=Path, metavar="DIR",
                     help="a folder in the seed's Hugging Face layout (dataset_map.json, "
                          "blaze_augmented/, gt_augmented/)")
    parser.add_argument("--out", type=Path, required=True, metavar="DS", help="output folder")
    parser.add_argument("--val", type=_csv, default=DEFAULT_VAL, metavar="SEQ,...",
                        help="validation sequences, all cameras (default: S2_freestyle2)")
    parser.add_argument("--strides", type=_csv_int, default=(1, 2, 3), metavar="S,...",
                        help="temporal strides of training entries (default: 1,2,3)")
    parser.add_argument("--no-mirror", dest="mirror", action="store_false",
                        help="do not add left/right mirrored training entries")
    parser.add_argument("--sequences", type=_csv, default=None, metavar="SEQ,...",
                        help="only these sequences, e.g. S1_freestyle1 (default: all)")
    parser.add_argument("--cameras", type=_csv_int, default=None, metavar="C,...",
                        help="only these cameras, e.g. 1,4 (default: all)")
    parser.add_argument("--synthetic", action="store_true",
                        help="add synthetic BlazePose input for every ground-truth sequence and "
                             "camera (noise model fitted on the real training pairs)")
    parser.add_argument("--synthetic-strides", type=_csv_int, default=(1, 2), metavar="S,...",
                        help="strides of the synthetic entries (default: 1,2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic noise")
    parser.add_argument("--engine", type=Path, default=None, metavar="DIR",
                        help="also add the clips of a data-engine folder (blaze2cap synth) as "
                             "training entries (with --totalcapture)")
    parser.add_argument("--engine-weight", type=float, default=1.0, metavar="W",
                        help="loss weight of the data-engine entries (real entries weigh 1; "
                             "default %(default)s)")


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    if args.hf is not None:
        if args.engine is not None:
            raise DatasetError("--engine goes with --totalcapture, not with --hf")
        summary = prepare_hf(args.hf, args.out)
    else:
        cfg = PrepareConfig(val_sequences=tuple(args.val), strides=tuple(args.strides),
                            mirror=args.mirror,
                            sequences=tuple(args.sequences) if args.sequences else None,
                            cameras=tuple(args.cameras) if args.cameras else None,
                            synthetic=args.synthetic, synthetic_strides=tuple(args.synthetic_strides),
                            seed=args.seed, engine=args.engine,
                            engine_weight=args.engine_weight)
        summary = prepare_totalcapture(args.totalcapture, args.out, cfg)
    dt = time.perf_counter() - t0
    for split in ("train", "test"):
        print(f"{split}: {summary.entries[split]} entries, {summary.frames[split]} frames "
              f"({summary.clean_frames[split]} clean)")
    if summary.skipped:
        print(f"skipped: {', '.join(summary.skipped)}")
    if summary.trimmed:
        print(f"trimmed: {summary.trimmed} entries had landmark/target length mismatches")
    print(f"wrote {args.out / MAP_NAME} in {dt:.1f} s")
    return 0
