"""How well do joint positions predict the limbs, against rotations? (the joint head's motive)

    .venv/bin/python scripts/position_probe.py DATASET CHECKPOINT [--seconds 240]

Trains a per-frame MLP (3 residual blocks of width 512) for ``--seconds`` on the training
split's clean frames, from the model's features to the 20 joints below the Hips (metres,
camera frame, Hips at 0, the subject's own skeleton), with a mean joint distance loss. Then,
on the test split's clean frames, prints PA-MPJPE (mm, the protocol's 12 joints, per-frame
similarity Procrustes) of

* the MLP's joints;
* CHECKPOINT's rotations through forward kinematics on the default body (the product) and on
  the subject's own body;
* CHECKPOINT's rotations with each one-child bone swung onto the MLP's joints
  (``engine.guide.guide_globals``), on the default body;
* with a joint head in CHECKPOINT: its joints, and the mean of its joints and the MLP's
  (an ensemble of the two), alone and guiding the rotations on the default body.

Measured on S2_freestyle2 with the 9,000-step weights (README, Accuracy): MLP 46.4 mm,
the model 54.7 (default body) / 52.5 (subject's body), the model guided by the MLP 48.7.
With the joint-head weights (runs/guided, 120 s, ``--width 256 --blocks 2``): MLP 48.1, the
head 52.0, their mean 46.1, the rotations guided onto the mean 48.3 (the per-frame branch,
``ModelConfig.frame_branch``).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from engine.checkpoint import load_model
from engine.data import WindowDataset
from engine.guide import guide_globals
from engine.kinematics import forward_kinematics
from engine.losses import global_rotations
from engine.metrics import pa_mpjpe
from engine.model import FrameBranch
from engine.skeleton import EVAL_JOINT_INDICES


def clean_frames(ds: WindowDataset) -> dict:
    """Features (N, 450), the subject's joints (N, 21, 3) and the row mask of the clean
    frames of entries with a known root rotation."""
    a = ds.arrays()
    entry = np.repeat(np.arange(len(ds.entries)), np.diff(ds.starts))
    keep = (np.asarray(a["weight"]) > 0) & ds.has_root_rotation[entry]
    target = torch.from_numpy(np.asarray(a["target"])[keep])
    glob = global_rotations(target[None], torch.ones(1, dtype=torch.bool))[0]
    joints = forward_kinematics(glob, torch.from_numpy(ds.offsets[entry[keep]]))
    feats = torch.from_numpy(np.asarray(a["features"])[keep]).reshape(int(keep.sum()), -1)
    return {"features": feats, "joints": joints, "rows": keep}


class FrameMLP(torch.nn.Module):
    """The per-frame branch (``engine.model.FrameBranch``) on raw features, standardised by the
    training frames' statistics."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, width: int = 512, blocks: int = 3):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std.clamp_min(1e-3))
        self.branch = FrameBranch(mean.numel(), width, blocks, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 450) features -> (N, 20, 3) joints 1..20, metres."""
        return self.branch((x - self.mean) / self.std)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("checkpoint")
    ap.add_argument("--seconds", type=float, default=240.0)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--blocks", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    train_set, test_set = WindowDataset(args.dataset, "train"), WindowDataset(args.dataset, "test")
    tr, te = clean_frames(train_set), clean_frames(test_set)
    net = FrameMLP(tr["features"].mean(0), tr["features"].std(0), args.width, args.blocks)
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-4)
    start, steps = time.time(), 0
    while (elapsed := time.time() - start) < args.seconds:
        for group in opt.param_groups:
            group["lr"] = 1e-3 * max(0.02, 1 - elapsed / args.seconds)
        idx = torch.randint(0, len(tr["features"]), (1024,))
        loss = (net(tr["features"][idx]) - tr["joints"][idx, 1:]).norm(dim=-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    net.eval()
    ev = list(EVAL_JOINT_INDICES)
    gt = te["joints"].numpy()[:, ev]
    with torch.no_grad():
        mlp = torch.cat([net(te["features"][i:i + 8192])
                         for i in range(0, len(te["features"]), 8192)])
        mlp = torch.cat([torch.zeros(len(mlp), 1, 3), mlp], 1)            # (N, 21, 3)
        model, _ = load_model(args.checkpoint)
        model = model.eval()
        if model.cfg.frame_branch:  # the head alone: the probe's MLP takes the branch's place
            from dataclasses import replace
            alone = type(model)(replace(model.cfg, frame_mix=0.0))
            alone.load_state_dict(model.state_dict())
            model = alone.eval()
        a, slots, heads = test_set.arrays(), [], []
        for e in range(len(test_set.entries)):
            s, t = int(test_set.starts[e]), int(test_set.starts[e + 1])
            out, head = model(torch.from_numpy(np.array(a["features"][s:t]))[None],
                              torch.from_numpy(np.array(a["valid"][s:t]))[None],
                              return_joints=True)
            slots.append(out[0])
            heads.append(None if head is None else head[0])
        rows = torch.from_numpy(te["rows"])
        slots = torch.cat(slots)[rows]
        glob = global_rotations(slots[None], torch.ones(1, dtype=torch.bool))[0].double()
        entry = np.repeat(np.arange(len(test_set.entries)), np.diff(test_set.starts))[te["rows"]]
        own = forward_kinematics(glob, torch.from_numpy(test_set.offsets[entry]).double())
        base = forward_kinematics(glob)
        guided, _ = guide_globals(glob, mlp.double()[:, 1:] - base[:, 1:])

    def pa(joints) -> float:
        return float(pa_mpjpe(np.asarray(joints)[:, ev], gt).mean())

    print(f"frame MLP ({steps} steps of 1024 frames): PA-MPJPE {pa(mlp):.1f} mm")
    print(f"model, default body: {pa(base):.1f} mm; subject's body: {pa(own):.1f} mm")
    print(f"model guided by the MLP's joints, default body: {pa(forward_kinematics(guided)):.1f} mm")
    if heads[0] is not None:
        head = torch.cat(heads)[rows].double()
        mean = (head + mlp.double()) / 2
        with torch.no_grad():
            both, _ = guide_globals(glob, mean[:, 1:] - base[:, 1:])
        print(f"joint head: {pa(head):.1f} mm; mean of head and MLP: {pa(mean):.1f} mm; "
              f"model guided by that mean, default body: {pa(forward_kinematics(both)):.1f} mm")


if __name__ == "__main__":
    main()
