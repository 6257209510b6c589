"""Leave-one-sequence-out cross-validation of the per-frame branch alone: real vs real + engine.

    .venv/bin/python scripts/crossval_probe.py --totalcapture ../shared/data/totalcapture \\
        --engine ~/.cache/blaze2cap/synth --out runs/cv_probe [--steps 4000] [--folds SEQ,...]

``--engine`` may be repeated (``DIR`` or ``NAME=DIR``: one arm each, named after the folder
by default), e.g. two engine folders that differ in one setting, against the same real arm.

The cheap stand-in for ``blaze2cap crossval`` (about 7 minutes a fold on 2 CPU cores instead
of about 3 hours): for every real BlazePose sequence held out (all its cameras), the
``prepare`` command builds the fold's data with and without the data-engine clips, and the
model's per-frame branch (``engine.model.FrameBranch`` on standardised features, as in
``scripts/position_probe.py``, width 256, 2 blocks) is trained for a fixed number of steps of
1024 clean training frames (same seed, same steps for both arms; engine frames are as likely
as real ones, or ``--engine-share`` of every batch). On the held-out clean frames it prints
MPJPE (mm, the protocol's 12 joints centred on the up-legs' midpoint) and PA-MPJPE (mm), per
fold and as the mean over folds, and writes ``OUT/crossval_probe.{json,md}``. A fold whose result is in the JSON is skipped
(resume by running the same command again).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from position_probe import FrameMLP, clean_frames  # noqa: E402

from engine.atomic import write_json_atomic  # noqa: E402
from engine.data import WindowDataset  # noqa: E402
from engine.metrics import center_eval_joints, mpjpe, pa_mpjpe  # noqa: E402
from training.cli import main as cli  # noqa: E402
from training.crossval import fold_sequences  # noqa: E402


def _engine_rows(ds: WindowDataset, rows: np.ndarray) -> np.ndarray:
    """(N,) bool: which of the kept rows come from data-engine entries."""
    entry = np.repeat(np.arange(len(ds.entries)), np.diff(ds.starts))[rows]
    engine = np.array([e.get("source_format") == "dataengine" for e in ds.entries])
    return engine[entry]


class FlagMLP(torch.nn.Module):
    """The per-frame branch with one more input: 1 on engine frames, 0 on real ones (a domain
    tag; 0 at test)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, width: int = 256, blocks: int = 2):
        super().__init__()
        self.inner = FrameMLP(torch.cat([mean, torch.zeros(1)]), torch.cat([std, torch.ones(1)]),
                              width, blocks)

    def forward(self, x: torch.Tensor, flag: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 450) features, (N,) flags (default 0: real) -> (N, 20, 3) joints 1..20, metres."""
        f = torch.zeros(len(x), 1) if flag is None else flag[:, None].to(x.dtype)
        return self.inner(torch.cat([x, f], 1))


def fit_branch(tr: dict, pool: torch.Tensor, extra: torch.Tensor | None = None,
               n_extra: int | Callable[[int], int] = 0, steps: int = 4000, seed: int = 0,
               stats: torch.Tensor | None = None, flag: bool = False) -> torch.nn.Module:
    """Train the per-frame branch on the clean frames ``tr`` (``clean_frames``): batches of
    1024 rows, ``n_extra`` of them (a number, or a function of the step) drawn from ``extra``
    and the rest from ``pool`` (indices into ``tr``), standardised by the statistics of the
    rows ``stats`` (default: those it can draw). ``flag``: a ``FlagMLP`` told which rows are
    extra. Returns it in eval mode."""
    torch.manual_seed(seed)
    count = n_extra if callable(n_extra) else (lambda step: n_extra)
    if stats is None:
        stats = pool if not n_extra else torch.cat([pool, extra])
    mean, std = tr["features"][stats].mean(0), tr["features"][stats].std(0)
    net = FlagMLP(mean, std) if flag else FrameMLP(mean, std, 256, 2)
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-4)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = 1e-3 * max(0.02, 1 - step / steps)
        n = count(step)
        if n:  # the extra rows are drawn first (the published tables' order)
            first = extra[torch.randint(0, len(extra), (n,))]
            idx = torch.cat([first, pool[torch.randint(0, len(pool), (1024 - n,))]])
        else:
            idx = pool[torch.randint(0, len(pool), (1024,))]
        x = tr["features"][idx]
        out = net(x, torch.cat([torch.ones(n), torch.zeros(1024 - n)])) if flag else net(x)
        loss = (out - tr["joints"][idx, 1:]).norm(dim=-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def train_and_score(ds: Path, steps: int, seed: int = 0, engine_share: float | None = None) -> dict:
    """Train the per-frame branch on ``ds``'s training split; score its test split. With
    ``engine_share``, that share of every batch comes from the data-engine frames (else
    every training frame is equally likely)."""
    train_set = WindowDataset(ds, "train")
    tr = clean_frames(train_set)
    te = clean_frames(WindowDataset(ds, "test"))
    is_eng = _engine_rows(train_set, tr["rows"])
    eng = torch.from_numpy(np.flatnonzero(is_eng))
    n_eng = 0 if engine_share is None or not len(eng) else int(round(1024 * engine_share))
    if n_eng:
        net = fit_branch(tr, torch.from_numpy(np.flatnonzero(~is_eng)), eng, n_eng, steps, seed)
    else:
        net = fit_branch(tr, torch.arange(len(tr["features"])), steps=steps, seed=seed)
    return {**score_branch(net, te), "train_frames": int(len(tr["joints"])),
            "engine_train_frames": int(len(eng))}


def score_branch(net: FrameMLP, frames: dict, rows: np.ndarray | None = None) -> dict:
    """MPJPE / PA-MPJPE (mm, the protocol's 12 joints) of ``net`` on clean frames (all, or
    ``rows``)."""
    feats, gt = frames["features"], frames["joints"].numpy()
    if rows is not None:
        feats, gt = feats[torch.from_numpy(rows)], gt[rows]
    with torch.no_grad():
        pred = torch.cat([net(feats[i:i + 8192]) for i in range(0, len(feats), 8192)])
    pred = torch.cat([torch.zeros(len(pred), 1, 3), pred], 1).numpy()
    p, g = center_eval_joints(pred), center_eval_joints(gt)
    return {"frames": int(len(gt)), "mpjpe_mm": float(mpjpe(p, g).mean()),
            "pa_mpjpe_mm": float(pa_mpjpe(p, g).mean())}


def _engine_arm(text: str, n: int) -> tuple[str, Path]:
    """``NAME=DIR`` or ``DIR`` -> (arm name, folder); a single unnamed folder is 'engine'."""
    name, sep, folder = text.rpartition("=")
    if not sep:
        return ("engine" if n == 1 else Path(folder).name), Path(folder)
    return name, Path(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--totalcapture", type=Path, required=True)
    ap.add_argument("--engine", action="append", required=True, metavar="[NAME=]DIR",
                    help="a data-engine folder (repeat for more arms)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--folds", default=None, help="held-out sequences (default: all)")
    ap.add_argument("--engine-share", type=float, default=None,
                    help="share of each batch drawn from the engine frames in the engine arm "
                         "(default: as many as they are)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    engines = dict(_engine_arm(e, len(args.engine)) for e in args.engine)
    if "real" in engines or len(engines) < len(args.engine):
        raise SystemExit("engine arms need distinct names other than 'real' (NAME=DIR)")
    arms = ("real", *engines)
    folds = args.folds.split(",") if args.folds else fold_sequences(args.totalcapture)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "crossval_probe.json"
    res = json.loads(path.read_text()) if path.is_file() else {}
    for seq in folds:
        for arm in arms:
            if arm in res.get(seq, {}):
                continue
            ds = args.out / f"{seq}_{arm}"
            shutil.rmtree(ds, ignore_errors=True)
            prep = ["prepare", "--totalcapture", str(args.totalcapture), "--out", str(ds),
                    "--val", seq]
            if arm != "real":
                prep += ["--engine", str(engines[arm])]
            if cli(prep):
                raise SystemExit(f"prepare failed for {seq} / {arm}")
            t0 = time.time()
            score = train_and_score(ds, args.steps,
                                    engine_share=args.engine_share if arm != "real" else None)
            score["seconds"] = round(time.time() - t0, 1)
            res.setdefault(seq, {})[arm] = score
            write_json_atomic(path, res)
            shutil.rmtree(ds, ignore_errors=True)
            print(seq, arm, score, flush=True)
    lines = ["| held-out sequence | test frames | real | "
             + " | ".join(f"real + {a} (change)" for a in engines) + " |",
             "|---|---|---|" + "---|" * len(engines)]
    keys = ("mpjpe_mm", "pa_mpjpe_mm")
    mean = {a: {k: np.mean([res[s][a][k] for s in folds]) for k in keys} for a in arms}

    def row(name, frames, r, es):
        cells = []
        for e in es:
            ch = [100 * (e[k] - r[k]) / r[k] for k in keys]
            cells.append(f"{e['mpjpe_mm']:.1f} / {e['pa_mpjpe_mm']:.1f} "
                         f"({ch[0]:+.1f} % / {ch[1]:+.1f} %)")
        return (f"| {name} | {frames} | {r['mpjpe_mm']:.1f} / {r['pa_mpjpe_mm']:.1f} | "
                + " | ".join(cells) + " |")

    for s in folds:
        lines.append(row(s, res[s]["real"]["frames"], res[s]["real"],
                         [res[s][a] for a in engines]))
    lines.append(row("**mean over folds**", "", mean["real"], [mean[a] for a in engines]))
    share = ("" if args.engine_share is None
             else f", {100 * args.engine_share:.0f} % of each batch from the engine clips")
    lines += ["", f"MPJPE / PA-MPJPE in mm of the per-frame branch alone ({args.steps} steps of "
              f"1024 frames{share}), clean frames of the held-out sequence."]
    (args.out / "crossval_probe.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
