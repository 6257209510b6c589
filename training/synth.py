"""``blaze2cap synth --totalcapture DIR --out DIR``: the data engine (needs ``make synth-install``).

Renders Anny bodies posed with ground-truth motion (the TotalCapture sequences and any
``--bvh`` files, see ``dataengine.motion``) in headless ``bpy`` Workbench, runs BlazePose over every clip exactly as ``blaze2cap extract`` does and writes one
file per clip plus ``manifest.jsonl`` (see ``dataengine.engine``). Deterministic from
``--seed``; a killed run continues where it stopped when started again with the same
settings (``--clips`` may grow). Then ``blaze2cap prepare --totalcapture ... --engine DIR
--engine-weight W`` mixes the clips with the real pairs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from engine.errors import InputError


def _csv(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dataengine.cameras import ViewConfig
    from capture.blazepose import MODEL_COMPLEXITY
    from dataengine.engine import SynthConfig

    parser.add_argument("--totalcapture", type=Path, required=True, metavar="DIR",
                        help="the shared TotalCapture package (its gt/ motion and cameras)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="output folder (default ~/.cache/blaze2cap/synth)")
    parser.add_argument("--clips", type=int, default=100, help="clips 0..N-1 (default 100)")
    parser.add_argument("--frames-per-clip", type=int, default=120,
                        help="frames per clip (default 120)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes (each holds Anny, Blender and BlazePose)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole run")
    parser.add_argument("--size", type=int, default=ViewConfig.size,
                        help="long image side in pixels (default %(default)s)")
    parser.add_argument("--tc-fraction", type=float, default=ViewConfig.tc_fraction,
                        help="share of clips seen by a real TotalCapture camera "
                             "(default %(default)s; the others: random views)")
    parser.add_argument("--antialiasing", default="OFF",
                        choices=("OFF", "FXAA", "5", "8", "11", "16", "32"),
                        help="Workbench anti-aliasing (default OFF: 3x faster on CPU)")
    parser.add_argument("--sequences", type=_csv, default=None, metavar="SEQ,...",
                        help="draw motion only from these sequences (TC names such as "
                             "S1_acting1, or bvh:STEM for a --bvh file)")
    parser.add_argument("--pose-model", default=SynthConfig.pose_model,
                        choices=tuple(MODEL_COMPLEXITY),
                        help="BlazePose landmark model (default %(default)s; heavy is the model "
                             "of the shared real landmarks, installed by make install)")
    parser.add_argument("--bvh", type=Path, nargs="+", default=(), metavar="FILE",
                        help="BVH files whose motion joins the TotalCapture sequences "
                             "(joints named like TotalCapture, Mixamo or CMU; any rest pose)")


def run(args: argparse.Namespace) -> int:
    from capture.video import quiet_native_logs
    from dataengine.cameras import ViewConfig
    from dataengine.engine import SynthConfig, default_out_dir, generate

    if not args.debug:
        quiet_native_logs()
    try:
        import anny  # noqa: F401 (optional: checked here so the error is one clear line)
    except ImportError as err:
        raise InputError(f"the data engine needs the optional package anny ({err}): "
                         f"run make synth-install") from err
    if args.size < 128:
        raise InputError(f"--size must be at least 128 pixels, got {args.size}")
    if not 0.0 <= args.tc_fraction <= 1.0:
        raise InputError(f"--tc-fraction must be between 0 and 1, got {args.tc_fraction}")
    out = args.out if args.out is not None else default_out_dir()
    cfg = SynthConfig(totalcapture=args.totalcapture, seed=args.seed,
                      frames_per_clip=args.frames_per_clip,
                      view=ViewConfig(size=args.size, tc_fraction=args.tc_fraction),
                      antialiasing=args.antialiasing,
                      sequences=tuple(args.sequences) if args.sequences else None,
                      bvh=tuple(Path(p).resolve() for p in args.bvh),
                      pose_model=args.pose_model)
    from capture.models import require_pose_model

    require_pose_model(cfg.pose_model)  # one line now, not a traceback from every worker
    with tqdm(desc="synth", unit="clip", dynamic_ncols=True) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        summary = generate(cfg, out, args.clips, workers=args.workers, progress=progress)
    hours = summary["seconds"] / 3600
    rate = summary["detected"] / hours if hours > 0 else 0.0
    backend = f"; rendered with {summary['backend']}" if summary["backend"] else ""
    print(f"{out}: {summary['made']} clips made ({summary['frames']} frames, "
          f"{summary['detected']} with a person: {rate:.0f} landmark frames/hour), "
          f"{summary['skipped']} already there{backend}")
    return 0
