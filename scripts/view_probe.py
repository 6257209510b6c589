"""Does engine data teach the per-frame branch views that the real pairs lack?

    .venv/bin/python scripts/view_probe.py --totalcapture ../shared/data/totalcapture \\
        --engine-train DIR_A --engine-test DIR_B --out runs/view_probe [--steps 4000]
        [--val S2_freestyle2] [--engine-share 0.25]

Trains the model's per-frame branch (as ``scripts/crossval_probe.py``: ``FrameBranch`` on
standardised features, width 256, 2 blocks, batches of 1024 clean frames, same seed and steps)
twice: on the real pairs alone and on the real pairs plus the clips of ``--engine-train`` (that
share of every batch), with the real sequence ``--val`` held out. Scores both on

* the held-out real sequence (all 8 TotalCapture cameras), and
* the clips of ``--engine-test`` (other bodies, clips and views than the training clips: a
  separate folder, or the same plan's later clip indices), split into those seen by a real
  TotalCapture camera and those seen from a random view,

as MPJPE / PA-MPJPE (mm, the protocol's 12 joints) of clean frames, and writes
``OUT/view_probe.{json,md}``. The real test frames are all seen from the eight TotalCapture
camera positions, as the real training frames are; the random views are not.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from crossval_probe import _engine_rows, fit_branch, score_branch  # noqa: E402
from position_probe import clean_frames  # noqa: E402

from engine.atomic import write_json_atomic  # noqa: E402
from engine.data import WindowDataset  # noqa: E402
from training.cli import main as cli  # noqa: E402


def _view_rows(ds: WindowDataset, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Indices (into the clean frames) of clips seen by a TotalCapture camera / a random view."""
    entry = np.repeat(np.arange(len(ds.entries)), np.diff(ds.starts))[rows]
    cam = np.array([int(e.get("camera") or 0) for e in ds.entries])[entry]
    return {"tc_views": np.flatnonzero(cam > 0), "random_views": np.flatnonzero(cam == 0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--totalcapture", type=Path, required=True)
    ap.add_argument("--engine-train", type=Path, required=True)
    ap.add_argument("--engine-test", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--val", default="S2_freestyle2")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--engine-share", type=float, default=0.25)
    args = ap.parse_args()
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    tc = str(args.totalcapture)
    train_ds, test_ds = args.out / "train_data", args.out / "engine_test_data"
    for ds, extra in ((train_ds, ["--engine", str(args.engine_train)]),
                      (test_ds, ["--engine", str(args.engine_test), "--strides", "1",
                                 "--no-mirror", "--sequences", args.val])):
        if not (ds / "dataset_map.json").is_file():
            if cli(["prepare", "--totalcapture", tc, "--out", str(ds), "--val", args.val, *extra]):
                raise SystemExit(f"prepare failed for {ds}")
    train_set, test_set = WindowDataset(train_ds, "train"), WindowDataset(test_ds, "train")
    tr, real_te = clean_frames(train_set), clean_frames(WindowDataset(train_ds, "test"))
    eng_te = clean_frames(test_set)
    views = _view_rows(test_set, eng_te["rows"])
    is_eng = _engine_rows(train_set, tr["rows"])
    eng, real = (torch.from_numpy(np.flatnonzero(m)) for m in (is_eng, ~is_eng))
    res = {}
    for arm, n_eng in (("real", 0), ("real + engine", int(round(1024 * args.engine_share)))):
        net = fit_branch(tr, real, eng, n_eng, args.steps)
        res[arm] = {"real_heldout": score_branch(net, real_te),
                    **{v: score_branch(net, eng_te, r) for v, r in views.items()}}
        print(arm, json.dumps(res[arm]), flush=True)
    res["settings"] = {"val": args.val, "steps": args.steps, "engine_share": args.engine_share,
                       "engine_train": str(args.engine_train),
                       "engine_test": str(args.engine_test)}
    write_json_atomic(args.out / "view_probe.json", res)
    cols = (("real_heldout", f"real {args.val} (8 TC views)"),
            ("tc_views", "engine test clips, TC views"),
            ("random_views", "engine test clips, random views"))
    lines = ["| trained on | " + " | ".join(c[1] for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for arm in ("real", "real + engine"):
        lines.append(f"| {arm} | " + " | ".join(
            f"{res[arm][k]['mpjpe_mm']:.1f} / {res[arm][k]['pa_mpjpe_mm']:.1f}" for k, _ in cols)
            + " |")
    lines.append("| change | " + " | ".join(
        " / ".join(f"{100 * (res['real + engine'][k][m] / res['real'][k][m] - 1):+.1f} %"
                   for m in ("mpjpe_mm", "pa_mpjpe_mm")) for k, _ in cols) + " |")
    lines += ["", "frames: " + ", ".join(f"{c[1]} {res['real'][c[0]]['frames']:,}"
                                         for c in cols)]
    (args.out / "view_probe.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    for ds in (train_ds, test_ds):
        shutil.rmtree(ds, ignore_errors=True)


if __name__ == "__main__":
    main()
