"""``blaze2cap predict``: BlazePose landmarks (.npy) -> rotations and joints (.npz).

    blaze2cap predict INPUT.npy --out OUT.npz [--checkpoint CKPT] [--aspect 16/9] [--fps 30]
    blaze2cap predict FOLDER --out OUT_FOLDER            (every *.npy -> OUT_FOLDER/NAME.npz)

INPUT: (F, 33, 10) float landmarks as written by ``blaze2cap extract`` (``engine.features``).
Each .npz (written atomically) holds the fields of ``engine.inference.Prediction``:
``joints`` (F, 21, 3), ``global_quats`` (F, 21, 4) w,x,y,z, ``local_6d`` (F, 22, 6),
``root_translation`` (F, 3), ``valid`` (F,), all in the camera frame (x right, y down,
z forward), metres; plus ``fps``, ``aspect`` and the coverage numbers (``coverage_*``).
Files are read with ``allow_pickle=False``: object arrays are refused.
"""
from __future__ import annotations

import argparse
import io
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

from engine.atomic import atomic_write_bytes
from engine.errors import Blaze2CapError, InputError
from engine.features import DEFAULT_ASPECT, DEFAULT_FOCAL, check_landmarks
from engine.filters import OneEuroConfig
from engine.inference import InferenceConfig, Prediction, Predictor


def parse_aspect(text: str) -> float:
    """'16/9', '1920/1080' or '1.778' -> width / height as a float (argparse type)."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected W/H or a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"the aspect ratio must be positive, got {text!r}")
    return value


_NPY_MAGIC = b"\x93NUMPY"


def load_landmarks(path: Path) -> np.ndarray:
    """Read and check a landmark file -> (F, 33, 10) float32; InputError with one sentence."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir() or path.suffix.lower() != ".npy":
        raise InputError(f"{path} is not a .npy file")
    with open(path, "rb") as f:
        magic = f.read(len(_NPY_MAGIC))
    if magic != _NPY_MAGIC:  # np.load would try to unpickle it
        if magic[:1] == b"\x80":
            raise InputError(f"{path.name} is a Python pickle, not a .npy array; refused")
        raise InputError(f"{path.name} is not a .npy array (it has no NumPy header)")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as err:
        if "allow_pickle" in str(err) or "pickle" in str(err).lower():
            raise InputError(f"{path.name} holds Python objects (a pickle); refused") from None
        raise InputError(f"{path.name} is not a readable .npy array ({err})") from None
    except (OSError, EOFError) as err:
        raise InputError(f"{path.name} is not a readable .npy array ({err})") from None
    try:
        arr = check_landmarks(arr)
    except InputError as err:
        raise InputError(f"{path.name}: {err}") from None
    if arr.shape[0] == 0:
        raise InputError(f"{path.name} holds no frames")
    return arr


def save_prediction(path: Path, pred: Prediction, fps: float, aspect: float) -> None:
    """Write a Prediction as .npz, atomically."""
    cov = pred.coverage.to_dict()
    buf = io.BytesIO()
    np.savez(buf, joints=pred.joints, global_quats=pred.global_quats, local_6d=pred.local_6d,
             root_translation=pred.root_translation, valid=pred.valid,
             fps=np.float32(fps), aspect=np.float32(aspect),
             **{f"coverage_{k}": np.asarray(v) for k, v in cov.items()})
    data = buf.getvalue()
    atomic_write_bytes(path, lambda f: f.write(data))


def _jobs(inp: Path, out: Path) -> list[tuple[Path, Path]]:
    if not inp.exists():
        raise InputError(f"input not found: {inp}")
    for parent in out.parents:  # the nearest existing one must be a folder
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"--out {out}: {parent} is a file, not a folder")
            break
    if inp.is_dir():
        files = sorted(p for p in inp.iterdir() if p.suffix.lower() == ".npy" and p.is_file())
        if not files:
            raise InputError(f"{inp} holds no .npy files")
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {out} must be a folder when INPUT is a folder")
        return [(f, out / f"{f.stem}.npz") for f in files]
    if out.is_dir():
        return [(inp, out / f"{inp.stem}.npz")]
    if out.suffix.lower() != ".npz":
        raise InputError(f"--out {out} must end in .npz (or be an existing folder)")
    return [(inp, out)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, metavar="INPUT",
                        help="(F, 33, 10) landmarks .npy, or a folder of them")
    parser.add_argument("--out", type=Path, required=True, metavar="OUT",
                        help=".npz file, or a folder (one NAME.npz per NAME.npy)")
    parser.add_argument("--checkpoint", type=Path, default=None, metavar="CKPT",
                        help=".pt checkpoint or .safetensors weights (default: the shipped weights)")
    parser.add_argument("--aspect", type=parse_aspect, default=DEFAULT_ASPECT, metavar="W/H",
                        help="video width / height, e.g. 16/9 (default) or 9/16 for portrait")
    parser.add_argument("--fps", type=float, default=30.0,
                        help="frame rate of the landmarks (for gap lengths and smoothing)")
    parser.add_argument("--focal", type=float, default=DEFAULT_FOCAL,
                        help="focal length / long image side (default: a 74 degree field of view)")
    parser.add_argument("--backend", choices=("auto", "torch", "numpy"), default="auto",
                        help="network backend (auto: torch when installed)")
    parser.add_argument("--smooth", action="store_true",
                        help="causal One Euro smoothing of the output rotations (default off)")


def run(args: argparse.Namespace) -> int:
    jobs = _jobs(args.input, args.out)
    config = InferenceConfig(smoothing=OneEuroConfig() if args.smooth else None)
    predictor = Predictor.from_checkpoint(args.checkpoint, backend=args.backend, config=config)
    failed = 0
    for src, dst in jobs:
        try:
            lm = load_landmarks(src)
            pred = predictor.predict(lm, aspect=args.aspect, fps=args.fps, focal=args.focal)
        except Blaze2CapError as err:
            if len(jobs) == 1:
                raise
            print(f"blaze2cap predict: error: {err}", file=sys.stderr)
            failed += 1
            continue
        save_prediction(dst, pred, args.fps, args.aspect)
        c = pred.coverage
        print(f"{src.name} -> {dst}: {c.frames} frame{'s' * (c.frames != 1)}, "
              f"{100 * c.fraction:.1f}% detected, {c.gaps} gap(s) bridged "
              f"({c.interpolated_frames} interpolated, {c.held_frames} held, "
              f"{c.rest_frames} rest pose)")
    if failed:
        print(f"blaze2cap predict: {failed} of {len(jobs)} file(s) failed", file=sys.stderr)
        return 2
    return 0
