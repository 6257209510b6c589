"""``blaze2cap crossval``: leave one motion sequence out, real data alone vs real + data engine.

For every fold (one real BlazePose motion sequence, all its cameras, held out) and every arm
(``real``: the real pairs; ``engine``: the real pairs plus the clips of a data-engine folder
from ``blaze2cap synth``, with a loss weight), the command runs the product's own steps::

    blaze2cap prepare --totalcapture TC --out OUT/SEQ/ARM/data --val SEQ [--engine DIR ...]
    blaze2cap train   --config RECIPE --data .../data --out OUT/SEQ/ARM/run
    blaze2cap evaluate --checkpoint .../run/best.pt --data .../data --split test --json .../eval.json

and then writes a table of the tracked-subset MPJPE / PA-MPJPE per fold and arm, with the
relative change of the engine arm (``OUT/crossval.json``, ``OUT/crossval.md``).

Resumable: a fold/arm with ``eval.json`` is done and skipped; one with a training run in
progress continues it (``train --resume``: same loss curve after a kill); a prepared dataset
(its ``dataset_map.json`` is written last) is reused. The prepared data is deleted once the
arm is evaluated unless ``--keep-data`` is given (about 1.6 GB per arm with all cameras).
The data-engine entries of the held-out motion are left out by ``prepare --engine`` itself.

Which folds: every sequence with real BlazePose files in the TotalCapture folder (``--folds``
picks some). The engine arm only changes the data; recipe, seed and steps are the same
(``--set train.engine_share=S`` goes to the engine arm only).
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

from engine.atomic import atomic_write_bytes, write_json_atomic
from engine.data import MAP_NAME
from engine.errors import DatasetError, InputError

from .totalcapture import list_blazepose_files

log = logging.getLogger(__name__)

SUBSET = "tracked"
ARMS = ("real", "engine")


def fold_sequences(tc_dir: Path, cameras: tuple[int, ...] | None = None) -> list[str]:
    """Motion sequences with real BlazePose files (on the given cameras), sorted."""
    files = list_blazepose_files(tc_dir)
    return sorted({b.sequence for b in files if cameras is None or b.camera in cameras})


def _cli(argv: list[str]) -> None:
    """Run one ``blaze2cap`` subcommand in this process; a failure stops the whole run."""
    from .cli import main

    log.info("blaze2cap %s", " ".join(argv))
    code = main(argv)
    if code:
        raise DatasetError(f"'blaze2cap {' '.join(argv[:1])}' failed (exit {code}) during "
                           "cross-validation: fix the cause and run the same command again "
                           "to continue")


def run_arm(args: argparse.Namespace, seq: str, arm: str) -> dict:
    """Prepare, train and evaluate one fold/arm (skipping what is done); returns its
    tracked-subset overall model metrics plus the frame count."""
    base = args.out / seq / arm
    data, run_dir, result = base / "data", base / "run", base / "eval.json"
    if not result.is_file():
        if not (data / MAP_NAME).is_file():
            prep = ["prepare", "--totalcapture", str(args.totalcapture), "--out", str(data),
                    "--val", seq]
            if args.cameras:
                prep += ["--cameras", ",".join(map(str, args.cameras))]
            if args.sequences:
                prep += ["--sequences", ",".join(args.sequences)]
            if arm == "engine":
                prep += ["--engine", str(args.engine), "--engine-weight", str(args.engine_weight)]
            _cli(prep)
        train = ["train", "--data", str(data), "--out", str(run_dir)]
        if (run_dir / "last.pt").is_file():
            train += ["--resume"]
        else:
            train += ["--config", args.config]
        if args.max_steps is not None:
            train += ["--max-steps", str(args.max_steps)]
        for kv in args.set or ():
            if arm == "real" and kv.split("=", 1)[0].strip() == "train.engine_share":
                continue  # the share of engine windows: the real arm has none
            train += ["--set", kv]
        _cli(train)
        _cli(["evaluate", "--checkpoint", str(run_dir / "best.pt"), "--data", str(data),
              "--split", "test", "--smoothing", args.smoothing, "--json", str(result)])
        if not args.keep_data:
            shutil.rmtree(data, ignore_errors=True)
    try:
        res = json.loads(result.read_text(encoding="utf-8"))
        overall = res["subsets"][SUBSET]["overall"]
        model = overall["methods"]["model"]
        return {"frames": overall["frames"], "mpjpe_mm": model["mpjpe_mm"],
                "pa_mpjpe_mm": model["pa_mpjpe_mm"],
                "naive_mpjpe_mm": overall["methods"]["blazepose"]["mpjpe_mm"],
                "naive_pa_mpjpe_mm": overall["methods"]["blazepose"]["pa_mpjpe_mm"]}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DatasetError(f"{result} is not a readable evaluation (delete it to redo this "
                           f"fold): {err}") from None


def _change(new: float | None, old: float | None) -> float | None:
    return None if new is None or not old else 100.0 * (new - old) / old


def summarize(folds: dict[str, dict[str, dict]]) -> dict:
    """Per fold and arm metrics -> the same plus the engine arm's change in %, and the mean
    over folds of every number (folds weigh equally: each is one motion)."""
    rows = {}
    for seq, arms in folds.items():
        row = dict(arms)
        if "real" in arms and "engine" in arms:
            row["change_pct"] = {k: _change(arms["engine"][k], arms["real"][k])
                                 for k in ("mpjpe_mm", "pa_mpjpe_mm")}
        rows[seq] = row
    mean = {}
    for arm in ARMS:
        vals = [r[arm] for r in rows.values() if arm in r]
        if vals and len(vals) == len(rows):
            mean[arm] = {k: sum(v[k] for v in vals) / len(vals)
                         for k in ("mpjpe_mm", "pa_mpjpe_mm", "naive_mpjpe_mm", "naive_pa_mpjpe_mm")}
    if "real" in mean and "engine" in mean:
        mean["change_pct"] = {k: _change(mean["engine"][k], mean["real"][k])
                              for k in ("mpjpe_mm", "pa_mpjpe_mm")}
    return {"subset": SUBSET, "folds": rows, "mean": mean}


def _f(v, digits=1, suffix="") -> str:
    return "–" if v is None else f"{v:+.{digits}f}{suffix}" if suffix else f"{v:.{digits}f}"


def format_table(summary: dict, arms: tuple[str, ...]) -> str:
    """Markdown: one row per held-out sequence, MPJPE / PA-MPJPE (mm) per arm."""
    head = ["held-out sequence", "frames", "naive"] + [f"{a}" for a in arms]
    if len(arms) == 2:
        head.append("engine vs real")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cells(name, row, frames):
        any_arm = next(iter(row[a] for a in arms if a in row), None)
        naive = (f"{_f(any_arm['naive_mpjpe_mm'])} / {_f(any_arm['naive_pa_mpjpe_mm'])}"
                 if any_arm else "–")
        out = [name, frames, naive]
        for a in arms:
            out.append(f"{_f(row[a]['mpjpe_mm'])} / {_f(row[a]['pa_mpjpe_mm'])}" if a in row else "–")
        if len(arms) == 2:
            ch = row.get("change_pct")
            out.append(f"{_f(ch['mpjpe_mm'], 1, ' %')} / {_f(ch['pa_mpjpe_mm'], 1, ' %')}"
                       if ch else "–")
        return "| " + " | ".join(out) + " |"

    for seq, row in summary["folds"].items():
        lines.append(cells(seq, row, str(next(iter(row[a]["frames"] for a in arms if a in row), "–"))))
    if summary["mean"]:
        lines.append(cells("**mean over folds**", summary["mean"], ""))
    lines.append("")
    lines.append(f"MPJPE / PA-MPJPE in mm, subset `{summary['subset']}`, each fold's model trained "
                 "without the held-out motion (all its cameras).")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--totalcapture", type=Path, required=True, metavar="DIR",
                        help="the shared TotalCapture package (../shared/data/totalcapture)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="folder for every fold's data, run and evaluation (resumable)")
    parser.add_argument("--engine", type=Path, default=None, metavar="DIR",
                        help="a data-engine folder (blaze2cap synth): adds the 'engine' arm")
    parser.add_argument("--engine-weight", type=float, default=1.0, metavar="W",
                        help="loss weight of the data-engine entries (real entries weigh 1)")
    parser.add_argument("--arms", default=None, metavar="ARM,...",
                        help="which arms to run: real, engine (default: both with --engine, "
                             "else real)")
    parser.add_argument("--folds", default=None, metavar="SEQ,...",
                        help="held-out sequences (default: every sequence with real BlazePose)")
    parser.add_argument("--config", default="shipped", metavar="RECIPE",
                        help="training recipe for every fold (default: shipped)")
    parser.add_argument("--max-steps", type=int, default=None, help="override the recipe's steps")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="recipe override passed to train (repeatable)")
    parser.add_argument("--cameras", default=None, metavar="C,...",
                        help="only these cameras (default: all)")
    parser.add_argument("--sequences", default=None, metavar="SEQ,...",
                        help="only these sequences in the data (default: all)")
    parser.add_argument("--smoothing", default="off", metavar="MIN_CUTOFF,BETA[,SLOT=HZ...]|off",
                        help="output smoothing at evaluation, the same for both arms (default: off)")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep each arm's prepared dataset after its evaluation")


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    try:
        args.cameras = tuple(int(c) for c in args.cameras.split(",")) if args.cameras else None
    except ValueError:
        raise InputError(f"--cameras must be comma-separated numbers, got {args.cameras!r}") from None
    args.sequences = tuple(s for s in args.sequences.split(",") if s) if args.sequences else None
    arms = tuple(a for a in (args.arms or ("real,engine" if args.engine else "real")).split(",") if a)
    if not arms or any(a not in ARMS for a in arms):
        raise InputError(f"--arms takes real and/or engine, got {args.arms!r}")
    if "engine" in arms and (args.engine is None or not args.engine.is_dir()):
        raise InputError("the engine arm needs --engine DIR, a folder written by 'blaze2cap synth'")
    if not args.engine_weight > 0:
        raise InputError(f"--engine-weight must be > 0, got {args.engine_weight}")
    available = fold_sequences(args.totalcapture, args.cameras)
    if args.sequences:
        available = [s for s in available if s in args.sequences]
    folds = [s for s in args.folds.split(",") if s] if args.folds else available
    unknown = [s for s in folds if s not in available]
    if unknown or not folds:
        raise InputError(f"no real BlazePose data for fold(s) {', '.join(unknown) or '(none)'}; "
                         f"available: {', '.join(available) or '(none)'}")
    results: dict[str, dict[str, dict]] = {}
    for seq in folds:
        results[seq] = {}
        for arm in arms:
            results[seq][arm] = run_arm(args, seq, arm)
            m = results[seq][arm]
            print(f"{seq} / {arm}: MPJPE {m['mpjpe_mm']:.1f} mm, PA-MPJPE "
                  f"{m['pa_mpjpe_mm']:.1f} mm ({m['frames']} tracked frames)")
    summary = summarize(results)
    summary.update(config=args.config, max_steps=args.max_steps, overrides=list(args.set or ()),
                   engine=str(args.engine) if args.engine else None,
                   engine_weight=args.engine_weight, smoothing=args.smoothing, arms=list(arms))
    table = format_table(summary, arms)
    write_json_atomic(args.out / "crossval.json", summary)
    text = (table + "\n").encode("utf-8")
    atomic_write_bytes(args.out / "crossval.md", lambda f: f.write(text))
    print()
    print(table)
    print(f"\nwrote {args.out / 'crossval.json'}, {args.out / 'crossval.md'} "
          f"({time.perf_counter() - t0:.0f} s)")
    return 0
