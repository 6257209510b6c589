"""``make demo`` (``python -m training.demo``): a real video in, an animated rig out.

Fetches the Sports2D sample video (``capture.samples``, cached after the first run) and runs
the animate pipeline (``training.animate.animate``), writing ``out/demo.blend``,
``out/demo.bvh``, ``out/demo.fbx`` and ``out/demo_preview.mp4``.

Where animate cannot run (``training.animate`` missing, or no model weights yet), it runs the
stages it can: BlazePose extraction (``out/demo_landmarks.npy``), prediction when
``engine.inference`` and weights exist, and the preview (with BlazePose's own 3D landmarks
when there is no prediction). Every step is reported as ``[ran]`` or ``[skip]``.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from capture.blazepose import extract_landmarks
from capture.preview import render_preview
from capture.samples import SAMPLES, sample_video
from engine.errors import Blaze2CapError, CheckpointError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.demo",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("out"), help="default: out/")
    parser.add_argument("--sample", default="sports2d", choices=sorted(SAMPLES),
                        help="sample video (default: sports2d)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="model weights (default: the shipped engine/weights)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except Blaze2CapError as err:
        print(f"demo: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    video = sample_video(args.sample)
    print(f"[ran]  fetch sample video: {video}")
    files = {k: out / f"demo{s}" for k, s in
             (("blend", ".blend"), ("bvh", ".bvh"), ("fbx", ".fbx"), ("preview", "_preview.mp4"))}

    if importlib.util.find_spec("training.animate") is None:
        print("[skip] animate: training.animate is not available")
    else:
        from training.animate import animate

        try:
            with tqdm(total=100, desc="animate", unit="%") as bar:
                summary = animate(video, checkpoint=args.checkpoint,
                                  progress=lambda f, m: _percent(bar, f, m), **files)
        except CheckpointError as err:  # no weights yet: show what the stages before can do
            print(f"[skip] animate: {err}")
        else:
            print(f"[ran]  animate: {summary['frames']} frames ({summary['detected']} with a "
                  f"person) -> " + ", ".join(summary["outputs"].values()))
            return 0

    lm_path = out / "demo_landmarks.npy"
    with tqdm(desc="BlazePose", unit="frame") as bar:
        res = extract_landmarks(video, lm_path, progress=lambda d, t: _tick(bar, d, t))
    print(f"[ran]  extract: {lm_path} ({res.frames} frames, {res.detected} with a person, "
          f"{res.processing_fps:.1f} frames/s)")
    landmarks = np.load(lm_path)
    joints = _predict_joints(landmarks, res.aspect, res.fps, args.checkpoint)
    prev = render_preview(video, landmarks, joints, files["preview"], fps=res.fps)
    print(f"[ran]  preview: {prev.out_path} ({prev.frames} frames"
          f"{'' if joints is not None else ', BlazePose world landmarks in 3D'})")
    print(f"[skip] {files['blend']}, {files['bvh']}, {files['fbx']}: need the animate step")
    return 0


def _predict_joints(landmarks: np.ndarray, aspect: float, fps: float,
                    checkpoint: Path | None) -> np.ndarray | None:
    """(F, 21, 3) joints from engine.inference, or None (with a [skip] line) when unavailable."""
    if importlib.util.find_spec("engine.inference") is None:
        print("[skip] predict: engine.inference is not available")
        return None
    from engine.inference import Predictor

    try:
        predictor = Predictor.from_checkpoint(checkpoint)
    except CheckpointError as err:
        print(f"[skip] predict: {err}")
        return None
    pred = predictor.predict(landmarks, aspect=aspect, fps=fps)
    print(f"[ran]  predict: {len(pred)} frames")
    return pred.joints


def _percent(bar: tqdm, fraction: float, message: str) -> None:
    bar.set_postfix_str(message, refresh=False)
    bar.update(round(100 * fraction) - bar.n)


def _tick(bar: tqdm, done: int, total: int | None) -> None:
    if total is not None and bar.total != total:
        bar.total = total
    bar.update(done - bar.n)


if __name__ == "__main__":
    sys.exit(main())
