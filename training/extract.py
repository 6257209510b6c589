"""``blaze2cap extract VIDEO --out LANDMARKS.npy``: run BlazePose over a video.

Writes (F, 33, 10) float32 landmarks (the format of the shared data, see
``capture.blazepose``) and a JSON sidecar ``LANDMARKS.npy.json`` (fps, size, aspect). Shows a
progress bar, then prints frames / detected / fps.

Exit code 2 with one line for an unreadable video or frame range, and when no person is found
in any frame: then nothing is written, because all-zero landmarks would only animate a rest
pose. A video where the person is missing from some frames is fine (those rows are zeros).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from capture.blazepose import (MODEL_COMPLEXITY, PoseConfig, check_output_path,
                               default_output_path, extract_landmarks)
from capture.video import check_frame_range, probe_video, quiet_native_logs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", type=Path, help="input video (mp4, mov, avi, mkv, webm, ...)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output .npy (default: VIDEO_STEM.landmarks.npy beside the video)")
    parser.add_argument("--start", type=int, default=0, help="first frame (default 0)")
    parser.add_argument("--end", type=int, default=None,
                        help="stop before this frame (default: the end of the video)")
    parser.add_argument("--max-side", type=int, default=PoseConfig.max_side,
                        help="downscale frames so their longer side is at most this many "
                             "pixels before BlazePose (default %(default)s)")
    parser.add_argument("--model", default=PoseConfig.model, choices=tuple(MODEL_COMPLEXITY),
                        help="BlazePose landmark model (default %(default)s; heavy: slower, the "
                             "model of the training landmarks, installed by make install)")


def run(args: argparse.Namespace) -> int:
    if not args.debug:
        quiet_native_logs()
    # Bad input fails here, in one line, before the progress bar shows.
    info = probe_video(args.video)
    check_frame_range(info, args.start, args.end)
    config = PoseConfig(max_side=args.max_side, model=args.model)
    out = check_output_path(args.out if args.out is not None else default_output_path(info.path))
    with tqdm(desc="BlazePose", unit="frame", dynamic_ncols=True) as bar:
        def progress(done: int, total: int | None) -> None:
            if total is not None and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        result = extract_landmarks(info, out, start=args.start, end=args.end,
                                   progress=progress, config=config)
    print(f"{result.out_path}: {result.frames} frames, {result.detected} with a person "
          f"({result.coverage:.0%}), video {result.width}x{result.height} at {result.fps:g} fps; "
          f"BlazePose ran at {result.processing_fps:.1f} frames/s")
    return 0
