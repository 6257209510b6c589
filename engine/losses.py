"""Training losses and the MPJPE monitor, on the (B, S, 22, 6) output slots.

Batch keys (a collated :class:`engine.data.WindowDataset` batch):

=====================  =================  ==================================================
``target``             (B, S, 22, 6)      target slots (``engine.kinematics.rotations_to_slots``)
``weight``             (B, S) float       how much each frame counts (0 = ignore)
``offsets``            (B, 21, 3)         the subject's bone offsets, metres (optional:
                                          default body)
``has_root_rotation``  (B,) bool          False: slot 1 (Hips rotation in the camera frame)
                                          is unknown; root rotation terms are skipped and FK
                                          runs in the root frame (optional: all True)
``has_root_position``  (B,) bool          False: slot 0 positions (x, y, z) are unknown; only
                                          displacements are learnt (optional: all True)
=====================  =================  ==================================================

Every term is a weighted mean over the frames (or frame pairs / triples for differences)
that count, so padding, missing detections and unknown quantities never contribute. Target
values of frames with weight 0 are ignored entirely (they may be NaN). Everything is computed
in float32, also inside an autocast region.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from . import rotations as rot
from .kinematics import forward_kinematics, local_to_global
from .metrics import similarity_fit
from .model import ROOT_SCALE
from .skeleton import DEFAULT_OFFSETS, NUM_JOINTS

TERMS: tuple[str, ...] = ("rot", "smooth", "fk", "root", "geodesic", "accel", "pa", "joints",
                          "frame")
_EPS = 1e-8
_MONITOR_IN_EVAL_ONLY = frozenset({"pa"})


@dataclass(frozen=True)
class LossConfig:
    w_rot: float = 1.0       # MSE of the 6D rotation slots 1..21
    w_smooth: float = 5.0    # MSE of predicted vs target velocity of rotation slots 1..21
    w_fk: float = 1.0        # FK joint positions (subject offsets), root-relative, metres
    fk_metric: str = "mse"   # "mse" (m^2 per coordinate) or "mpjpe" (mean joint distance, m)
    w_root: float = 1.0      # slot 0 displacement + position, each in units of ROOT_SCALE
    w_geodesic: float = 0.0  # mean geodesic angle of global joint rotations, radians
    w_accel: float = 0.0     # MSE of FK position second differences (acceleration), m^2
    w_pa: float = 0.0        # FK joint distance after a per-frame similarity alignment, m
    w_joints: float = 0.0    # joint head (ModelConfig.joint_head) vs the subject's joints, m
    w_frame: float = 0.0     # per-frame branch (ModelConfig.frame_branch), the same distance

    def __post_init__(self) -> None:
        if self.fk_metric not in ("mse", "mpjpe"):
            raise ValueError(f"fk_metric must be 'mse' or 'mpjpe', got {self.fk_metric!r}")
        for name in ("w_rot", "w_smooth", "w_fk", "w_root", "w_geodesic", "w_accel", "w_pa",
                     "w_joints", "w_frame"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)

    def weight(self, term: str) -> float:
        return float(getattr(self, "w_" + term))


def _masked_mean(err: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``err`` where ``mask`` > 0 (weighted by it); 0 when nothing counts.

    err and mask broadcast to the same shape; masked-out entries may hold NaN.
    """
    mask = mask.expand_as(err)
    err = torch.where(mask > 0, err, torch.zeros_like(err))
    return (err * mask).sum() / mask.sum().clamp_min(_EPS)


def _safe_norm(x: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the last axis with a finite (zero) gradient at 0."""
    sq = (x * x).sum(-1)
    return rot._sqrt_pos(sq)


def _batch_flags(batch: dict, key: str, b: int, device: torch.device) -> torch.Tensor:
    flag = batch.get(key)
    if flag is None:
        return torch.ones(b, dtype=torch.bool, device=device)
    return torch.as_tensor(flag, device=device).reshape(b).bool()


def global_rotations(slots: torch.Tensor, has_root_rotation: torch.Tensor) -> torch.Tensor:
    """(B, S, 22, 6) slots -> (B, S, 21, 3, 3) global rotations.

    In the camera frame where the root rotation is known, else in the root (Hips) frame.
    """
    mats = rot.rotation_6d_to_matrix(slots[..., 1:, :])             # (B, S, 21, 3, 3)
    eye = torch.eye(3, dtype=mats.dtype, device=mats.device)
    root = torch.where(has_root_rotation[:, None, None, None], mats[..., 0, :, :], eye)
    return local_to_global(root, mats[..., 1:, :, :])


def _prepare(pred: torch.Tensor, batch: dict):
    pred = pred.float()
    target = batch["target"].to(device=pred.device, dtype=torch.float32)
    w = batch["weight"].to(device=pred.device, dtype=torch.float32)        # (B, S)
    # Frames that do not count may hold anything (NaN included): zero them.
    target = torch.where(w[..., None, None] > 0, target, torch.zeros_like(target))
    b = pred.shape[0]
    has_rot = _batch_flags(batch, "has_root_rotation", b, pred.device)
    has_pos = _batch_flags(batch, "has_root_position", b, pred.device)
    offsets = batch.get("offsets")
    if offsets is None:
        offsets = torch.as_tensor(DEFAULT_OFFSETS, device=pred.device).expand(b, NUM_JOINTS, 3)
    offsets = offsets.to(device=pred.device, dtype=torch.float32)[:, None]  # (B, 1, 21, 3)
    return pred, target, w, has_rot, has_pos, offsets


def compute_losses(pred: torch.Tensor, batch: dict, cfg: LossConfig = LossConfig(),
                   joints: torch.Tensor | None = None,
                   frame_joints: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """All loss terms and their weighted sum.

    pred: (B, S, 22, 6) model output; batch: see the module docstring; joints: (B, S, 21, 3)
    the joint head's joints (``MotionTransformer.forward(return_joints=True)``), metres,
    camera frame, Hips at 0, or None (then "joints" is NaN, and a weight on it an error);
    frame_joints: (B, S, 20, 3) the per-frame branch's joints 1..20
    (``MotionTransformer.forward(return_frame=True)``), the same units, or None (then "frame" is NaN).
    Returns {"rot", "smooth", "fk", "root", "geodesic", "accel", "pa", "joints", "frame",
    "total"}:
    scalar float32 tensors. Terms with weight 0 are still computed (to monitor them) but carry
    no gradient; an unweighted "pa" only where gradients are off (validation), else it is NaN.
    "joints" is the mean distance of joints 1..20 to the subject's (FK of the target on the
    batch's offsets) on sequences whose root rotation is known (the head works in the camera
    frame); "frame" the same for the branch's joints.
    """
    if joints is None and cfg.w_joints > 0:
        raise ValueError("w_joints > 0 needs the joint head's joints (a model with joint_head)")
    if frame_joints is None and cfg.w_frame > 0:
        raise ValueError("w_frame > 0 needs the per-frame branch's joints (frame_branch)")
    with torch.autocast(device_type=pred.device.type, enabled=False):
        pred, target, w, has_rot, has_pos, offsets = _prepare(pred, batch)
        # (B, 1, 21) slot mask of rotation slots 1..21: slot 1 only with a known root rotation.
        slot_mask = torch.ones(pred.shape[0], 1, NUM_JOINTS, device=pred.device)
        slot_mask[:, 0, 0] = has_rot.float()
        pair = w[:, 1:] * w[:, :-1]                                        # (B, S-1)
        triple = w[:, 2:] * w[:, 1:-1] * w[:, :-2]                         # (B, S-2)

        def rot_term():
            err = (pred[..., 1:, :] - target[..., 1:, :]).square().mean(-1)  # (B, S, 21)
            return _masked_mean(err, w[..., None] * slot_mask)

        def smooth_term():
            vp = pred[:, 1:, 1:] - pred[:, :-1, 1:]
            vt = target[:, 1:, 1:] - target[:, :-1, 1:]
            return _masked_mean((vp - vt).square().mean(-1), pair[..., None] * slot_mask)

        def root_term():
            scale = torch.tensor(ROOT_SCALE, device=pred.device)
            err = ((pred[..., 0, :] - target[..., 0, :]) / scale).square()  # (B, S, 6)
            comp = torch.ones(pred.shape[0], 1, 6, device=pred.device)
            comp[:, 0, 3:] = has_pos.float()[:, None]
            return _masked_mean(err, w[..., None] * comp)

        cache: dict[str, torch.Tensor] = {}

        def glob():
            if "gp" not in cache:
                cache["gp"] = global_rotations(pred, has_rot)
                cache["gt"] = global_rotations(target, has_rot)
            return cache["gp"], cache["gt"]

        def positions():
            if "pp" not in cache:
                gp, gt = glob()
                cache["pp"] = forward_kinematics(gp, offsets)            # (B, S, 21, 3)
                cache["pt"] = forward_kinematics(gt, offsets)
            return cache["pp"], cache["pt"]

        def fk_term():
            pp, pt = positions()
            diff = pp[..., 1:, :] - pt[..., 1:, :]                      # Hips is always 0
            if cfg.fk_metric == "mse":
                err = diff.square().mean((-1, -2))
            else:
                err = _safe_norm(diff).mean(-1)
            return _masked_mean(err, w)

        def geodesic_term():
            gp, gt = glob()
            rel = gp.transpose(-1, -2) @ gt                               # (B, S, 21, 3, 3)
            cos = (rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
            axis = torch.stack([rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0],
                                rel[..., 1, 0] - rel[..., 0, 1]], dim=-1)
            sin = _safe_norm(axis) / 2
            angle = torch.atan2(sin, cos)                                 # (B, S, 21), [0, pi]
            return _masked_mean(angle, w[..., None] * slot_mask)

        def accel_term():
            pp, pt = positions()
            ap = pp[:, 2:] - 2 * pp[:, 1:-1] + pp[:, :-2]
            at = pt[:, 2:] - 2 * pt[:, 1:-1] + pt[:, :-2]
            return _masked_mean((ap - at).square().mean((-1, -2)), triple)

        def pa_term():
            pp, pt = positions()
            x, y = pp[..., 1:, :], pt[..., 1:, :]                       # (B, S, 20, 3)
            scale, r = similarity_fit(x, y)
            aligned = scale[..., None, None] * ((x - x.mean(-2, keepdim=True)) @ r)
            err = _safe_norm(aligned + y.mean(-2, keepdim=True) - y).mean(-1)
            return _masked_mean(err, w)

        def joint_distance(j: torch.Tensor | None) -> torch.Tensor:
            """Mean distance of j (B, S, 20, 3) to the subject's joints 1..20, m."""
            if j is None:
                return pred.new_tensor(float("nan"))
            _, pt = positions()
            err = _safe_norm(j.float() - pt[..., 1:, :]).mean(-1)                 # (B, S)
            return _masked_mean(err, w * has_rot.float()[:, None])

        def joints_term():
            return joint_distance(None if joints is None else joints[..., 1:, :])

        def frame_term():
            return joint_distance(frame_joints)

        fns = {"rot": rot_term, "smooth": smooth_term, "fk": fk_term, "root": root_term,
               "geodesic": geodesic_term, "accel": accel_term, "pa": pa_term,
               "joints": joints_term, "frame": frame_term}
        out: dict[str, torch.Tensor] = {}
        total = pred.new_zeros(())
        for name in TERMS:
            weight = cfg.weight(name)
            if weight > 0:
                out[name] = fns[name]()
                total = total + weight * out[name]
        # Terms with weight 0 are monitored only. Every weighted term ran above, so what the
        # cache gains here (without gradients) is never needed for a gradient. The batched SVD
        # of an unweighted "pa" costs 50 ms per 4,096 frames (2 CPU cores): it is monitored
        # where gradients are off (validation) and NaN in training steps.
        monitor_all = not torch.is_grad_enabled()
        with torch.no_grad():
            for name in TERMS:
                if name not in out:
                    costly = name in _MONITOR_IN_EVAL_ONLY and not monitor_all
                    out[name] = pred.new_tensor(float("nan")) if costly else fns[name]()
        out["total"] = total
        return {k: out[k] for k in (*TERMS, "total")}


@torch.no_grad()
def mpjpe_sum(pred: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """MPJPE numerator and denominator, for aggregation over batches.

    Joint positions by FK on the default body (``skeleton.DEFAULT_OFFSETS``) from predicted and
    target global rotations (root frame where the root rotation is unknown), Hips at 0;
    error averaged over joints 1..20 of each frame, frames weighted by ``weight``.
    Returns (sum of weight * per-frame error in millimetres, sum of weight), float64 scalars.
    """
    with torch.autocast(device_type=pred.device.type, enabled=False):
        pred, target, w, has_rot, _, _ = _prepare(pred, batch)
        pp = forward_kinematics(global_rotations(pred, has_rot))
        pt = forward_kinematics(global_rotations(target, has_rot))
        err = torch.linalg.vector_norm(pp[..., 1:, :] - pt[..., 1:, :], dim=-1).mean(-1) * 1000
        err = torch.where(w > 0, err, torch.zeros_like(err))
        return (err * w).sum().double(), w.sum().double()
