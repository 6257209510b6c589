"""Where a checkpoint's PA-MPJPE comes from, on a prepared dataset split (tracked frames, raw
model output, the evaluation protocol's 12 joints and default body).

    .venv/bin/python scripts/pa_breakdown.py CHECKPOINT DATASET [--split test]

Prints the PA-MPJPE (mm) of the model; of the model with the global rotations of one group
of joints replaced by the ground truth ("oracle": how much that group costs); of the
left/right-mirrored input mirrored back, and of the mean of both (test-time flip); and the
mean angle (degrees) between predicted and true bone directions after the per-frame
Procrustes alignment, for the four limb segments; and, within the image, the angle between
the predicted (placed at the true hip centre) and BlazePose's 2D bone directions and the
true joints' projection.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from engine import metrics as mt
from engine.data import FLAG_ALIGNED, FLAG_TRACKED, load_dataset_map, load_sequence, mirror_rotations
from engine.features import DEFAULT_FOCAL, mirror_landmarks
from engine.inference import InferenceConfig, Predictor
from engine.kinematics import forward_kinematics, slots_to_rotations
from engine.skeleton import CH_IMAGE, EVAL_BLAZEPOSE_INDICES, EVAL_JOINT_INDICES, JOINT_INDEX

GROUPS = {
    "torso (hips, spine, shoulders)": ["Hips", "Spine", "Spine1", "Spine2", "Spine3",
                                       "RightShoulder", "LeftShoulder"],
    "upper arms": ["RightArm", "LeftArm"],
    "forearms": ["RightForeArm", "LeftForeArm"],
    "thighs": ["RightUpLeg", "LeftUpLeg"],
    "shins": ["RightLeg", "LeftLeg"],
}
# Bones between the protocol's 12 joints (metrics.EVAL_JOINT order: right arm, left arm,
# right leg, left leg; shoulder/hip, elbow/knee, wrist/ankle).
BONES = {"upper arm": [(0, 1), (3, 4)], "forearm": [(1, 2), (4, 5)],
         "thigh": [(6, 7), (9, 10)], "shin": [(7, 8), (10, 11)]}
TRACKED = FLAG_ALIGNED | FLAG_TRACKED


def nearest_rotation(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> the closest rotation matrices (SVD)."""
    u, _, vt = np.linalg.svd(m)
    u[..., :, -1] *= np.sign(np.linalg.det(u @ vt))[..., None]
    return u @ vt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("data", type=Path)
    ap.add_argument("--split", default="test")
    args = ap.parse_args()
    pred = Predictor.from_checkpoint(args.checkpoint, config=InferenceConfig())
    pa = {k: [] for k in ["model", "mirrored input", "flip mean", *(f"oracle {g}" for g in GROUPS)]}
    bone_err = {b: [] for b in BONES}
    image_err = {(who, b): [] for who in ("model", "BlazePose 2D") for b in BONES}
    for e in load_dataset_map(args.data):
        if e.get("mirror") or not e.get(f"split_{args.split}") or e.get("stride", 1) != 1:
            continue
        s = load_sequence(args.data, e)
        lm, focal = s["landmarks"], float(e.get("focal") or DEFAULT_FOCAL)
        raw, valid = pred.raw(lm, s["aspect"], focal=focal)
        raw_m, valid_m = pred.raw(mirror_landmarks(lm), s["aspect"], focal=focal)
        _, g = slots_to_rotations(raw.astype(np.float64))
        g_m = mirror_rotations(slots_to_rotations(raw_m.astype(np.float64))[1])
        _, g_true = slots_to_rotations(s["target"].astype(np.float64))
        gt = mt.center_eval_joints(forward_kinematics(g_true, s["offsets"].astype(np.float64)))
        mask = valid & valid_m & ((s["flags"] & TRACKED) == TRACKED)
        gt = gt[mask]

        def joints(rots, keep=mask):
            return mt.center_eval_joints(forward_kinematics(rots))[keep]

        pa["model"].append(mt.pa_mpjpe(joints(g), gt))
        pa["mirrored input"].append(mt.pa_mpjpe(joints(g_m), gt))
        pa["flip mean"].append(mt.pa_mpjpe(joints(nearest_rotation(0.5 * (g + g_m))), gt))
        for name, members in GROUPS.items():
            g_o = g.copy()
            for j in members:
                g_o[:, JOINT_INDEX[j]] = g_true[:, JOINT_INDEX[j]]
            pa[f"oracle {name}"].append(mt.pa_mpjpe(joints(g_o), gt))
        aligned = mt.procrustes_align(joints(g), gt)
        for bone, pairs in BONES.items():
            for i, j in pairs:
                a, b = aligned[:, j] - aligned[:, i], gt[:, j] - gt[:, i]
                cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
                bone_err[bone].append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
        # Image-plane directions: true joints in the camera frame and projected; the model's
        # joints placed at the true hip centre; BlazePose's 2D landmarks (x scaled by aspect).
        root = s["target"][:, 0, 3:6].astype(np.float64)
        true3d = forward_kinematics(g_true, s["offsets"].astype(np.float64))[:, list(EVAL_JOINT_INDICES)]
        true3d = true3d + root[:, None]
        model3d = forward_kinematics(g)[:, list(EVAL_JOINT_INDICES)]
        model3d += (true3d[:, [6, 9]].mean(1) - model3d[:, [6, 9]].mean(1))[:, None]
        blaze2d = lm[:, list(EVAL_BLAZEPOSE_INDICES), CH_IMAGE].astype(np.float64)
        blaze2d[..., 0] *= s["aspect"]
        views = {"model": model3d[..., :2] / model3d[..., 2:3], "BlazePose 2D": blaze2d}
        true2d = true3d[..., :2] / true3d[..., 2:3]
        for bone, pairs in BONES.items():
            for i, j in pairs:
                d_true = true2d[:, j] - true2d[:, i]
                keep = mask & (np.linalg.norm(d_true, axis=-1) > 0.02)  # not along the ray
                for who, xy in views.items():
                    d = xy[:, j] - xy[:, i]
                    ang = np.arctan2(d[:, 1], d[:, 0]) - np.arctan2(d_true[:, 1], d_true[:, 0])
                    ang = np.abs((ang + np.pi) % (2 * np.pi) - np.pi)
                    image_err[who, bone].append(np.degrees(ang[keep]))
    print(f"{'PA-MPJPE, tracked frames':<44} mm")
    for k, v in pa.items():
        print(f"{k:<44} {np.concatenate(v).mean():6.1f}")
    print("bone direction error after alignment (deg): "
          + ", ".join(f"{b} {np.concatenate(v).mean():.1f}" for b, v in bone_err.items()))
    for who in ("model", "BlazePose 2D"):
        print(f"in the image, {who} (deg, mean / median): " + ", ".join(
            f"{b} {np.concatenate(image_err[who, b]).mean():.1f} / "
            f"{np.median(np.concatenate(image_err[who, b])):.1f}" for b in BONES))


if __name__ == "__main__":
    main()
