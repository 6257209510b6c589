"""The work behind "Animate": video -> BlazePose landmarks -> engine -> keyframe arrays.

No ``bpy`` here: :func:`run_pipeline` is plain Python, :class:`AnimateJob` runs it on a worker
thread for the modal operator (progress, cancel, result, one-sentence error), and the
headless ``blaze2cap animate`` command calls :func:`run_pipeline` directly. Only the main
thread touches Blender, with the :class:`AnimateResult` this produces.

Pipelined for speed and for long videos (an hour at 60 fps is 216,000 frames):

* the model loads on an engine thread while BlazePose starts, and the engine runs on each
  ``ENGINE_CHUNK`` rows of landmarks as soon as BlazePose has produced them (causal context
  carried between chunks: ``engine.inference.ChunkedRun``), so when the last frame is
  tracked only the gap bridging and the conversion remain;
* landmark rows are streamed to disk (``capture.blazepose.NpyRowWriter``) and read back
  memory-mapped, never held twice;
* the retarget runs ``RETARGET_CHUNK`` frames at a time into preallocated float32 arrays
  (the camera placement is estimated on at most ``PLACEMENT_FRAMES`` frames spread over the
  clip); clips up to ``RETARGET_CHUNK`` frames take the plain one-block path.
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from engine.errors import Blaze2CapError, CheckpointError, InputError
from engine.retarget import (NUM_BONES, BoneAnimation, RetargetConfig, build_rig,
                             estimate_placement, retarget)

log = logging.getLogger(__name__)

#: progress(fraction 0..1, message)
ProgressFn = Callable[[float, str], None]
#: Share of the progress bar per stage (extraction dominates the time).
_EXTRACT, _PREDICT = 0.85, 0.97
#: Landmark rows per engine call while BlazePose runs.
ENGINE_CHUNK = 256
#: Frames per retarget block (bounds the temporaries; any value gives the same keys).
RETARGET_CHUNK = 8192
#: The camera placement (tilt, floor, start) is estimated on at most this many frames.
PLACEMENT_FRAMES = 20_000


class JobCancelled(Blaze2CapError):
    """The user cancelled the run; nothing was changed."""


@dataclass(frozen=True)
class AnimateSettings:
    video: Path
    landmarks_path: Path                 # where the extracted landmarks are written (.npy)
    checkpoint: Path | None = None       # None = the shipped default weights
    start: int = 0                       # first video frame
    end: int | None = None               # one past the last video frame (None = to the end)
    root_motion: bool = True
    smoothing: float = 0.0               # Gaussian sigma in frames on the keys
    backend: str = "auto"                # engine backend: auto / torch / numpy
    reuse_landmarks: bool = False        # skip BlazePose when landmarks_path and its sidecar exist
    pose_model: str = "heavy"            # BlazePose model (capture.blazepose.PoseConfig.model)


@dataclass(frozen=True)
class AnimateResult:
    """Everything the main thread needs to build the scene (see ``scene.apply_animation``)."""

    name: str                            # the video's stem: names the armature and action
    animation: BoneAnimation
    fps: float
    start: int                           # video frame of animation frame 0
    frames: int
    detected: int                        # frames with a person
    landmarks_path: Path
    landmarks: np.ndarray = field(repr=False)   # (F, 33, 10)
    joints: np.ndarray = field(repr=False)      # (F, 21, 3) camera frame, Hips-relative


def landmarks_cache_path(folder: Path, video: Path, start: int, end: int | None,
                         pose_model: str = "heavy") -> Path:
    """Landmarks file for one video (path, size, modification time), frame range and BlazePose
    model: a re-run with other settings (smoothing, root motion, redo) reuses it instead of
    re-tracking."""
    stat = Path(video).stat()
    key = (f"{Path(video).resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{start}|{end}"
           f"|{pose_model}")
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return Path(folder) / f"{Path(video).stem}-{digest}.landmarks.npy"


def _cached_extraction(path: Path):
    """An ``ExtractResult`` for landmarks extracted earlier (file + sidecar), or None."""
    from capture.blazepose import ExtractResult, read_sidecar

    meta = read_sidecar(path) if path.is_file() else None
    if meta is None:
        return None
    return ExtractResult(out_path=path, frames=int(meta["frames"]), detected=int(meta["detected"]),
                         fps=float(meta["fps"]), width=int(meta["width"]),
                         height=int(meta["height"]), start=int(meta["start"]), seconds=0.0)


def check_settings(settings: AnimateSettings) -> None:
    """Fail early, with one sentence, on what can be checked without running anything."""
    video = Path(settings.video)
    if not str(settings.video).strip():
        raise InputError("choose a video file first")
    if not video.is_file():
        raise InputError(f"video not found: {video}")
    if settings.checkpoint is not None and not Path(settings.checkpoint).is_file():
        raise InputError(f"checkpoint not found: {settings.checkpoint}")
    if settings.checkpoint is None:
        from engine.inference import DEFAULT_WEIGHTS

        if not DEFAULT_WEIGHTS.is_file():
            raise CheckpointError("the shipped weights are missing "
                                  f"({DEFAULT_WEIGHTS.name}); choose a checkpoint (blaze2cap animate "
                                  "--checkpoint, or the add-on preferences)")
    if not settings.reuse_landmarks or not Path(settings.landmarks_path).is_file():
        from capture.models import require_pose_model

        require_pose_model(settings.pose_model)  # also refuses an unknown model name
    if settings.start < 0 or (settings.end is not None and settings.end <= settings.start):
        raise InputError(f"invalid frame range {settings.start}..{settings.end}: the end must "
                         "come after the start")


def run_pipeline(settings: AnimateSettings, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None) -> AnimateResult:
    """Extract landmarks, run the engine and retarget; raises :class:`JobCancelled` when
    ``cancel`` is set, ``Blaze2CapError`` subclasses for the user's problems."""
    check_settings(settings)
    report = progress or (lambda fraction, message: None)
    cancel = cancel or threading.Event()

    def check_cancel() -> None:
        if cancel.is_set():
            raise JobCancelled("cancelled; the scene was not changed")

    report(0.0, "Loading the model")
    engine = EngineThread(settings.checkpoint, settings.backend)
    try:
        extracted = (_cached_extraction(settings.landmarks_path) if settings.reuse_landmarks
                     else None)
        if extracted is not None:
            log.info("reusing the landmarks in %s", settings.landmarks_path)
            engine.begin(extracted.aspect, extracted.fps, extracted.frames)
            for rows in iter_npy_chunks(extracted.out_path, ENGINE_CHUNK):
                check_cancel()
                engine.feed(rows)
        else:
            report(0.0, "BlazePose: opening the video")
            extracted = _extract_and_feed(settings, engine, report, cancel)
        check_cancel()
        report(_EXTRACT, f"Engine: {extracted.frames} frames")
        prediction = engine.finish()
    finally:
        engine.close()
    check_cancel()
    report(_PREDICT, "Retargeting")
    # Keep only what the retarget and the preview read (local_6d goes: 528 bytes a frame).
    quats, root, valid = prediction.global_quats, prediction.root_translation, prediction.valid
    joints, prediction = prediction.joints, None
    animation = retarget_in_blocks(quats, root, valid, RetargetConfig(
        root_motion=settings.root_motion, smoothing=settings.smoothing))
    report(1.0, "Done")
    return AnimateResult(name=Path(settings.video).stem, animation=animation, fps=extracted.fps,
                         start=extracted.start, frames=extracted.frames,
                         detected=extracted.detected, landmarks_path=extracted.out_path,
                         landmarks=_load_landmarks(extracted.out_path, extracted.frames),
                         joints=joints)


def iter_npy_chunks(path: Path, rows: int):
    """Yield a float32 .npy array (F, ...) as chunks of ``rows`` rows read from the file
    (plain reads, not a memory map, so the pages never count as this process's memory)."""
    with open(path, "rb") as f:
        fmt = np.lib.format
        major, _ = fmt.read_magic(f)
        header = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
        shape, fortran, dtype = header(f)
        if fortran or dtype != np.dtype("<f4"):
            raise InputError(f"{Path(path).name} is not a C-ordered float32 landmark array")
        row = int(np.prod(shape[1:]))
        for a in range(0, shape[0], rows):
            n = min(rows, shape[0] - a)
            data = np.fromfile(f, dtype=dtype, count=n * row)
            if len(data) != n * row:
                raise InputError(f"{Path(path).name} is truncated")
            yield data.reshape((n, *shape[1:]))


def _load_landmarks(path: Path, frames: int) -> np.ndarray:
    """The (F, 33, 10) landmarks for the preview: in memory up to ``PLACEMENT_FRAMES`` frames
    (so no open mapping pins the file, which matters on Windows), memory-mapped beyond."""
    return np.load(path, mmap_mode="r" if frames > PLACEMENT_FRAMES else None)


class EngineThread:
    """The engine on its own thread, fed landmark chunks while BlazePose runs.

    The model loads as soon as this is made; :meth:`begin` sets the video's aspect, fps and
    expected length, :meth:`feed` queues (n, 33, 10) rows, :meth:`finish` waits for the last
    chunk and returns the ``Prediction`` (equal to ``Predictor.predict`` on all the rows).
    Errors on the thread (e.g. unusable weights) are raised by :meth:`begin`, :meth:`feed`
    or :meth:`finish`.
    """

    _END = None

    def __init__(self, checkpoint: Path | None, backend: str = "auto", depth: int = 64):
        self._checkpoint, self._backend = checkpoint, backend
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._ready = threading.Event()    # the model is loaded (or failed)
        self._params: tuple | None = None
        self._params_set = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._result = None
        self._thread = threading.Thread(target=self._work, name="blaze2cap-engine", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        from engine.inference import Predictor

        try:
            predictor = Predictor.from_checkpoint(self._checkpoint, backend=self._backend)
            self._ready.set()
            self._params_set.wait()
            if self._stop.is_set():
                return
            run = predictor.begin(**self._params)
            while True:
                item = self._queue.get()
                if item is self._END or self._stop.is_set():
                    break
                run.feed(item)
            if not self._stop.is_set():
                self._result = run.finish()
        except BaseException as err:  # handed to the caller's thread, raised there
            self._error = err
        finally:
            self._ready.set()

    def check(self) -> None:
        """Raise the engine thread's error, if it had one (cheap: call it every frame)."""
        if self._error is not None:
            raise self._error

    _raise = check

    def begin(self, aspect: float, fps: float, frames: int | None) -> None:
        self._raise()
        self._params = {"aspect": aspect, "fps": fps, "frames": frames}
        self._params_set.set()

    def feed(self, landmarks: np.ndarray) -> None:
        while self._thread.is_alive():
            self._raise()
            try:
                self._queue.put(landmarks, timeout=0.1)
                return
            except queue.Full:
                continue
        self._raise()

    def finish(self):
        self._params_set.set()
        self.feed(self._END)
        self._thread.join()
        self._raise()
        if self._result is None:
            raise RuntimeError("the engine thread stopped without a result")
        return self._result

    def close(self) -> None:
        """Stop the thread (after an error or a cancel); a no-op after :meth:`finish`."""
        self._stop.set()
        self._params_set.set()
        try:
            self._queue.put_nowait(self._END)
        except queue.Full:
            pass  # the thread sees _stop at its next chunk
        self._thread.join(timeout=10.0)


def _extract_and_feed(settings: AnimateSettings, engine: EngineThread, report: ProgressFn,
                      cancel: threading.Event):
    """BlazePose over the video's frame range (``capture.blazepose.extract_landmarks``: rows
    streamed to ``settings.landmarks_path`` + sidecar), each row also fed to the engine,
    ``ENGINE_CHUNK`` at a time, while BlazePose works. Returns the ``ExtractResult``."""
    from capture.blazepose import ExtractionCancelled, PoseConfig, extract_landmarks
    from capture.video import check_frame_range, probe_video

    info = probe_video(settings.video)
    start, end = check_frame_range(info, settings.start, settings.end)
    known_ends = [x for x in (end, info.frame_count) if x is not None]
    total = max(0, min(known_ends) - start) if known_ends else None
    engine.begin(info.aspect, info.fps, total)
    rows: list[np.ndarray] = []
    done = 0

    def on_row(row: np.ndarray) -> None:
        nonlocal done
        engine.check()  # e.g. unusable weights: stop now, not after the video
        rows.append(row)
        done += 1
        if len(rows) == ENGINE_CHUNK:
            engine.feed(np.stack(rows))
            rows.clear()
            report(_EXTRACT * min(done / total, 1.0) if total else 0.0,
                   f"BlazePose: frame {done}" + (f" of {total}" if total else ""))

    try:
        result = extract_landmarks(info, settings.landmarks_path, start, end, cancel=cancel,
                                   on_row=on_row, config=PoseConfig(model=settings.pose_model))
    except ExtractionCancelled:
        raise JobCancelled("cancelled; the scene was not changed") from None
    if rows:
        engine.feed(np.stack(rows))
    return result


def retarget_in_blocks(global_quats: np.ndarray, root_translation: np.ndarray,
                       valid: np.ndarray, config: RetargetConfig = RetargetConfig(),
                       block: int | None = None, placement_frames: int | None = None
                       ) -> BoneAnimation:
    """``engine.retarget.retarget`` (arguments as there) in blocks of ``block`` frames
    (default ``RETARGET_CHUNK``) with bounded temporaries: the same keys as one pass, in
    float32 arrays. Clips up to ``block`` frames take the one-pass path.

    The placement is estimated once, on every frame of clips up to ``placement_frames``
    (default ``PLACEMENT_FRAMES``) and on that many evenly spread frames (the first valid one
    included) of longer clips; quaternion signs stay continuous across blocks; the Gaussian
    smoothing runs per bone on the whole clip afterwards.
    """
    from engine import rotations as rot

    block = block or RETARGET_CHUNK
    placement_frames = placement_frames or PLACEMENT_FRAMES
    valid = np.asarray(valid, dtype=bool)
    n = len(valid)
    if n <= block:
        return retarget(global_quats, root_translation, valid, None, config)
    rig = build_rig()
    sample = _spread(valid, placement_frames)
    placement = estimate_placement(
        rot.quaternion_to_matrix(global_quats[sample].astype(np.float64)),
        root_translation[sample].astype(np.float64), valid[sample], rig, config)
    plain = dataclasses.replace(config, smoothing=0.0)
    local = np.empty((n, NUM_BONES, 4), dtype=np.float32)
    root = np.empty((n, 3), dtype=np.float32)
    joints = np.empty((n, NUM_BONES - 1, 3), dtype=np.float32)
    rots = np.empty((n, NUM_BONES - 1, 3, 3), dtype=np.float32)
    for a in range(0, n, block):
        b = min(a + block, n)
        part = retarget(global_quats[a:b], root_translation[a:b], valid[a:b], rig, plain,
                        placement)
        q = part.local_quats
        if a:  # continue the previous block's hemisphere, per bone
            q = q * np.where((q[0] * local[a - 1]).sum(-1) < 0, -1.0, 1.0)[None, :, None]
        local[a:b], root[a:b] = q, part.root_location
        joints[a:b], rots[a:b] = part.world_joints, part.world_rots
    if config.smoothing > 0:
        from engine.retarget import gaussian_smooth

        for bone in range(NUM_BONES):  # per bone: small float64 temporaries
            q = gaussian_smooth(local[:, bone], config.smoothing)
            local[:, bone] = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-9)
        root[:] = gaussian_smooth(root, config.smoothing)
    return BoneAnimation(local_quats=local, root_location=root, world_joints=joints,
                         world_rots=rots, placement=placement, rig=rig)


def _spread(valid: np.ndarray, count: int) -> np.ndarray:
    """Indices of at most ``count`` frames spread evenly over the clip, starting at the first
    valid frame (the placement's start point), or all frames when there are few."""
    n = len(valid)
    if n <= count:
        return np.arange(n)
    first = int(np.argmax(valid)) if valid.any() else 0
    return np.unique(np.linspace(first, n - 1, count).round().astype(np.int64))


class JobState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class AnimateJob:
    """:func:`run_pipeline` on a worker thread; poll it from the main thread.

    ``start()`` launches the thread, ``run()`` does the same work synchronously; ``cancel()``
    asks it to stop at the next frame. ``progress`` and ``message`` are safe to read at any
    time; once ``finished``, ``state`` is DONE (``result``), FAILED (``error``: one sentence)
    or CANCELLED.
    """

    def __init__(self, settings: AnimateSettings,
                 pipeline: Callable[..., AnimateResult] = run_pipeline):
        self.settings = settings
        self._pipeline = pipeline
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress = 0.0
        self._message = "Waiting"
        self.state = JobState.PENDING
        self.result: AnimateResult | None = None
        self.error: str | None = None

    # -- called from the main thread ---------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="blaze2cap-animate", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def finished(self) -> bool:
        return self.state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)

    @property
    def progress(self) -> tuple[float, str]:
        with self._lock:
            return self._progress, self._message

    # -- the work ----------------------------------------------------------------------------
    def _report(self, fraction: float, message: str) -> None:
        with self._lock:
            self._progress, self._message = float(fraction), message

    def run(self) -> None:
        """Run the pipeline to the end (on whichever thread calls this)."""
        self.state = JobState.RUNNING
        try:
            result = self._pipeline(self.settings, progress=self._report, cancel=self._cancel)
        except JobCancelled:
            self.state = JobState.CANCELLED
        except Blaze2CapError as err:
            self.error = str(err)
            self.state = JobState.FAILED
        except Exception as err:  # a bug: keep its traceback in the log, show one sentence
            log.exception("Blaze2Cap animate failed")
            self.error = f"unexpected {type(err).__name__}: {err} (details in the system console)"
            self.state = JobState.FAILED
        else:
            if self._cancel.is_set():
                self.state = JobState.CANCELLED
            else:
                self.result = result
                self.state = JobState.DONE
