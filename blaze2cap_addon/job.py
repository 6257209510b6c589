"""The work behind "Animate": video -> BlazePose landmarks -> engine -> keyframe arrays.

No ``bpy`` here: :func:`run_pipeline` is plain Python, :class:`AnimateJob` runs it on a worker
thread for the modal operator (progress, cancel, result, one-sentence error), and the
headless ``blaze2cap animate`` command calls :func:`run_pipeline` directly. Only the main
thread touches Blender, with the :class:`AnimateResult` this produces.
"""
from __future__ import annotations

import enum
import hashlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from engine.errors import Blaze2CapError, CheckpointError, InputError
from engine.retarget import BoneAnimation, RetargetConfig, retarget_prediction

log = logging.getLogger(__name__)

#: progress(fraction 0..1, message)
ProgressFn = Callable[[float, str], None]
#: Share of the progress bar per stage (extraction dominates the time).
_EXTRACT, _PREDICT = 0.85, 0.97


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


def landmarks_cache_path(folder: Path, video: Path, start: int, end: int | None) -> Path:
    """Landmarks file for one video (path, size, modification time) and frame range: a re-run
    with other settings (smoothing, root motion, redo) reuses it instead of re-tracking."""
    stat = Path(video).stat()
    key = f"{Path(video).resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{start}|{end}"
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
    if settings.start < 0 or (settings.end is not None and settings.end <= settings.start):
        raise InputError(f"invalid frame range {settings.start}..{settings.end}: the end must "
                         "come after the start")


def run_pipeline(settings: AnimateSettings, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None) -> AnimateResult:
    """Extract landmarks, run the engine and retarget; raises :class:`JobCancelled` when
    ``cancel`` is set, ``Blaze2CapError`` subclasses for the user's problems."""
    from capture.blazepose import ExtractionCancelled, extract_landmarks
    from engine.inference import Predictor

    check_settings(settings)
    report = progress or (lambda fraction, message: None)
    cancel = cancel or threading.Event()

    def check_cancel() -> None:
        if cancel.is_set():
            raise JobCancelled("cancelled; the scene was not changed")

    def on_frame(done: int, total: int | None) -> None:
        share = done / total if total else 0.0
        report(_EXTRACT * min(share, 1.0), f"BlazePose: frame {done}" + (f" of {total}" if total else ""))

    report(0.0, "Loading the model")
    predictor = Predictor.from_checkpoint(settings.checkpoint, backend=settings.backend)
    check_cancel()
    report(0.0, "BlazePose: opening the video")
    extracted = _cached_extraction(settings.landmarks_path) if settings.reuse_landmarks else None
    if extracted is not None:
        log.info("reusing the landmarks in %s", settings.landmarks_path)
    else:
        try:
            extracted = extract_landmarks(settings.video, settings.landmarks_path,
                                          settings.start, settings.end, progress=on_frame,
                                          cancel=cancel)
        except ExtractionCancelled as err:
            raise JobCancelled("cancelled; the scene was not changed") from err
    check_cancel()
    landmarks = np.load(extracted.out_path)
    report(_EXTRACT, f"Engine: {extracted.frames} frames")
    prediction = predictor.predict(landmarks, aspect=extracted.aspect, fps=extracted.fps)
    check_cancel()
    report(_PREDICT, "Retargeting")
    animation = retarget_prediction(
        prediction, config=RetargetConfig(root_motion=settings.root_motion,
                                          smoothing=settings.smoothing))
    report(1.0, "Done")
    return AnimateResult(name=Path(settings.video).stem, animation=animation, fps=extracted.fps,
                         start=extracted.start, frames=extracted.frames,
                         detected=extracted.detected, landmarks_path=extracted.out_path,
                         landmarks=landmarks, joints=prediction.joints)


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
