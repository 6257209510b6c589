"""Live capture: a webcam, or a video file played as a live source -> BlazePose -> streaming
engine -> per-frame bone rotations.

No ``bpy`` here (like ``job``): the ``blaze2cap live`` command (``training/live.py``) and the
add-on's Live mode (``operators.B2C_OT_live``) both drive a :class:`LiveSession`:

* :meth:`LiveSession.frames` is a generator of :class:`LiveFrame` (synchronous: the CLI and
  headless runs); :meth:`LiveSession.start` runs it on a worker thread and
  :meth:`LiveSession.poll` hands the frames made since the last call to the main thread (the
  Blender timer), so nothing blocks the UI;
* frames go through ``capture.blazepose.PoseTracker`` and
  ``engine.inference.StreamingPredictor`` one at a time: the engine's output for a frame
  with a person equals batch ``predict`` on the same frames (its gaps hold the last pose,
  since the next detection is not known yet);
* a video source is paced to its frame rate (frame i is taken at i / fps seconds after the
  start) unless ``realtime`` is off; when the machine is slower than the source, frames are
  still all processed, in order, and the lag shows in ``LiveFrame.latency_ms``;
* bones: ``engine.retarget`` frame by frame with a fixed placement: a level camera (the
  camera tilt needs many frames to estimate) and the floor and start point of the first
  frame with a person.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from engine.errors import Blaze2CapError, InputError, VideoError
from engine.retarget import (CAMERA_UP, BoneAnimation, Placement, RetargetConfig, Rig,
                             build_rig, camera_to_world_rotation, estimate_placement, retarget)

log = logging.getLogger(__name__)

#: Frames kept for the main thread between two polls (older ones are dropped, counted).
POLL_BUFFER = 256


@dataclass(frozen=True)
class LiveSettings:
    video: Path | None = None        # a video file played as a live source ...
    camera: int | None = None        # ... or a webcam index
    checkpoint: Path | None = None   # None = the shipped default weights
    backend: str = "auto"            # engine backend: auto / torch / numpy
    realtime: bool = True            # pace a video to its frame rate (off: as fast as possible)
    max_frames: int | None = None    # stop after this many frames (None = the whole source)
    root_motion: bool = True

    def __post_init__(self):
        if (self.video is None) == (self.camera is None):
            raise InputError("choose one live source: a video file or a camera index")
        if self.max_frames is not None and self.max_frames < 1:
            raise InputError(f"max_frames must be at least 1, got {self.max_frames}")


@dataclass(frozen=True)
class LiveFrame:
    """One processed frame. Arrays: landmarks (33, 10); local_quats (22, 4) w,x,y,z pose-bone
    rotations and root_location (3,) metres, as keyed by ``scene.write_action``; world_joints
    (21, 3) and world_rots (21, 3, 3) in the Blender world; prediction: the engine's
    one-frame ``Prediction`` (camera frame)."""

    index: int                      # frame number in the source, from 0
    time_s: float                   # the frame's time in the source: index / fps
    landmarks: np.ndarray = field(repr=False)
    prediction: object = field(repr=False)
    local_quats: np.ndarray = field(repr=False)
    root_location: np.ndarray = field(repr=False)
    world_joints: np.ndarray = field(repr=False)
    world_rots: np.ndarray = field(repr=False)
    latency_ms: float = 0.0         # from the frame's arrival to its pose

    @property
    def detected(self) -> bool:
        return bool(self.prediction.valid[0])


class LiveRetarget:
    """Frame-by-frame ``engine.retarget.retarget`` with one placement for the whole session:
    a level camera, the floor and start point of the first frame with a person (of the first
    frame until then); quaternion signs continuous from frame to frame."""

    def __init__(self, config: RetargetConfig = RetargetConfig(), rig: Rig | None = None):
        self.config = replace(config, smoothing=0.0)
        self.rig = rig or build_rig()
        self.rotation = camera_to_world_rotation(CAMERA_UP)
        self.placement: Placement | None = None
        self._placed_on_person = False
        self._prev: np.ndarray | None = None

    def __call__(self, prediction) -> BoneAnimation:
        """One-frame ``Prediction`` -> one-frame ``BoneAnimation``."""
        valid = np.asarray(prediction.valid, dtype=bool)
        quats = prediction.global_quats.astype(np.float64)
        root = prediction.root_translation.astype(np.float64)
        if self.placement is None or (valid[0] and not self._placed_on_person):
            from engine import rotations as rot

            self.placement = estimate_placement(rot.quaternion_to_matrix(quats), root,
                                                np.ones(1, dtype=bool), self.rig, self.config,
                                                rotation=self.rotation)
            self._placed_on_person = bool(valid[0])
        anim = retarget(quats, root, valid, self.rig, self.config, self.placement)
        q = anim.local_quats
        if self._prev is not None:
            q = q * np.where((q[0] * self._prev).sum(-1) < 0, -1.0, 1.0)[None, :, None]
        self._prev = q[0]
        return replace(anim, local_quats=q)


def stack_animation(frames: list[LiveFrame], placement: Placement, rig: Rig) -> BoneAnimation:
    """Recorded frames -> one ``BoneAnimation`` (for ``scene.write_action``)."""
    if not frames:
        raise InputError("nothing was recorded")
    return BoneAnimation(local_quats=np.stack([f.local_quats for f in frames]),
                         root_location=np.stack([f.root_location for f in frames]),
                         world_joints=np.stack([f.world_joints for f in frames]),
                         world_rots=np.stack([f.world_rots for f in frames]),
                         placement=placement, rig=rig)


class LiveSession:
    """BlazePose + streaming engine + per-frame retarget over a live source (module doc)."""

    def __init__(self, settings: LiveSettings):
        self.settings = settings
        if settings.video is not None:
            from capture.video import probe_video

            if not Path(settings.video).is_file():
                raise InputError(f"video not found: {settings.video}")
            self.info = probe_video(settings.video)
            self.fps = self.info.fps
        else:
            from capture.video import open_camera

            self.info = None
            self._camera, self.fps = open_camera(settings.camera)
        self.aspect: float | None = self.info.aspect if self.info is not None else None
        self.retarget = LiveRetarget(RetargetConfig(root_motion=settings.root_motion))
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=POLL_BUFFER)
        self._thread: threading.Thread | None = None
        self.error: str | None = None
        self.dropped = 0          # frames the main thread did not poll in time
        self.processed = 0

    # -- synchronous -------------------------------------------------------------------------
    def frames(self) -> Iterator[LiveFrame]:
        """Process the source frame by frame (loads the model, opens BlazePose)."""
        from capture.blazepose import PoseConfig, PoseTracker
        from engine.inference import Predictor

        s = self.settings
        predictor = Predictor.from_checkpoint(s.checkpoint, backend=s.backend)
        config = PoseConfig(model="full")  # real time: about twice the heavy model's speed
        rgb = self._rgb_frames(config.max_side)
        try:
            first = next(rgb, None)
            if first is None:
                raise VideoError("the live source gave no frames")
            if self.aspect is None:
                self.aspect = first.shape[1] / first.shape[0]
            stream = predictor.stream(aspect=self.aspect, fps=self.fps)
            paced = s.realtime and s.video is not None
            with PoseTracker(config) as tracker:
                start = time.perf_counter()  # the source "starts" once BlazePose is ready
                index, frame, got = 0, first, start
                while frame is not None and not self._stop.is_set():
                    due = start + index / self.fps
                    if paced:
                        wait = due - time.perf_counter()
                        if wait > 0:
                            self._stop.wait(wait)
                    arrived = due if paced else got  # a late frame's lag counts
                    row = tracker.process(frame)
                    pred = stream.push(row)
                    anim = self.retarget(pred)
                    self.processed += 1
                    yield LiveFrame(index=index, time_s=index / self.fps, landmarks=row,
                                    prediction=pred, local_quats=anim.local_quats[0],
                                    root_location=anim.root_location[0],
                                    world_joints=anim.world_joints[0],
                                    world_rots=anim.world_rots[0],
                                    latency_ms=1e3 * (time.perf_counter() - arrived))
                    index += 1
                    if s.max_frames is not None and index >= s.max_frames:
                        break
                    frame, got = next(rgb, None), time.perf_counter()
        finally:
            close = getattr(rgb, "close", None)
            if close is not None:
                close()

    def _rgb_frames(self, max_side: int) -> Iterator[np.ndarray]:
        if self.info is not None:
            from capture.video import iter_frames, prefetch

            return prefetch(iter_frames(self.info, max_side=max_side))
        from capture.video import camera_frames

        return camera_frames(self._camera, self._stop)

    # -- on a worker thread ------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="blaze2cap-live", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            for frame in self.frames():
                try:
                    self._queue.put_nowait(frame)
                except queue.Full:  # the main thread is busy: drop the oldest
                    self._queue.get_nowait()
                    self._queue.put_nowait(frame)
                    self.dropped += 1
        except Blaze2CapError as err:
            self.error = str(err)
        except Exception as err:  # a bug: keep its traceback in the log, show one sentence
            log.exception("Blaze2Cap live failed")
            self.error = f"unexpected {type(err).__name__}: {err} (details in the system console)"

    def poll(self) -> list[LiveFrame]:
        """The frames made since the last call, oldest first (main thread)."""
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the source to stop and wait for the worker (any thread)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
