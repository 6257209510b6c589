"""MediaPipe BlazePose -> (F, 33, 10) float32 landmarks, the format of the shared data.

Channels per landmark (names in ``engine.skeleton``, same layout as
``shared/data/totalcapture/blazepose``):

==  ==========================================================================================
0-2 ``pose_world_landmarks`` x, y, z: metres, origin at the hip midpoint (landmarks 23/24),
    axes ~ camera axes: x right, y DOWN, z away from the camera (MediaPipe's own convention,
    written unchanged)
3   world-landmark visibility (equal to channel 8)
4   anchor flag: 1 exactly when the previous frame had a detection (0 = track (re)start)
5-6 ``pose_landmarks`` x, y normalised to the image width and height (origin top-left)
7   ``pose_landmarks`` z (MediaPipe relative depth, no metric scale)
8   landmark visibility
9   copy of channel 4
==  ==========================================================================================

Frames without a detection are all zeros, so a person who leaves and re-enters the picture
gives zero rows, then a row with anchor 0, then anchors 1 again.

Model: the classic ``mp.solutions.pose.Pose``, ``static_image_mode=False`` (tracking) and
landmark smoothing on, with ``PoseConfig.model``: ``"heavy"`` (the default: complexity 2, the
model of the shared training landmarks; on rendered people with known motion the shipped
weights are about 7 % more accurate on its landmarks than on the full model's, at about half
the speed) or ``"full"`` (complexity 1, bundled with mediapipe; Live uses it for speed).
mediapipe would download the heavy model at run time, which this product never does:
``capture.models`` installs it from a pinned, checksummed package at set-up (the extension
bundles it) and :class:`PoseTracker` refuses to start without it.

One person: BlazePose tracks a single person. With several people it follows the one it
found first until tracking is lost, then re-detects the most prominent one, which may be
someone else; nothing marks the switch. Crop the video to one person when that matters.

Streaming: :func:`extract_landmarks` never holds all frames (or all rows) in memory. Rows are
appended to a temporary ``.npy`` in the output folder whose header is rewritten with the
final frame count (NumPy reserves room for that), then the file is fsynced and renamed into
place. A JSON sidecar ``X.npy.json`` records fps, size and aspect for later stages.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from engine.atomic import AtomicFile, write_json_atomic
from engine.errors import Blaze2CapError, InputError, VideoError
from engine.skeleton import (CH_ANCHOR, CH_ANCHOR_COPY, CH_IMAGE, CH_IMAGE_Z, CH_VIS, CH_WORLD,
                             CH_WORLD_VIS, NUM_BLAZEPOSE, NUM_CHANNELS)

from .video import (DEFAULT_FPS, VideoInfo, check_frame_range, fit_max_side, iter_frames,
                    prefetch, probe_video, resize_frame)

log = logging.getLogger(__name__)

MODEL_COMPLEXITY = {"heavy": 2, "full": 1}   # PoseConfig.model -> mediapipe's complexity
ROW_SHAPE = (NUM_BLAZEPOSE, NUM_CHANNELS)
SIDECAR_SUFFIX = ".json"    # X.npy -> X.npy.json
LOW_COVERAGE = 0.5          # warn when fewer frames than this have a person


@dataclass(frozen=True)
class PoseConfig:
    max_side: int = 1280                  # larger frames are downscaled for BlazePose (aspect kept)
    model: str = "heavy"                  # BlazePose landmark model: "heavy" or "full"
    smooth_landmarks: bool = True         # MediaPipe's temporal landmark filter
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5

    def __post_init__(self):
        if not (isinstance(self.max_side, int) and self.max_side >= 64):
            raise InputError(
                f"max_side must be an integer of at least 64 pixels, got {self.max_side}")
        for name in ("min_detection_confidence", "min_tracking_confidence"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        if self.model not in MODEL_COMPLEXITY:
            raise InputError(f"the BlazePose model must be one of {', '.join(MODEL_COMPLEXITY)}, "
                             f"got {self.model!r}")


@dataclass(frozen=True)
class ExtractResult:
    """Summary of one extraction; ``out_path`` holds (frames, 33, 10) float32."""

    out_path: Path
    frames: int             # rows written (video frames in the range)
    detected: int           # rows with a person
    fps: float              # video frame rate (see capture.video for fallbacks)
    width: int              # video display size, pixels
    height: int
    start: int              # first video frame of row 0
    seconds: float          # wall time of the extraction

    @property
    def aspect(self) -> float:
        return self.width / self.height

    @property
    def coverage(self) -> float:
        return self.detected / self.frames if self.frames else 0.0

    @property
    def processing_fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


class ExtractionCancelled(Blaze2CapError):
    """The user cancelled an extraction; no output file was written."""


class NoPersonError(VideoError):
    """BlazePose found no person in any frame."""


# ---------------------------------------------------------------------------------------------
# One frame -> one row
# ---------------------------------------------------------------------------------------------
def landmarks_to_row(world, image, anchor: bool) -> np.ndarray:
    """MediaPipe landmark lists (33 items with x, y, z, visibility) -> (33, 10) float32 row.

    ``world``: ``results.pose_world_landmarks.landmark``; ``image``:
    ``results.pose_landmarks.landmark``; ``anchor``: whether the previous frame had a person.
    """
    w = np.array([(p.x, p.y, p.z, p.visibility) for p in world], dtype=np.float32)
    im = np.array([(p.x, p.y, p.z, p.visibility) for p in image], dtype=np.float32)
    if w.shape != (NUM_BLAZEPOSE, 4) or im.shape != (NUM_BLAZEPOSE, 4):
        raise ValueError(
            f"expected {NUM_BLAZEPOSE} landmarks, got {len(w)} world / {len(im)} image")
    row = np.zeros(ROW_SHAPE, dtype=np.float32)
    row[:, CH_WORLD] = w[:, :3]
    row[:, CH_WORLD_VIS] = w[:, 3]
    row[:, CH_IMAGE] = im[:, :2]
    row[:, CH_IMAGE_Z] = im[:, 2]
    row[:, CH_VIS] = im[:, 3]
    row[:, CH_ANCHOR] = row[:, CH_ANCHOR_COPY] = float(anchor)
    return row


class PoseTracker:
    """One BlazePose instance: RGB frames (H, W, 3) uint8 in order -> (33, 10) rows.

    Tracks across calls (use one tracker per video or camera stream). Frames larger than
    ``config.max_side`` are downscaled first; normalised coordinates do not change.
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, config: PoseConfig = PoseConfig()):
        import mediapipe as mp  # heavy (TFLite, matplotlib): only when BlazePose runs

        from .models import require_pose_model

        require_pose_model(config.model)  # never let mediapipe download it
        self.config = config
        self._pose = mp.solutions.pose.Pose(
            static_image_mode=False, model_complexity=MODEL_COMPLEXITY[config.model],
            smooth_landmarks=config.smooth_landmarks, enable_segmentation=False,
            min_detection_confidence=config.min_detection_confidence,
            min_tracking_confidence=config.min_tracking_confidence)
        self._prev_detected = False

    def process(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (33, 10) float32; all zeros when no person is found."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise VideoError(f"frames must be (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
        rgb = resize_frame(rgb, fit_max_side(rgb.shape[1], rgb.shape[0], self.config.max_side))
        res = self._pose.process(np.ascontiguousarray(rgb))
        if res.pose_landmarks is None or res.pose_world_landmarks is None:
            self._prev_detected = False
            return np.zeros(ROW_SHAPE, dtype=np.float32)
        row = landmarks_to_row(res.pose_world_landmarks.landmark, res.pose_landmarks.landmark,
                               anchor=self._prev_detected)
        self._prev_detected = True
        return row

    def close(self) -> None:
        self._pose.close()

    def __enter__(self) -> "PoseTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_landmarks(source: str | os.PathLike | VideoInfo | Iterable[np.ndarray], start: int = 0,
                   end: int | None = None, config: PoseConfig = PoseConfig()
                   ) -> Iterator[np.ndarray]:
    """Yield one (33, 10) float32 row per frame, for live use.

    ``source``: a video path or ``VideoInfo`` (frames [start, end) are read) or any iterable
    of RGB uint8 frames (a camera loop; ``start``/``end`` are ignored). MediaPipe is closed
    when the generator finishes or is closed.
    """
    if isinstance(source, (str, os.PathLike, VideoInfo)):  # decode ahead on a second thread
        frames: Iterable[np.ndarray] = prefetch(
            iter_frames(source, start, end, max_side=config.max_side))
    else:
        frames = source
    try:
        with PoseTracker(config) as tracker:
            for rgb in frames:
                yield tracker.process(rgb)
    finally:
        close = getattr(frames, "close", None)
        if close is not None:  # stop the decoder thread now, not at garbage collection
            close()


# ---------------------------------------------------------------------------------------------
# Streamed, atomic .npy writing
# ---------------------------------------------------------------------------------------------
class NpyRowWriter:
    """Append float32 rows of a fixed shape to a .npy file without holding them in memory.

    The file is written under a temporary name in the destination folder with a header for 0
    rows; :meth:`commit` rewrites the header with the real row count (NumPy pads headers so the
    first axis can grow in place), fsyncs and renames it into place. :meth:`abort` (or leaving
    the ``with`` block without committing) deletes the temporary file.
    """

    def __init__(self, path: str | os.PathLike, row_shape: tuple[int, ...] = ROW_SHAPE):
        self.path = Path(path)
        self.row_shape = tuple(row_shape)
        self.rows = 0
        self._out = AtomicFile(self.path)  # closed by commit() / abort()
        self._file = self._out.file
        self._header_len = self._write_header()

    def _write_header(self) -> int:
        self._file.seek(0)
        np.lib.format.write_array_header_1_0(self._file, {
            "descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
            "fortran_order": False, "shape": (self.rows, *self.row_shape)})
        return self._file.tell()

    def write(self, row: np.ndarray) -> None:
        row = np.asarray(row)
        if row.shape != self.row_shape:
            raise ValueError(f"row must have shape {self.row_shape}, got {row.shape}")
        self._file.write(np.ascontiguousarray(row, dtype="<f4").tobytes())
        self.rows += 1

    def commit(self) -> Path:
        """Finish the file and move it to ``path``; returns ``path``."""
        if self._header_len != self._write_header():
            raise RuntimeError("the .npy header changed size; cannot finalise in place")
        return self._out.commit()

    def abort(self) -> None:
        self._out.abort()

    def __enter__(self) -> "NpyRowWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.abort()


def check_output_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path if a landmarks file can be written there; VideoError otherwise."""
    out = Path(path)
    if out.is_dir():
        raise VideoError(f"output path {out} is a folder; give a .npy file name")
    if not out.parent.is_dir():
        raise VideoError(f"output folder does not exist: {out.parent}")
    return out


def sidecar_path(landmarks_path: str | os.PathLike) -> Path:
    """``X.npy`` -> ``X.npy.json``."""
    p = Path(landmarks_path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def read_sidecar(landmarks_path: str | os.PathLike) -> dict | None:
    """The sidecar of a landmarks file (fps, width, height, aspect, ...), or None if absent
    or unreadable (a warning is logged; callers then extract again or use defaults)."""
    p = sidecar_path(landmarks_path)
    if not p.is_file():
        return None
    try:
        with open(p, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        log.warning("ignoring the unreadable sidecar %s (%s)", p, err)
        return None
    if not isinstance(meta, dict):
        log.warning("ignoring the sidecar %s: it does not hold a JSON object", p)
        return None
    return meta


def default_output_path(video_path: str | os.PathLike) -> Path:
    """Where landmarks go when no output path is given: ``VIDEO_STEM.landmarks.npy`` beside it."""
    v = Path(video_path)
    return v.with_name(v.stem + ".landmarks.npy")


# ---------------------------------------------------------------------------------------------
def extract_landmarks(video: str | os.PathLike | VideoInfo,
                      out_path: str | os.PathLike | None = None, start: int = 0,
                      end: int | None = None,
                      progress: Callable[[int, int | None], None] | None = None,
                      cancel: threading.Event | None = None,
                      config: PoseConfig = PoseConfig(),
                      on_row: Callable[[np.ndarray], None] | None = None) -> ExtractResult:
    """Run BlazePose over frames [start, end) of a video and write (F, 33, 10) float32 landmarks.

    ``video``: a path, or the ``VideoInfo`` of an already probed video.
    ``out_path`` defaults to :func:`default_output_path`; a sidecar ``out_path + '.json'`` is
    written too. ``progress(done, total)`` is called after every frame (``total`` is the
    container's estimate, or None). ``cancel`` is checked before every frame: when set, the
    temporary file is removed and :class:`ExtractionCancelled` is raised. ``on_row(row)``
    receives every (33, 10) row once it is written (e.g. to run the engine while BlazePose
    works); an exception it raises aborts the extraction and nothing is written.

    Raises ``VideoError`` for unreadable videos or ranges and :class:`NoPersonError` when no
    frame has a person (then nothing is written: a file of zeros would only produce a rest pose
    downstream).
    """
    t0 = time.perf_counter()
    info = video if isinstance(video, VideoInfo) else probe_video(video)
    start, end = check_frame_range(info, start, end)
    out = check_output_path(out_path if out_path is not None else default_output_path(info.path))
    known_ends = [x for x in (end, info.frame_count) if x is not None]
    total = max(0, min(known_ends) - start) if known_ends else None

    detected = 0
    with NpyRowWriter(out) as writer:
        rows = iter_landmarks(info, start, end, config)
        try:
            while True:
                if cancel is not None and cancel.is_set():
                    raise ExtractionCancelled(
                        f"landmark extraction was cancelled after {writer.rows} frames; "
                        f"nothing was written")
                row = next(rows, None)
                if row is None:
                    break
                writer.write(row)
                detected += bool(row.any())
                if on_row is not None:
                    on_row(row)
                if progress is not None:
                    progress(writer.rows, total)
        finally:
            rows.close()
        if writer.rows == 0:
            raise VideoError(
                f"no frames could be read from {info.path.name} starting at frame {start}")
        if detected == 0:
            raise NoPersonError(f"no person was detected in any of the {writer.rows} frames of "
                                f"{info.path.name}, so no landmarks were written")
        result = ExtractResult(out_path=out, frames=writer.rows, detected=detected,
                               fps=info.fps, width=info.width, height=info.height, start=start,
                               seconds=time.perf_counter() - t0)
        write_json_atomic(sidecar_path(out), _sidecar(result, info, config))
        writer.commit()
    if result.coverage < LOW_COVERAGE:
        log.warning("a person was found in only %d of %d frames (%.0f%%)", result.detected,
                    result.frames, 100 * result.coverage)
    log.debug("%s: %d frames, %d with a person, %.1f frames/s", out.name, result.frames,
             result.detected, result.processing_fps)
    return result


def _sidecar(result: ExtractResult, info: VideoInfo, config: PoseConfig) -> dict:
    return {
        "source_video": info.path.name,
        "fps": result.fps,
        "fps_reported": info.fps_reported,
        "fps_is_default": info.fps_is_default,
        "width": result.width,
        "height": result.height,
        "aspect": result.aspect,
        "rotation": info.rotation,
        "frames": result.frames,
        "detected": result.detected,
        "start": result.start,
        "end": result.start + result.frames,
        "model": (f"mediapipe BlazePose {config.model} "
                  f"(model_complexity={MODEL_COMPLEXITY[config.model]})"),
        "pose_config": asdict(config),
        "default_fps": DEFAULT_FPS,
    }
