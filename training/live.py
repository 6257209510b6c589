"""``blaze2cap live``: BlazePose + the streaming engine on a webcam or a video, frame by frame.

    blaze2cap live --camera 0
    blaze2cap live --video clip.mp4 [--fast] [--max-frames N] [--out poses.npz]
                   [--send 127.0.0.1:9000] [--checkpoint CKPT] [--quiet]

A video is played as a live source at its own frame rate (``--fast``: as fast as the machine
goes). Every frame prints one line: frame number, time in the source, whether a person was
found, the Hips position in the camera frame (metres; x right, y down, z forward) and the
latency from the frame's arrival to its pose. ``--send HOST:PORT`` also sends each pose as
one UDP datagram of JSON: ``{"frame", "time", "person", "root_translation" [3],
"global_quats" [21][4]}`` (w,x,y,z joint -> camera rotations, ``engine.skeleton`` order).
``--out`` writes every frame's landmarks and pose (the fields of
``engine.inference.Prediction``, plus ``latency_ms``, ``fps`` and ``aspect``) to an .npz,
atomically. The work is ``blaze2cap_addon.live.LiveSession``, as in Blender's Live mode.
"""
from __future__ import annotations

import argparse
import io
import json
import socket
from pathlib import Path

import numpy as np


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT' -> (host, port) (argparse type)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--camera", type=int, metavar="N", help="webcam index (e.g. 0)")
    source.add_argument("--video", type=Path, metavar="F", help="a video played as a live source")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="engine weights (.safetensors or .pt; default: the shipped weights)")
    parser.add_argument("--out", type=Path, default=None, metavar="F.npz",
                        help="write every frame's landmarks and pose to this .npz")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N",
                        help="stop after N frames")
    parser.add_argument("--fast", action="store_true",
                        help="do not pace a video to its frame rate")
    parser.add_argument("--send", type=parse_address, default=None, metavar="HOST:PORT",
                        help="send every pose as a JSON UDP datagram")
    parser.add_argument("--backend", choices=("auto", "torch", "numpy"), default="auto",
                        help="network backend (auto: torch when installed)")
    parser.add_argument("--quiet", action="store_true", help="print the summary only")


def frame_line(frame) -> str:
    """The compact per-frame line."""
    pred = frame.prediction
    if frame.detected:
        x, y, z = pred.root_translation[0]
        where = f"person  hips {x:+.2f} {y:+.2f} {z:+.2f} m"
    else:
        where = "-       (no person: last pose held)"
    return f"{frame.index:6d}  {frame.time_s:8.3f} s  {where}  {frame.latency_ms:6.1f} ms"


def pose_message(frame) -> bytes:
    """One frame's pose as a UTF-8 JSON datagram (see the module docstring)."""
    pred = frame.prediction
    return json.dumps({
        "frame": frame.index, "time": round(frame.time_s, 6), "person": frame.detected,
        "root_translation": np.round(pred.root_translation[0], 6).tolist(),
        "global_quats": np.round(pred.global_quats[0], 6).tolist(),
    }, separators=(",", ":")).encode("utf-8")


def save_frames(path: Path, frames: list, fps: float, aspect: float) -> None:
    """All frames' landmarks and poses as one .npz, atomically."""
    from engine.atomic import atomic_write_bytes

    preds = [f.prediction for f in frames]
    arrays = {name: np.concatenate([getattr(p, name) for p in preds])
              for name in ("local_6d", "global_quats", "joints", "root_translation", "valid")}
    buf = io.BytesIO()
    np.savez(buf, landmarks=np.stack([f.landmarks for f in frames]),
             latency_ms=np.array([f.latency_ms for f in frames], dtype=np.float32),
             fps=np.float32(fps), aspect=np.float32(aspect), **arrays)
    data = buf.getvalue()
    atomic_write_bytes(path, lambda f: f.write(data))


def run(args: argparse.Namespace) -> int:
    from blaze2cap_addon.live import LiveSession, LiveSettings
    from engine.errors import InputError

    if args.out is not None and args.out.suffix.lower() != ".npz":
        raise InputError(f"--out must name a .npz file, got {args.out}")
    if args.out is not None and not args.out.expanduser().resolve().parent.is_dir():
        raise InputError(f"output folder does not exist: {args.out.parent}")
    if not args.debug:
        from capture.video import quiet_native_logs

        quiet_native_logs()
    session = LiveSession(LiveSettings(
        video=args.video, camera=args.camera, checkpoint=args.checkpoint, backend=args.backend,
        realtime=not args.fast, max_frames=args.max_frames))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM) if args.send else None
    kept, latencies, detected = [], [], 0
    try:
        for frame in session.frames():
            latencies.append(frame.latency_ms)
            detected += frame.detected
            if args.out is not None:
                kept.append(frame)
            if sock is not None:
                sock.sendto(pose_message(frame), args.send)
            if not args.quiet:
                print(frame_line(frame), flush=True)
    except KeyboardInterrupt:
        pass  # Ctrl+C ends a live session normally: the summary and --out still follow
    finally:
        if sock is not None:
            sock.close()
    if not latencies:
        print("no frames were processed")
        return 0
    lat = np.array(latencies)
    print(f"{len(lat)} frames ({detected} with a person) at {session.fps:g} fps source; latency "
          f"p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms")
    if args.out is not None:
        save_frames(args.out, kept, session.fps, session.aspect)
        print(f"  poses: {args.out}")
    return 0
