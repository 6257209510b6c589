"""Ways of using the engine clips, compared by leave-one-sequence-out cross-validation.

    .venv/bin/python scripts/sim2real_probe.py --totalcapture ../shared/data/totalcapture \\
        --engine DIR --out runs/sim2real [--arms real,mix,flag,...]
        [--folds SEQ,...] [--steps 4000] [--engine-share 0.25]

The per-frame branch of ``scripts/crossval_probe.py`` (``FrameBranch`` on standardised
features, width 256, 2 blocks, batches of 1024 clean frames, the same seed and steps in every
arm), trained on one ``prepare``d fold (real pairs + engine clips, the held-out sequence's
motion left out) in several ways, each standardised by the statistics of the real frames and
the engine frames it draws from (the real arm: all of them):

* ``real``: the real pairs alone;
* ``mix``: ``--engine-share`` of every batch from the engine clips (crossval_probe's arm);
* ``flag``: as ``mix``, with one more input that is 1 on engine frames and 0 on real ones (0 at
  test): the branch may learn what differs between renders and video apart from what they
  share (a domain tag);
* ``pretrain``: twice the share for the first half of the steps, the real pairs alone for the
  second half (pre-train on both, fine-tune on real);
* ``tc_views``: as ``mix``, with only the clips seen by one of the eight TotalCapture
  calibrations (the views of every real test frame);
* ``random_views``: as ``tc_views``, with clips seen from random views instead: whole clips in
  a seeded order until they hold as many clean frames as the ``tc_views`` arm (so the two
  differ in the views only, not in the amount of data);
* ``corrected``: as ``mix``, with each engine clip's 12 protocol joints moved by a fixed
  offset in their parent bone's frame: the median, over the fold's real training frames, of
  (joint - BlazePose's world landmark) minus the same median over the engine frames. It
  removes a systematic difference between the engine's joints and TotalCapture's (where the
  rendered body's joint centres sit relative to what BlazePose sees), e.g. about 3 cm at the
  hips, sideways.

Prints and writes ``OUT/sim2real_probe.{json,md}``: MPJPE / PA-MPJPE (mm, the protocol's 12
joints) on the clean frames of each held-out sequence, the mean over folds and each arm's
change against ``real``. A fold and arm already in the JSON is skipped (resume by running the
same command again); the prepared fold is kept in ``OUT`` until all its arms are done.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from crossval_probe import _engine_rows, fit_branch, score_branch  # noqa: E402
from position_probe import clean_frames  # noqa: E402

from engine.atomic import write_json_atomic  # noqa: E402
from engine.data import WindowDataset  # noqa: E402
from engine.losses import global_rotations  # noqa: E402
from engine.skeleton import (EVAL_BLAZEPOSE_INDICES, EVAL_JOINT_INDICES,  # noqa: E402
                             FEATURE_LANDMARK_INDICES, PARENTS)
from training.cli import main as cli  # noqa: E402
from training.crossval import fold_sequences  # noqa: E402

ARMS = ("real", "mix", "flag", "pretrain", "tc_views", "random_views", "corrected")
_UP_LEGS = (15, 18)  # RightUpLeg, LeftUpLeg: the protocol's centre


def joint_offsets(tr: dict, rows: torch.Tensor, glob: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(n, 12, 3) metres: each protocol joint (centred on the up-legs' midpoint) minus
    BlazePose's world landmark (feature channels 0-2), in the joint's parent bone frame; and
    those frames (n, 12, 3, 3)."""
    j = tr["joints"][rows]
    mid = (j[:, _UP_LEGS[0]] + j[:, _UP_LEGS[1]]) / 2
    world = tr["features"][rows].reshape(len(rows), -1, 18)[..., :3]
    k = [FEATURE_LANDMARK_INDICES.index(b) for b in EVAL_BLAZEPOSE_INDICES]
    d = j[:, list(EVAL_JOINT_INDICES)] - mid[:, None] - world[:, k]
    parent = glob[rows][:, [PARENTS[x] for x in EVAL_JOINT_INDICES]]
    return torch.einsum("nkji,nkj->nki", parent, d), parent


def corrected_joints(tr: dict, train: WindowDataset, real: torch.Tensor,
                     eng: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean frames' joints with the engine rows' 12 protocol joints moved by the
    median real-minus-engine offset (``joint_offsets``); and that offset (12, 3) metres."""
    target = torch.from_numpy(np.asarray(train.arrays()["target"])[tr["rows"]])
    glob = global_rotations(target[None], torch.ones(1, dtype=torch.bool))[0]
    d_real, _ = joint_offsets(tr, real, glob)
    d_eng, parent = joint_offsets(tr, eng, glob)
    delta = d_real.median(0).values - d_eng.median(0).values
    joints = tr["joints"].clone()
    joints[eng[:, None], torch.tensor(list(EVAL_JOINT_INDICES))[None]] += torch.einsum(
        "nkij,kj->nki", parent, delta)
    return joints, delta


def _view_rows(ds: WindowDataset, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into the kept rows) of engine frames seen by a TotalCapture camera, and of as
    many (or just more) from random views: whole clips in a seeded order."""
    entry = np.repeat(np.arange(len(ds.entries)), np.diff(ds.starts))[rows]
    eng = [e.get("source_format") == "dataengine" for e in ds.entries]
    cam = np.array([int(e.get("camera") or 0) if g else -1 for e, g in zip(ds.entries, eng)])
    clip = np.array([e.get("engine_clip", "") for e in ds.entries])[entry]
    tc = np.flatnonzero(cam[entry] > 0)
    rand = cam[entry] == 0
    picked, n = [], 0
    for c in np.random.default_rng(0).permutation(sorted(set(clip[rand]))):
        if n >= len(tc):
            break
        picked.append(c)
        n += int((rand & (clip == c)).sum())
    return tc, np.flatnonzero(rand & np.isin(clip, picked))


def run_fold(ds: Path, arms: list[str], done: dict, steps: int, share: float, save) -> None:
    """Train and score the missing ``arms`` on the prepared fold ``ds``; ``save(arm, score)``
    after each."""
    train = WindowDataset(ds, "train")
    tr, te = clean_frames(train), clean_frames(WindowDataset(ds, "test"))
    is_eng = _engine_rows(train, tr["rows"])
    real = torch.from_numpy(np.flatnonzero(~is_eng))
    eng = torch.from_numpy(np.flatnonzero(is_eng))
    n = int(round(1024 * share))
    for arm in arms:
        if arm in done:
            continue
        t0, extra = time.time(), {}
        frames, pool = tr, eng
        if arm == "real":  # standardised as the engine arms: by every training frame
            net = fit_branch(tr, real, steps=steps, stats=torch.cat([real, eng]))
        elif arm == "flag":
            net = fit_branch(tr, real, eng, n, steps, flag=True)
        elif arm == "pretrain":
            net = fit_branch(tr, real, eng, lambda s: 2 * n if s < steps // 2 else 0, steps)
        else:
            if arm in ("tc_views", "random_views"):
                tc, rand = _view_rows(train, tr["rows"])
                pool = torch.from_numpy(tc if arm == "tc_views" else rand)
            elif arm == "corrected":
                joints, delta = corrected_joints(tr, train, real, eng)
                frames = {**tr, "joints": joints}
                extra["offset_mm"] = [[round(float(v) * 1000, 1) for v in r] for r in delta]
            net = fit_branch(frames, real, pool, n, steps)
        score = {**score_branch(net, te), **extra, "engine_train_frames": int(len(pool)),
                 "seconds": round(time.time() - t0, 1)}
        save(arm, score)


def table(res: dict, folds: list[str], arms: list[str]) -> list[str]:
    """Markdown rows: per fold and the mean over folds, each arm with its change to real."""
    keys = ("mpjpe_mm", "pa_mpjpe_mm")
    others = [a for a in arms if a != "real"]
    lines = ["| held-out sequence | real | " + " | ".join(others) + " |",
             "|---|---|" + "---|" * len(others)]

    def cells(r: dict, es: list[dict]) -> str:
        out = [f"{r['mpjpe_mm']:.1f} / {r['pa_mpjpe_mm']:.1f}"]
        for e in es:
            ch = [100 * (e[k] - r[k]) / r[k] for k in keys]
            out.append(f"{e['mpjpe_mm']:.1f} / {e['pa_mpjpe_mm']:.1f} "
                       f"({ch[0]:+.1f} % / {ch[1]:+.1f} %)")
        return " | ".join(out)

    for s in folds:
        lines.append(f"| {s} | " + cells(res[s]["real"], [res[s][a] for a in others]) + " |")
    mean = {a: {k: float(np.mean([res[s][a][k] for s in folds])) for k in keys} for a in arms}
    lines.append("| **mean over folds** | "
                 + cells(mean["real"], [mean[a] for a in others]) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--totalcapture", type=Path, required=True)
    ap.add_argument("--engine", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--folds", default=None, help="held-out sequences (default: all)")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--engine-share", type=float, default=0.25)
    args = ap.parse_args()
    arms = args.arms.split(",")
    if arms[0] != "real" or not set(arms) <= set(ARMS):
        raise SystemExit(f"--arms: 'real' first, then any of {', '.join(ARMS[1:])}")
    torch.set_num_threads(2)
    folds = args.folds.split(",") if args.folds else fold_sequences(args.totalcapture)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "sim2real_probe.json"
    res = json.loads(path.read_text()) if path.is_file() else {}
    for seq in folds:
        if all(a in res.get(seq, {}) for a in arms):
            continue
        ds = args.out / f"{seq}_data"
        if not (ds / "dataset_map.json").is_file():
            shutil.rmtree(ds, ignore_errors=True)
            if cli(["prepare", "--totalcapture", str(args.totalcapture), "--out", str(ds),
                    "--val", seq, "--engine", str(args.engine)]):
                raise SystemExit(f"prepare failed for {seq}")

        def save(arm: str, score: dict, seq: str = seq) -> None:
            res.setdefault(seq, {})[arm] = score
            write_json_atomic(path, res)
            print(seq, arm, score, flush=True)

        run_fold(ds, arms, res.get(seq, {}), args.steps, args.engine_share, save)
        shutil.rmtree(ds, ignore_errors=True)
    lines = table(res, folds, arms) + [
        "", f"MPJPE / PA-MPJPE in mm of the per-frame branch ({args.steps} steps of 1024 frames, "
        f"{100 * args.engine_share:.0f} % of each batch from the engine clips in the engine "
        "arms), clean frames of the held-out sequence."]
    (args.out / "sim2real_probe.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
