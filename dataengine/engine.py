"""The clip loop: seed -> manifest entry -> posed body -> frames -> BlazePose -> one file.

Output folder ``OUT`` (default ``~/.cache/blaze2cap/synth``):

* ``synth.json``: the run's settings (seed, frames per clip, image size, view mix, engine
  version). A later run into the same folder must use the same settings (more clips are fine).
* ``clips/clip_{i:06d}.npz`` (one per clip, written atomically), arrays:

  ==============  =======================  =================================================
  ``landmarks``   (K, 33, 10) float32      BlazePose exactly as ``blaze2cap extract`` writes
                                           them (``capture.blazepose.PoseTracker``: the
                                           run's ``pose_model``, video mode, smoothing on)
  ``positions``   (K, 21, 3) float32       TC joints of the rendered body, camera frame
                                           (x right, y down, z forward), metres
  ``rotations``   (K, 21, 3, 3) float32    TC global rotations (bone-local -> camera)
  ``offsets``     (21, 3) float32          skeleton offsets of the rendered body (parent's
                                           frame, metres): FK reproduces ``positions``
  ``camera``      (6,) float64             fx, fy, cx, cy, width, height (pixels)
  ``entry``       str                      this clip's manifest entry (JSON)
  ==============  =======================  =================================================

* ``manifest.jsonl``: one JSON line per finished clip (its :func:`clip_entry` plus the file
  name, frames with a detection and seconds). Everything that makes a clip is in its entry
  (seed, clip index, body, motion sequence and frame range, root scale, camera, look), and
  the entry follows from ``(seed, clip index)`` alone, so any clip can be regenerated.

Resume: a clip is finished when its file exists; a restarted run skips finished clips (and
re-adds a manifest line lost when a run was killed between the file and the line). One run
at a time per folder.
Frames: clip i shows motion frames ``start, start + step, ...`` (about 60 or 30 fps: ``step``
1 or 2 for the 60 fps TC sequences; BVH motion (:mod:`dataengine.motion`) at its own rate).
"""
from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from engine.atomic import atomic_write_bytes, write_json_atomic
from engine.errors import DatasetError, InputError
from engine.skeleton import EVAL_JOINT_INDICES, JOINT_INDEX

from .bodies import STATURE_MEAN, STATURE_RANGE, STATURE_STD, BodyParams, PosedClip
from .cameras import View, ViewConfig, random_view, tc_view
from .motion import Motion, bvh_motion, bvh_names, file_digest, tc_motion
from .render import Look, clothing_regions, sample_look

log = logging.getLogger(__name__)

ENGINE_VERSION = 1
#: A clip stops after this many frames when BlazePose has found nobody in any of them (its
#: entry then says ``aborted``; the frames made so far are kept).
ABORT_AFTER = 30
MANIFEST_NAME = "manifest.jsonl"
SETTINGS_NAME = "synth.json"
CLIP_DIR = "clips"


def default_out_dir() -> Path:
    """``~/.cache/blaze2cap/synth``: outside the repository, never committed."""
    return Path.home() / ".cache" / "blaze2cap" / "synth"


@dataclass(frozen=True)
class SynthConfig:
    """Settings of a run (the ones that change what a clip contains are in ``synth.json``)."""

    totalcapture: Path                     # the shared TotalCapture package
    seed: int = 0
    frames_per_clip: int = 120
    view: ViewConfig = field(default_factory=ViewConfig)
    step_30fps_fraction: float = 0.3       # share of clips at 30 fps (every second TC frame)
    sequences: tuple[str, ...] | None = None   # motion sequences to draw from (None: all with
                                               # orientations)
    antialiasing: str = "OFF"              # Workbench render_aa: OFF, FXAA, 5, 8, 11, 16, 32
    bvh: tuple[Path, ...] = ()             # BVH files whose motion joins the TC sequences
                                           # (named ``bvh:<file stem>``)
    pose_model: str = "heavy"              # BlazePose model (capture.blazepose.PoseConfig.model):
                                           # heavy = the real pairs' model and extract's default

    def settings(self) -> dict:
        """What must match between runs into one folder (BVH files by name and content)."""
        out = {"engine_version": ENGINE_VERSION, "seed": self.seed,
               "frames_per_clip": self.frames_per_clip, "view": asdict(self.view),
               "step_30fps_fraction": self.step_30fps_fraction,
               "sequences": list(self.sequences) if self.sequences else None,
               "antialiasing": self.antialiasing, "pose_model": self.pose_model}
        if self.bvh:
            out["bvh"] = {name: file_digest(p) for name, p in bvh_names(self.bvh).items()}
        return out


def clip_name(i: int) -> str:
    return f"clip_{i:06d}"


# ---------------------------------------------------------------------------------------------
# One clip (runs in a worker process)
# ---------------------------------------------------------------------------------------------
class ClipMaker:
    """Holds the expensive state of one process: Anny, the Blender scene, TC motion."""

    def __init__(self, cfg: SynthConfig):
        from training import totalcapture as tc

        from .bodies import Retargeter

        self.cfg = cfg
        self.tc = tc
        self.retarget = Retargeter()
        self.cameras = tc.load_cameras(cfg.totalcapture)
        self.motions = motion_catalogue(cfg.totalcapture, cfg.sequences, cfg.bvh)
        self._bvh = bvh_names(cfg.bvh)
        self._loaded: Motion | None = None
        self._renderer = None
        self.backend: str | None = None   # what Blender renders with, known after a frame

    def _motion(self, name: str) -> Motion:
        # one motion at a time: clips are drawn at random, memory stays small
        if self._loaded is None or self._loaded.name != name:
            self._loaded = (bvh_motion(self._bvh[name], name) if name in self._bvh
                            else tc_motion(self.cfg.totalcapture, name))
        return self._loaded

    def renderer(self):
        if self._renderer is None:
            from .render import Renderer

            n_vertices = self.retarget.model.template_vertices.shape[-2]
            self._renderer = Renderer(self.retarget.faces, n_vertices, self.cfg.antialiasing)
        return self._renderer

    def plan(self, index: int) -> tuple[dict, PosedClip]:
        """The manifest entry of clip ``index`` (from the seed alone) and its posed body."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, index])
        names = sorted(self.motions)
        lengths = np.array([self.motions[n][0] for n in names], dtype=np.float64)
        fps = np.array([self.motions[n][1] for n in names], dtype=np.float64)
        coarse = rng.random() < cfg.step_30fps_fraction
        # about 60 or 30 fps whatever the motion's rate (TC: every frame or every second one)
        steps = np.maximum(1, np.round(fps / (30.0 if coarse else 60.0))).astype(int)
        spans = (cfg.frames_per_clip - 1) * steps + 1
        ok = lengths >= spans
        if not ok.any():
            raise InputError(f"no motion sequence has {int(spans.min())} frames for "
                             f"{cfg.frames_per_clip} frames per clip")
        p = np.where(ok, lengths * (60.0 / fps), 0.0)   # by duration
        k = int(rng.choice(len(names), p=p / p.sum()))
        seq, step, span = names[k], int(steps[k]), int(spans[k])
        start = int(rng.integers(0, self.motions[seq][0] - span + 1))
        stature = float(np.clip(rng.normal(STATURE_MEAN, STATURE_STD), *STATURE_RANGE))
        body = self.retarget.with_stature(BodyParams.sample(rng), stature)
        motion = self._motion(seq)
        scale = self.retarget.leg_length(body) / motion.leg_length
        frames = np.arange(start, start + span, step)
        posed = self.retarget.pose(body, motion.rotations[frames], motion.root[frames],
                                   root_scale=scale)
        floor_z = float(np.percentile(posed.vertices[..., 2].min(axis=1), 2))
        height = float(np.percentile(posed.vertices[..., 2].max(axis=1) - floor_z, 90))
        view = None
        if rng.random() < cfg.view.tc_fraction:
            # a real calibration that sees the 12 evaluation joints in most frames (random
            # views put a body at the edge on purpose, in a controlled share of clips)
            for cam_id in rng.permutation(sorted(self.cameras)):
                cand = tc_view(self.cameras[int(cam_id)], cfg.view.size)
                uv = cand.project(cand.to_camera(posed.positions[:, list(EVAL_JOINT_INDICES)]))
                m = 0.03 * cand.width
                inside = ((uv[..., 0] > m) & (uv[..., 0] < cand.width - m) & (uv[..., 1] > m)
                          & (uv[..., 1] < cand.height - m)).all(axis=1)
                if inside.mean() >= 0.8:
                    view = cand
                    break
        if view is None:
            view = random_view(rng, posed.positions[:, 0], floor_z, height, cfg.view)
        xy = posed.positions[:, 0, :2]
        look = sample_look(rng, xy.min(0), xy.max(0))
        entry = {
            "clip": index, "name": clip_name(index), "seed": cfg.seed,
            "engine_version": ENGINE_VERSION, "sequence": seq, "start": start, "step": step,
            "frames": int(len(frames)), "fps": float(fps[k]) / step, "body": body.to_dict(),
            "stature_m": round(stature, 4),
            "root_scale": round(scale, 6), "floor_z": round(floor_z, 6),
            "camera": view.to_dict(), "look": look.to_dict(),
        }
        return entry, posed

    def make(self, index: int, view: View | None = None) -> dict:
        """Render and label clip ``index``; returns its entry with the arrays (not written).
        ``view`` replaces the clip's own camera (to look at a clip from a chosen place)."""
        from capture.blazepose import PoseConfig, PoseTracker

        t0 = time.perf_counter()
        entry, posed = self.plan(index)
        if view is not None:
            entry["camera"] = view.to_dict()
        view = View.from_dict(entry["camera"])
        look = Look.from_dict(entry["look"])
        head = JOINT_INDEX["Head"]
        g0, p0 = posed.rotations[0], posed.positions[0]
        cent = posed.vertices[0][posed.faces].mean(axis=1)
        head_local = (cent - p0[head]) @ g0[head]        # rows: G^T (c - p), TC head frame
        face_joint = self.retarget.group[posed.face_bones]
        regions = clothing_regions(face_joint, head_local, look)
        r = self.renderer()
        r.set_look(look, regions, entry["floor_z"], posed.positions[:, 0].mean(0))
        r.set_camera(view.R, view.t, view.fx, view.cx, view.cy, view.width, view.height)
        rows = np.zeros((len(posed.vertices), 33, 10), dtype=np.float32)
        n = len(rows)
        with PoseTracker(PoseConfig(model=self.cfg.pose_model)) as tracker:
            for k, verts in enumerate(posed.vertices):
                rows[k] = tracker.process(r.render(verts))
                if k + 1 == ABORT_AFTER and not rows[:k + 1].any():
                    n = k + 1  # BlazePose finds nobody: the rest would be rendered in vain
                    entry["aborted"] = f"no person detected in the first {n} frames"
                    break
        rows = rows[:n]
        entry["frames"] = n
        if self.backend is None:
            from .render import gpu_info

            self.backend = gpu_info()
        pos_c = view.to_camera(posed.positions[:n])
        rot_c = view.R @ posed.rotations[:n]
        entry["detected"] = int((rows != 0).any(axis=(1, 2)).sum())
        entry["seconds"] = round(time.perf_counter() - t0, 3)
        arrays = {
            "landmarks": rows, "positions": pos_c.astype(np.float32),
            "rotations": rot_c.astype(np.float32), "offsets": posed.offsets.astype(np.float32),
            "camera": np.array([view.fx, view.fy, view.cx, view.cy, view.width, view.height]),
        }
        return {"entry": entry, "arrays": arrays}


def motion_catalogue(tc_dir: Path, sequences: tuple[str, ...] | None = None,
                     bvh: tuple[Path, ...] = ()) -> dict[str, tuple[int, float]]:
    """{motion: (frames, fps)}: the TC ground truth with orientations (the others are
    skipped: a position-only retarget would invent the twists) and the BVH files (read and
    retargeted here, so a bad file stops the run before any work), ``sequences`` picking
    among both."""
    out: dict[str, tuple[int, float]] = {}
    for path in sorted((Path(tc_dir) / "gt").glob("*.npz")):
        if sequences is not None and path.stem not in sequences:
            continue
        with np.load(path, allow_pickle=False) as d:
            if "orientations" in d.files:
                out[path.stem] = (int(d["positions"].shape[0]), 60.0)
    for name, path in bvh_names(tuple(bvh)).items():
        if sequences is not None and name not in sequences:
            continue
        m = bvh_motion(path, name)
        out[name] = (m.frames, m.fps)
    if not out:
        raise DatasetError(f"no ground-truth sequence with orientations in {Path(tc_dir) / 'gt'}"
                           + (" and no BVH motion" if bvh else ""))
    if sequences is not None and set(sequences) - set(out):
        raise DatasetError("unknown or orientation-less sequence(s): "
                           + ", ".join(sorted(set(sequences) - set(out))))
    return out


def write_clip(out: Path, result: dict) -> Path:
    """Write one clip's npz atomically; returns its path."""
    entry, arrays = result["entry"], result["arrays"]
    path = Path(out) / CLIP_DIR / f"{entry['name']}.npz"

    def _write(f):
        buf = io.BytesIO()
        np.savez_compressed(buf, entry=np.array(json.dumps(entry, sort_keys=True)), **arrays)
        f.write(buf.getvalue())

    atomic_write_bytes(path, _write)
    return path


def read_clip(path: Path) -> dict:
    """A clip file -> dict of its arrays and ``entry`` (dict). No pickles."""
    with np.load(path, allow_pickle=False) as d:
        out = {k: d[k] for k in d.files}
    out["entry"] = json.loads(str(out["entry"]))
    return out


# ---------------------------------------------------------------------------------------------
# The run: settings, manifest, resume, workers
# ---------------------------------------------------------------------------------------------
def read_manifest(out: Path) -> list[dict]:
    """Finished clips' entries (a torn last line of a killed run is dropped)."""
    path = Path(out) / MANIFEST_NAME
    if not path.is_file():
        return []
    entries = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("%s line %d is incomplete (an interrupted run); it is dropped", path, n + 1)
    return entries


def _append_line(path: Path, entry: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _check_settings(out: Path, cfg: SynthConfig) -> None:
    path = out / SETTINGS_NAME
    want = json.loads(json.dumps(cfg.settings()))  # tuples read back as lists
    if path.is_file():
        have = json.loads(path.read_text(encoding="utf-8"))
        have.setdefault("pose_model", "full")  # folders made before the setting existed
        if have != want:
            diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
            raise InputError(f"{out} was generated with other settings ({', '.join(diff)}); "
                             f"use the same settings or another --out folder")
    else:
        write_json_atomic(path, want)


def _sync_manifest(out: Path) -> set[int]:
    """Indices of finished clips; the manifest is rewritten when it lost or tore lines."""
    for tmp in (out / CLIP_DIR).glob(".clip_*.tmp"):  # left by a hard-killed run
        log.info("removing the unfinished %s", tmp.name)
        tmp.unlink()
    entries = {e["clip"]: e for e in read_manifest(out) if isinstance(e, dict) and "clip" in e}
    files = {int(p.stem.split("_")[1]): p for p in (out / CLIP_DIR).glob("clip_*.npz")}
    entries = {i: e for i, e in entries.items() if i in files}   # a line without a file: redo
    changed = False
    for i, p in files.items():
        if i not in entries:
            entries[i] = read_clip(p)["entry"]
            changed = True
    path = out / MANIFEST_NAME
    lines = "".join(json.dumps(entries[i], sort_keys=True) + "\n" for i in sorted(entries))
    if changed or not path.is_file() or path.read_text(encoding="utf-8") != lines:
        atomic_write_bytes(path, lambda f: f.write(lines.encode("utf-8")))
    return set(entries)


_MAKER: tuple[ClipMaker, Path] | None = None  # per worker process


def _init_worker(cfg: SynthConfig, out: Path) -> None:
    global _MAKER
    import torch

    torch.set_num_threads(1)
    from capture.video import quiet_native_logs

    quiet_native_logs()
    _MAKER = (ClipMaker(cfg), Path(out))


def _set_out(out: Path) -> None:
    global _MAKER
    assert _MAKER is not None
    _MAKER = (_MAKER[0], Path(out))


def _work(index: int) -> tuple[dict, str | None]:
    assert _MAKER is not None, "worker not initialised"
    maker, out = _MAKER
    result = maker.make(index)
    write_clip(out, result)
    return result["entry"], maker.backend


def generate(cfg: SynthConfig, out: Path, clips: int, workers: int = 1,
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Make clips ``0 .. clips-1`` in ``out`` (skipping finished ones) with ``workers``
    processes; ``progress(done, total)`` after each clip. Returns a summary dict: clips
    ``made`` and ``skipped``, ``frames`` and ``detected`` (frames with a person) of the clips
    made, ``seconds`` of wall time, ``backend`` (Blender's GPU vendor / renderer: EGL on a
    GPU machine with its driver, Mesa llvmpipe on CPU)."""
    if clips < 1 or workers < 1 or cfg.frames_per_clip < 1:
        raise InputError("clips, workers and frames per clip must be at least 1")
    out = Path(out)
    (out / CLIP_DIR).mkdir(parents=True, exist_ok=True)
    motion_catalogue(cfg.totalcapture, cfg.sequences, cfg.bvh)  # fail early on bad data
    _check_settings(out, cfg)
    done = _sync_manifest(out)
    todo = [i for i in range(clips) if i not in done]
    t0 = time.perf_counter()
    made = frames = 0
    if progress is not None:
        progress(clips - len(todo), clips)
    path = out / MANIFEST_NAME
    detected, backends = 0, set()
    for entry, backend in _run(cfg, out, todo, workers):
        _append_line(path, entry)
        made += 1
        frames += entry["frames"]
        detected += entry["detected"]
        backends.add(backend)
        if progress is not None:
            progress(clips - len(todo) + made, clips)
    backend = ", ".join(sorted(b for b in backends if b))
    if backend and _gpu_present() and "llvmpipe" in backend.lower():
        log.warning("a GPU is present but Blender renders on the CPU (%s): its EGL driver "
                    "(libEGL_nvidia) is probably missing", backend)
    return {"made": made, "skipped": clips - len(todo), "frames": frames, "detected": detected,
            "seconds": time.perf_counter() - t0, "backend": backend or None}


def _gpu_present() -> bool:
    """An NVIDIA GPU device node exists (headless Blender then should render through EGL)."""
    return Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia/version").exists()


def _run(cfg: SynthConfig, out: Path, todo: list[int], workers: int
         ) -> Iterator[tuple[dict, str | None]]:
    if not todo:
        return
    if workers == 1:
        if _MAKER is None or _MAKER[0].cfg != cfg:  # in-process: keep Anny and Blender loaded
            _init_worker(cfg, out)
        else:
            _set_out(out)
        for i in todo:
            yield _work(i)
        return
    ctx = multiprocessing.get_context("spawn")  # bpy and mediapipe do not survive fork
    with ctx.Pool(workers, initializer=_init_worker, initargs=(cfg, out)) as pool:
        yield from pool.imap_unordered(_work, todo)


