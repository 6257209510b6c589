"""``blaze2cap animate VIDEO``: a video in, an animated Blender armature out, headless.

Runs BlazePose over the video, the engine over the landmarks and Blender (the ``bpy`` module,
no UI) over the result: a factory-fresh scene, the Blaze2Cap armature named after the video,
its keys, the scene's frame rate and range from the video. Writes any of ``--blend``,
``--bvh``, ``--fbx`` (Blender's own exporters, see ``blaze2cap_addon.exporters``) and
``--preview`` (side-by-side mp4 of the video and the predicted skeleton), each atomically.

The same pipeline as the add-on's Animate button (``blaze2cap_addon.job.run_pipeline`` and
``blaze2cap_addon.scene.apply_animation``), so both give the same keys.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from capture.blazepose import MODEL_COMPLEXITY

    parser.add_argument("video", type=Path, help="input video of one person")
    parser.add_argument("--blend", type=Path, help="write the scene to this .blend file")
    parser.add_argument("--bvh", type=Path, help="write the animation to this .bvh file")
    parser.add_argument("--fbx", type=Path, help="write the armature and animation to this .fbx")
    parser.add_argument("--preview", type=Path,
                        help="write a side-by-side preview .mp4 (video | predicted skeleton)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="engine weights (.safetensors or .pt; default: the shipped weights)")
    parser.add_argument("--start", type=int, default=0, help="first video frame (default 0)")
    parser.add_argument("--end", type=int, default=None,
                        help="stop before this video frame (default: the end of the video)")
    parser.add_argument("--no-root-motion", dest="root_motion", action="store_false",
                        help="keep the hips above the origin (height kept, no travel)")
    parser.add_argument("--smoothing", type=float, default=0.0,
                        help="Gaussian smoothing of the keys, sigma in frames (default 0 = off)")
    parser.add_argument("--pose-model", default="heavy", choices=tuple(MODEL_COMPLEXITY),
                        help="BlazePose model (default heavy: the model the engine was trained "
                             "on; full: about twice as fast, less accurate)")
    # Benchmarks and tests: (F, 33, 10) landmarks with their .json sidecar instead of BlazePose.
    parser.add_argument("--landmarks", type=Path, default=None, help=argparse.SUPPRESS)


def animate(video: str | Path, bvh: str | Path | None = None, fbx: str | Path | None = None,
            blend: str | Path | None = None, preview: str | Path | None = None,
            checkpoint: str | Path | None = None, start: int = 0, end: int | None = None,
            root_motion: bool = True, smoothing: float = 0.0,
            progress: Callable[[float, str], None] | None = None,
            landmarks: str | Path | None = None, pose_model: str = "heavy") -> dict:
    """Video -> animated armature; returns a summary dict (armature, frames, detected, fps,
    start, camera tilt in degrees, the files written).

    ``progress(fraction, message)`` is called as the stages advance. ``landmarks``: an
    (F, 33, 10) .npy with its sidecar (as ``blaze2cap extract`` writes) used instead of
    running BlazePose (the video then only names the armature). ``pose_model``: BlazePose
    model ("heavy" or "full", see ``capture.blazepose``). Raises
    ``engine.errors.Blaze2CapError`` subclasses (one sentence) for bad input, missing
    weights, an unreadable video or one without a person.
    """

    from blaze2cap_addon.job import AnimateSettings, check_settings, run_pipeline
    from capture.video import check_frame_range, probe_video
    from engine.errors import InputError

    video = Path(video)
    outputs = {"blend": blend, "bvh": bvh, "fbx": fbx, "preview": preview}
    for kind, path in outputs.items():  # fail before the long run, not after it
        suffix = ".mp4" if kind == "preview" else f".{kind}"
        if path is None:
            continue
        if Path(path).suffix.lower() != suffix:
            raise InputError(f"--{kind} must name a {suffix} file, got {path}")
        if not Path(path).expanduser().resolve().parent.is_dir():
            raise InputError(f"output folder does not exist: {Path(path).parent}")
    if landmarks is not None:
        from capture.blazepose import read_sidecar

        if not Path(landmarks).is_file() or read_sidecar(landmarks) is None:
            raise InputError(f"--landmarks needs an .npy file with its .json sidecar: {landmarks}")
    with tempfile.TemporaryDirectory(prefix="blaze2cap-") as tmp:
        settings = AnimateSettings(
            video=video, landmarks_path=Path(landmarks or Path(tmp) / "landmarks.npy"),
            checkpoint=Path(checkpoint) if checkpoint is not None else None, start=start,
            end=end, root_motion=root_motion, smoothing=smoothing,
            reuse_landmarks=landmarks is not None, pose_model=pose_model)
        if landmarks is None:  # a bad video or frame range: one line, before any progress
            check_settings(settings)
            check_frame_range(probe_video(video), start, end)
        result = run_pipeline(settings, progress=progress)
        written = {}
        if preview is not None:  # first, so the landmarks can go before Blender gets the keys
            from capture.preview import render_preview

            render_preview(video, result.landmarks, result.joints, preview, fps=result.fps,
                           start=result.start)
            written["preview"] = Path(preview)
        owned = [result]
        del result  # _build_scene frees it before Blender evaluates the scene
        return _build_scene(owned, bvh, fbx, blend, written)


def _build_scene(owned: list, bvh, fbx, blend, written: dict) -> dict:
    """The main-thread half: a factory scene, the armature and its keys, then the files.
    Takes the ``AnimateResult`` out of ``owned`` and frees it before the scene is evaluated
    (Blender then copies the action; for an hour-long clip each copy is hundreds of MB)."""
    import bpy
    import numpy as np

    from blaze2cap_addon import exporters, scene
    from engine.retarget import CAMERA_UP

    result = owned.pop()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    _enable_exporters(bvh is not None, fbx is not None)
    obj = scene.apply_animation(bpy.context, result, show_first_frame=False)
    up = result.animation.placement.up_camera
    summary = {"armature": obj.name, "frames": result.frames, "detected": result.detected,
               "fps": result.fps, "start": result.start,
               "camera_tilt_deg": float(np.degrees(np.arccos(np.clip(up @ CAMERA_UP, -1, 1))))}
    del result
    sc = bpy.context.scene
    sc.frame_set(sc.frame_start)
    if blend is not None:
        written["blend"] = exporters.save_blend(blend)
    if bvh is not None:
        written["bvh"] = exporters.export_bvh(bpy.context, obj, bvh)
    if fbx is not None:
        written["fbx"] = exporters.export_fbx(bpy.context, obj, fbx)
    return summary | {"frame_range": (sc.frame_start, sc.frame_end),
                      "outputs": {k: str(v) for k, v in written.items()}}


def _enable_exporters(bvh: bool, fbx: bool) -> None:
    """Blender's bundled BVH / FBX add-ons (on in factory settings; make sure)."""
    import addon_utils

    for wanted, module in ((bvh, "io_anim_bvh"), (fbx, "io_scene_fbx")):
        if wanted and not addon_utils.check(module)[1]:
            addon_utils.enable(module, default_set=False)


def _one_engine_thread() -> None:
    """The engine is a few percent of the run; torch's spinning worker threads would only take
    cores from BlazePose, which runs at the same time."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if not args.debug:
        from capture.video import quiet_native_logs

        quiet_native_logs()
    _one_engine_thread()
    bar = None  # opened on the first progress report, so input errors print one line only

    def progress(fraction: float, message: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=100, desc="animate", unit="%", dynamic_ncols=True,
                       bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
        bar.set_postfix_str(message, refresh=False)
        bar.update(round(100 * fraction) - bar.n)

    try:
        summary = animate(args.video, bvh=args.bvh, fbx=args.fbx, blend=args.blend,
                          preview=args.preview, checkpoint=args.checkpoint, start=args.start,
                          end=args.end, root_motion=args.root_motion,
                          smoothing=args.smoothing, progress=progress,
                          landmarks=args.landmarks, pose_model=args.pose_model)
    finally:
        if bar is not None:
            bar.close()
    first, last = summary["frame_range"]
    print(f"{summary['armature']}: {summary['frames']} frames ({summary['detected']} with a "
          f"person) at {summary['fps']:g} fps, Blender frames {first}-{last}, camera tilt "
          f"{summary['camera_tilt_deg']:.0f} deg")
    for kind, path in summary["outputs"].items():
        print(f"  {kind}: {path}")
    return 0
