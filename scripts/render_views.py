"""Weights on the data engine's renders, by BlazePose model and by kind of view.

    .venv/bin/python scripts/render_views.py --totalcapture ../shared/data/totalcapture \\
        --engine full=DIR_A --engine heavy=DIR_B --out runs/render_views [--checkpoint W]

Every ``--engine`` folder (``blaze2cap synth`` output) becomes a dataset of its clips (stride 1,
no mirror; ``prepare`` keeps one real sequence, S2_acting1, only as its test split and leaves
that motion's clips out) and is evaluated like ``blaze2cap evaluate --split train`` with the
weights (default: the shipped ones, with their output smoothing). Folders made from the same
seed and clip count hold the same renders, so two folders that differ only in
``--pose-model`` compare BlazePose's models on the same frames. Prints, per folder, MPJPE /
PA-MPJPE (mm) / MARE (rad) of the model and of BlazePose's own world landmarks (naive) on the
tracked frames, pooled over the clips seen by the 8 real TotalCapture cameras and over the
other (random) views, and writes ``OUT/render_views.{json,md}``.

Measured with the shipped weights on 246 clips (about 34,000 tracked frames): the weights are
7 % more accurate on heavy-model landmarks than on the full model's of the same frames, and
on random views (other heights, distances, lenses, portrait) they are worse than BlazePose's
own landmarks (README, Data engine).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from engine.atomic import write_json_atomic
from engine.inference import Predictor
from training.cli import main as cli
from training.evaluate import evaluate_dataset

KEYS = ("mpjpe_mm", "pa_mpjpe_mm", "mare_rad")
HOLD = "S2_acting1"  # prepare needs one real sequence; it only fills the unused test split


def _pool(groups: dict, cams: list[str], method: str) -> dict:
    """Frame-weighted means of per-camera results."""
    n = sum(groups[c]["frames"] for c in cams)
    out = {"frames": n}
    for k in KEYS:
        vals = [(groups[c]["frames"], groups[c]["methods"][method].get(k)) for c in cams]
        out[k] = (None if any(v is None for _, v in vals)
                  else sum(f * v for f, v in vals) / n)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--totalcapture", type=Path, required=True)
    ap.add_argument("--engine", action="append", required=True, metavar="NAME=DIR")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="weights (default: the shipped ones)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    predictor = Predictor.from_checkpoint(args.checkpoint)
    res = {}
    for spec in args.engine:
        name, _, folder = spec.rpartition("=")
        name = name or Path(folder).name
        ds = args.out / f"{name}_data"
        shutil.rmtree(ds, ignore_errors=True)
        if cli(["prepare", "--totalcapture", str(args.totalcapture), "--out", str(ds),
                "--engine", folder, "--strides", "1", "--no-mirror",
                "--sequences", HOLD, "--val", HOLD]):
            raise SystemExit(f"prepare failed for {folder}")
        ev = evaluate_dataset(predictor, ds, "train")["subsets"]["tracked"]
        shutil.rmtree(ds, ignore_errors=True)
        cams = ev["per_camera"]
        tc = sorted(c for c in cams if c != "0")
        res[name] = {view: {m: _pool(cams, sel, m) for m in ("model", "blazepose")}
                     for view, sel in (("tc_views", tc), ("random_views", ["0"]),
                                       ("all", tc + ["0"]))}
        res[name]["per_camera"] = cams
    write_json_atomic(args.out / "render_views.json", res)
    lines = ["| landmarks | views | frames | model: MPJPE / PA-MPJPE / MARE | BlazePose (naive): "
             "MPJPE / PA-MPJPE |", "|---|---|---:|---|---|"]
    for name, r in res.items():
        for view, label in (("tc_views", "the 8 TotalCapture cameras"),
                            ("random_views", "random views"), ("all", "all")):
            m, b = r[view]["model"], r[view]["blazepose"]
            lines.append(f"| {name} | {label} | {m['frames']:,} | {m['mpjpe_mm']:.1f} / "
                         f"{m['pa_mpjpe_mm']:.1f} / {m['mare_rad']:.3f} | {b['mpjpe_mm']:.1f} / "
                         f"{b['pa_mpjpe_mm']:.1f} |")
    (args.out / "render_views.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
