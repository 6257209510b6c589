"""Open a video with OpenCV (FFmpeg backend): checked errors, metadata and RGB frames.

* :func:`probe_video` checks a path and returns :class:`VideoInfo`; every problem a user can
  cause (missing path, a folder, an empty or text file, a truncated or corrupt file, a codec
  OpenCV's FFmpeg cannot decode) raises ``engine.errors.VideoError`` with one sentence.
* :func:`iter_frames` yields RGB uint8 frames (H, W, 3) one at a time, optionally for a frame
  range and downscaled so the longer side is at most ``max_side`` (aspect kept). Frames are
  never all held in memory.

Orientation: rotation metadata (phone videos) is applied by OpenCV
(``CAP_PROP_ORIENTATION_AUTO`` is switched on), so frames, ``width`` and ``height`` are as
displayed; ``VideoInfo.rotation`` records the metadata angle.

Frame rate: containers report one number; for variable frame rate videos (phones) it is the
average. Frames are used in order at that constant rate (one animation frame per video
frame), so where the real rate varies the motion's timing is approximate: :func:`iter_frames`
warns once when a frame's timestamp is more than half a frame away from the constant-rate
grid. A missing or absurd value (outside 1..1000 fps) falls back to ``DEFAULT_FPS`` with a
warning.
Frame counts from the container are estimates; iteration stops at the last decodable frame.
"""
from __future__ import annotations

import codecs
import logging
import math
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

import cv2
import numpy as np

from engine.errors import VideoError

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_FPS = 30.0          # used when the container's frame rate is missing or absurd
MIN_FPS, MAX_FPS = 1.0, 1000.0
_SNIFF_BYTES = 1 << 22      # bytes read from each end of a file to name its container/codec
_AUDIO_CODECS = {b"mp4a", b"ac-3", b"ec-3", b"Opus", b"alac", b"fLaC", b".mp3", b"sowt",
                 b"twos", b"lpcm", b"samr", b"ulaw", b"alaw"}


@dataclass(frozen=True)
class VideoInfo:
    """What downstream stages need to know about a video (sizes as displayed, in pixels)."""

    path: Path
    fps: float                  # frames per second used downstream (reported or DEFAULT_FPS)
    fps_reported: float         # the container's value (average if variable; 0 if missing)
    width: int                  # display width, rotation metadata applied
    height: int                 # display height
    frame_count: int | None     # the container's estimate, None when unknown
    rotation: int               # rotation metadata in degrees (0, 90, 180, 270), already applied
    codec: str                  # FourCC reported by FFmpeg, e.g. "avc1", "vp09", "FMP4"

    @property
    def aspect(self) -> float:
        """Display width / height (the ``aspect`` of ``engine.features``)."""
        return self.width / self.height

    @property
    def fps_is_default(self) -> bool:
        return self.fps != self.fps_reported


def checked_fps(reported: float, default: float = DEFAULT_FPS) -> tuple[float, str | None]:
    """The frame rate to use and, when it is not the reported one, why (for a warning)."""
    if reported is None or not math.isfinite(reported) or reported <= 0:
        return default, f"the video reports no frame rate, so {default:g} fps is assumed"
    if not MIN_FPS <= reported <= MAX_FPS:
        return default, (f"the video reports an implausible {reported:g} fps, "
                         f"so {default:g} fps is assumed")
    return float(reported), None


def fit_max_side(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) scaled down so the longer side is <= max_side (aspect kept); never up."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    s = max_side / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def resize_frame(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, C) image to ``size`` = (width, height); a no-op when it already fits.

    INTER_AREA is the better filter for strong reductions (2x and more) but is ~10x slower
    than INTER_LINEAR for mild, non-integer ones (73 vs 7 ms for 1768x994 -> 1280x720), where
    linear filtering loses nothing BlazePose needs.
    """
    h, w = img.shape[:2]
    if (w, h) == tuple(size):
        return img
    strong = size[0] <= w / 2 and size[1] <= h / 2
    method = cv2.INTER_AREA if strong else cv2.INTER_LINEAR
    return cv2.resize(img, tuple(size), interpolation=method)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Check that ``path`` is a readable video and return its :class:`VideoInfo`.

    Decodes the first frame (so a file that opens but cannot be decoded fails here).
    Raises ``VideoError`` with one sentence otherwise.
    """
    path = _check_file(Path(path))
    cap = _open(path)
    try:
        ok, frame = cap.read()
        codec = _fourcc(cap)
        if not ok or frame is None:
            raise VideoError(
                f"no frame of {path} could be decoded: the file is truncated or corrupt, or its "
                f"codec {codec!r} is not supported by OpenCV's FFmpeg")
        height, width = frame.shape[:2]
        reported = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        rotation = int(round(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0)) % 360
    finally:
        cap.release()
    fps, why = checked_fps(reported)
    if why:
        log.warning("%s: %s", path.name, why)
    return VideoInfo(path=path, fps=fps, fps_reported=reported, width=int(width),
                     height=int(height), frame_count=count if count > 0 else None,
                     rotation=rotation, codec=codec)


def check_frame_range(info: VideoInfo, start: int = 0, end: int | None = None
                      ) -> tuple[int, int | None]:
    """Validate a half-open frame range [start, end) against a video; end None = to the end."""
    if int(start) != start or start < 0:
        raise VideoError(f"start frame must be a non-negative integer, got {start}")
    if end is not None and (int(end) != end or end <= start):
        raise VideoError(f"end frame must be an integer greater than start ({start}), got {end}")
    if info.frame_count is not None and start >= info.frame_count:
        raise VideoError(f"start frame {start} is past the end of {info.path.name} "
                         f"({info.frame_count} frames)")
    return int(start), None if end is None else int(end)


def iter_frames(video: str | os.PathLike | VideoInfo, start: int = 0, end: int | None = None,
                max_side: int | None = None) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames (H, W, 3) of frames [start, end), one at a time.

    ``max_side``: downscale (:func:`resize_frame`) so the longer side is at most this many pixels,
    keeping the aspect ratio; smaller videos are never upscaled. Stops early, with a warning,
    when the file ends before the container's frame count (a truncated file).
    """
    info = video if isinstance(video, VideoInfo) else probe_video(video)
    start, end = check_frame_range(info, start, end)
    size = fit_max_side(info.width, info.height, max_side)
    cap = _open(info.path)
    try:
        for i in range(start):  # grab() decodes without conversion: exact, unlike seeking
            if not cap.grab():
                raise VideoError(f"start frame {start} is past the end of {info.path.name} "
                                 f"(it has {i} decodable frames)")
        index = start
        clock = _FrameClock(info)
        while end is None or index < end:
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            clock.check(index - start, cap.get(cv2.CAP_PROP_POS_MSEC))
            yield cv2.cvtColor(resize_frame(bgr, size), cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        cap.release()
    expected = info.frame_count if end is None or info.frame_count is None else min(
        end, info.frame_count)
    if expected is not None and index < expected:
        log.warning("%s ended after %d frames although it reports %d: the file may be truncated",
                    info.path.name, index, expected)


class _FrameClock:
    """Warns once when frame timestamps leave the constant-rate grid (variable frame rate)."""

    def __init__(self, info: VideoInfo):
        self.info = info
        self.first_ms: float | None = None
        self.active = not info.fps_is_default  # a missing rate has been warned about already

    def check(self, i: int, ms: float) -> None:
        """``i``: frames read so far; ``ms``: this frame's timestamp (milliseconds)."""
        if not self.active or not math.isfinite(ms):
            return
        if self.first_ms is None:
            self.first_ms = ms
            return
        period = 1000.0 / self.info.fps
        expected = self.first_ms + i * period
        if abs(ms - expected) > 0.5 * period:
            self.active = False
            log.warning("%s has a variable frame rate (frame %d is at %.3f s, not %.3f s): "
                        "frames are used in order at its average %g fps, so the timing of "
                        "the motion is approximate", self.info.path.name, i,
                        (ms - self.first_ms) / 1000, (expected - self.first_ms) / 1000,
                        self.info.fps)


def prefetch(items: Iterable[T], depth: int = 4) -> Iterator[T]:
    """Iterate ``items`` on a background thread, at most ``depth`` items ahead.

    Decoding (FFmpeg) and BlazePose both release the GIL, so reading the next frames while
    the current one is processed uses a second core; memory stays bounded by ``depth``.
    Exceptions of the producer are raised here; closing this generator stops the thread and
    closes ``items``.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        it = iter(items)
        try:
            for item in it:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as err:  # handed to the consumer, raised there
            put((None, err))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="blaze2cap-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, err = q.get()
            if err is not None:
                raise err
            if item is end:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def quiet_native_logs() -> None:
    """Silence OpenCV's and its FFmpeg's console messages, for command lines: failures still
    raise ``VideoError``. The FFmpeg level is read when OpenCV first opens a video, so call
    this before that."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ warnings (read at import)
    cv2.setLogLevel(0)  # LOG_LEVEL_SILENT


# ---------------------------------------------------------------------------------------------
def _check_file(path: Path) -> Path:
    if not path.exists():
        raise VideoError(f"video file not found: {path}")
    if path.is_dir():
        raise VideoError(f"{path} is a folder, not a video file")
    if path.stat().st_size == 0:
        raise VideoError(f"video file is empty (0 bytes): {path}")
    if not os.access(path, os.R_OK):
        raise VideoError(f"video file is not readable (permission denied): {path}")
    with open(path, "rb") as f:
        head = f.read(4096)
    if _sniff_container(head) is None and _looks_like_text(head):
        raise VideoError(f"{path} is a text file, not a video")
    return path


def _open(path: Path) -> "cv2.VideoCapture":
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise VideoError(_unopenable_reason(path))
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)  # frames as displayed (phone rotation metadata)
    return cap


def _fourcc(cap: "cv2.VideoCapture") -> str:
    code = int(cap.get(cv2.CAP_PROP_FOURCC) or 0)
    return code.to_bytes(4, "little").decode("latin-1").strip("\x00") or "unknown"


def _unopenable_reason(path: Path) -> str:
    """One sentence on why FFmpeg could not open ``path``, from its first and last bytes."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
        f.seek(max(0, size - _SNIFF_BYTES))
        tail = f.read() if size > _SNIFF_BYTES else b""
    container = _sniff_container(head)
    if container is None:
        return f"{path} is not a video file OpenCV can read (no known video container format)"
    codec = _sniff_codec(container, head + tail)
    if codec is None:
        return (f"cannot open {path}: it looks like {container} but its track information is "
                f"missing, so the file is truncated or corrupt")
    return (f"cannot open {path}: the {container} file is truncated or corrupt, or its codec "
            f"{codec!r} is not supported by OpenCV's FFmpeg")


def _sniff_container(head: bytes) -> str | None:
    if head[4:8] == b"ftyp":
        return "MP4/MOV"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "QuickTime"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    for magic, name in ((b"\x1a\x45\xdf\xa3", "Matroska/WebM"), (b"OggS", "Ogg"),
                        (b"FLV", "FLV"), (b"\x30\x26\xb2\x75", "ASF/WMV"),
                        (b"\x00\x00\x01\xba", "MPEG-PS"), (b"GIF8", "GIF")):
        if head.startswith(magic):
            return name
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "MPEG-TS"
    return None


def _sniff_codec(container: str, data: bytes) -> str | None:
    """Best-effort video codec FourCC from AVI 'strh' or MP4 'stsd' boxes; None if not found."""
    if container == "AVI":  # 'strh' size 'vids' handler ... 'strf' size BITMAPINFOHEADER
        i = data.find(b"strh")
        if i < 0 or data[i + 8:i + 12] != b"vids":
            return None
        code = data[i + 12:i + 16]
        j = data.find(b"strf", i)
        if code.strip(b"\x00 ") == b"" and j >= 0:
            code = data[j + 24:j + 28]  # biCompression
        return code.decode("latin-1") if code.strip(b"\x00 ") else None
    if container in ("MP4/MOV", "QuickTime"):
        i = data.find(b"stsd")
        while i >= 0:
            fmt = data[i + 16:i + 20]  # box: size, 'stsd', version/flags, count, entry size, fmt
            if len(fmt) == 4 and fmt not in _AUDIO_CODECS:
                return fmt.decode("latin-1")
            i = data.find(b"stsd", i + 4)
    return None


def _looks_like_text(head: bytes) -> bool:
    sample = head[:4096]
    if b"\x00" in sample:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Webcams (live capture)
# ---------------------------------------------------------------------------------------------
CAMERA_FPS = 30.0  # when the camera does not report a rate


def open_camera(index: int):
    """(OpenCV capture of webcam ``index``, its frame rate; ``CAMERA_FPS`` when the camera
    reports none)."""
    cap = cv2.VideoCapture(int(index))
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"camera {index} could not be opened")
    fps = cap.get(cv2.CAP_PROP_FPS)
    return cap, (fps if 1.0 <= fps <= 240.0 else CAMERA_FPS)


def camera_frames(cap, stop: threading.Event) -> Iterator[np.ndarray]:
    """RGB uint8 frames (H, W, 3) of an opened camera until ``stop`` is set or it fails;
    releases it at the end."""
    try:
        while not stop.is_set():
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
