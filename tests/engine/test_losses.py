"""Losses: zero at the target, each term reacts to its own error, masks, gradients, float32."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.kinematics import rotations_to_slots
from engine.kinematics import forward_kinematics
from engine.losses import TERMS, LossConfig, compute_losses, global_rotations, mpjpe_sum
from engine.rotations import axis_angle_to_matrix, matrix_to_rotation_6d, rotation_6d_to_matrix

ALL_ON = LossConfig(w_rot=1, w_smooth=1, w_fk=1, w_root=1, w_geodesic=1, w_accel=1, w_pa=1,
                    w_joints=1)


def joints_of(pred: torch.Tensor, batch: dict) -> torch.Tensor:
    """(B, S, 21, 3): the joints of ``pred``'s rotations on the batch's bodies, as a joint
    head that agrees with the rotations would predict them."""
    g = global_rotations(pred.float(), batch["has_root_rotation"])
    return forward_kinematics(g, batch["offsets"][:, None])


def losses(pred, batch, cfg=ALL_ON):
    """All terms, with a joint head and a per-frame branch that agree with ``pred``."""
    joints = joints_of(pred, batch)
    return compute_losses(pred, batch, cfg, joints, joints[..., 1:, :])


def make_batch(b=2, s=8, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    aa = rng.normal(size=(b, 1, 21, 3)) * 0.5 + rng.normal(size=(b, s, 21, 3)) * 0.1
    rots = axis_angle_to_matrix(aa.astype(np.float32))
    pos = (np.cumsum(rng.normal(size=(b, s, 3)) * 0.01, axis=1) + [0, 0, 4]).astype(np.float32)
    target = np.stack([rotations_to_slots(rots[i], pos[i]) for i in range(b)])
    return {"target": torch.from_numpy(target), "weight": torch.ones(b, s),
            "offsets": torch.from_numpy(rng.uniform(0.05, 0.3, (b, 21, 3)).astype(np.float32)),
            "has_root_rotation": torch.ones(b, dtype=torch.bool)}


def test_zero_at_target_for_every_term():
    batch = make_batch()
    out = losses(batch["target"].clone(), batch)
    assert set(out) == {*TERMS, "total"}
    for name, v in out.items():
        assert v.dtype == torch.float32 and v.shape == ()
        assert float(v) == pytest.approx(0.0, abs=1e-6), name


@pytest.mark.parametrize("term", TERMS)
def test_each_term_positive_when_perturbed(term):
    batch = make_batch()
    pred = batch["target"].clone()
    g = torch.Generator().manual_seed(1)
    if term == "root":
        pred[..., 0, :] += 0.01 * torch.randn(pred[..., 0, :].shape, generator=g)
    else:  # rotation slots, different noise per frame (moves velocity and acceleration too)
        pred[..., 2:, :] += 0.05 * torch.randn(pred[..., 2:, :].shape, generator=g)
    out = losses(pred, batch)
    assert float(out[term]) > 1e-6
    rot_only = compute_losses(pred, batch, LossConfig(w_rot=1, w_smooth=0, w_fk=0, w_root=0))
    assert float(rot_only["total"]) == pytest.approx(float(rot_only["rot"]))


def test_root_error_moves_only_root_term():
    batch = make_batch()
    pred = batch["target"].clone()
    pred[..., 0, 3:] += 0.5  # positions only
    out = losses(pred, batch)
    assert float(out["root"]) > 0
    for name in ("rot", "smooth", "fk", "geodesic", "accel"):
        assert float(out[name]) == pytest.approx(0.0, abs=1e-6)


def test_weights_scale_total():
    batch = make_batch()
    pred = batch["target"] + 0.05
    a = compute_losses(pred, batch, LossConfig())
    expected = sum(LossConfig().weight(t) * float(a[t]) for t in TERMS if LossConfig().weight(t))
    assert float(a["total"]) == pytest.approx(expected, rel=1e-5)


def test_masked_frames_are_ignored_even_when_nan():
    batch = make_batch()
    pred = batch["target"].clone()
    batch["weight"][0, 5:] = 0
    pred[0, 5:] += 3.0                     # huge error on frames that do not count
    batch["target"][0, 6] = float("nan")   # and garbage targets there
    out = losses(pred, batch)
    for name, v in out.items():
        assert float(v) == pytest.approx(0.0, abs=1e-6), name
    batch["weight"][0, 5] = 1              # now one bad frame counts
    assert float(losses(pred, batch)["rot"]) > 0


def test_difference_terms_need_both_frames():
    batch = make_batch(b=1)
    pred = batch["target"].clone()
    pred[0, 3, 2:] += 0.2  # frame 3 wrong; make it not count
    batch["weight"][0, 3] = 0
    out = losses(pred, batch)
    assert float(out["smooth"]) == pytest.approx(0.0, abs=1e-7)
    assert float(out["accel"]) == pytest.approx(0.0, abs=1e-7)


def test_no_root_rotation_skips_root_rotation_terms():
    batch = make_batch()
    batch["has_root_rotation"][:] = False
    pred = batch["target"].clone()
    pred[..., 1, :] = torch.tensor([0.0, 1.0, 0.0, -1.0, 0.0, 0.0])  # a wrong root rotation
    out = losses(pred, batch)
    for name in TERMS:  # FK and geodesic run in the root frame: unaffected
        assert float(out[name]) == pytest.approx(0.0, abs=1e-6), name
    batch["has_root_rotation"][:] = True
    out = losses(pred, batch)
    assert float(out["rot"]) > 0 and float(out["fk"]) > 0 and float(out["geodesic"]) > 0


def test_unknown_root_position_masks_positions_only():
    batch = make_batch()
    batch["has_root_position"] = torch.zeros(2, dtype=torch.bool)
    pred = batch["target"].clone()
    pred[..., 0, 3:] += 1.0
    assert float(losses(pred, batch)["root"]) == pytest.approx(0.0, abs=1e-7)
    pred[..., 0, :3] += 0.01
    assert float(losses(pred, batch)["root"]) > 0


def test_finite_gradients_including_at_the_target_and_pi():
    batch = make_batch()
    for pred in (batch["target"].clone(), batch["target"] + 0.1 * torch.randn(2, 8, 22, 6)):
        pred = pred.clone().requires_grad_(True)
        out = losses(pred, batch, replace(ALL_ON, fk_metric="mpjpe"))
        out["total"].backward()
        assert torch.isfinite(pred.grad).all()
    flipped = batch["target"].clone()
    flipped[..., 2:, :] = torch.tensor([1.0, 0.0, 0.0, 0.0, -1.0, 0.0])  # pi about x vs target
    flipped.requires_grad_(True)
    losses(flipped, batch)["total"].backward()
    assert torch.isfinite(flipped.grad).all()


def test_weight_zero_terms_are_monitored_without_gradient():
    batch = make_batch()
    pred = (batch["target"] + 0.05).requires_grad_(True)
    out = compute_losses(pred, batch, LossConfig(w_geodesic=0.0))
    assert float(out["geodesic"]) > 0 and not out["geodesic"].requires_grad
    assert out["total"].requires_grad


def test_float32_under_bf16_autocast():
    batch = make_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pred = (batch["target"] + 0.01).to(torch.bfloat16)
        out = losses(pred, batch)
    assert all(v.dtype == torch.float32 for v in out.values())


def test_mpjpe_zero_at_target_and_in_millimetres():
    batch = make_batch()
    err, n = mpjpe_sum(batch["target"], batch)
    assert float(err) == pytest.approx(0.0, abs=1e-3) and float(n) == 16
    pred = batch["target"].clone()
    pred[..., 2:, :] += 0.05
    err, n = mpjpe_sum(pred, batch)
    assert 1.0 < float(err / n) < 500.0  # millimetres, not metres


def test_bad_config_rejected():
    with pytest.raises(ValueError):
        LossConfig(fk_metric="l1")
    with pytest.raises(ValueError):
        LossConfig(w_rot=-1.0)


def test_pa_term_ignores_a_global_rotation_and_scale_but_not_a_limb():
    """"pa": FK joints after a per-frame similarity alignment (as PA-MPJPE): turning the whole
    body or scaling its bones costs nothing there, while the plain FK term sees both."""
    from engine.metrics import similarity_fit
    batch = make_batch()
    turn = torch.from_numpy(axis_angle_to_matrix(np.array([0.3, -0.5, 0.2]))).float()
    turned_slots = batch["target"].clone()                       # turn the root: every global
    hips = rotation_6d_to_matrix(turned_slots[..., 1, :])       # rotation turns with it
    turned_slots[..., 1, :] = matrix_to_rotation_6d(turn @ hips)
    out = losses(turned_slots, batch)
    assert float(out["pa"]) == pytest.approx(0.0, abs=1e-5)
    assert float(out["fk"]) > 0.01
    scaled = dict(batch, offsets=batch["offsets"] * 1.3)
    ref = losses(batch["target"], scaled)
    assert float(ref["pa"]) == pytest.approx(0.0, abs=1e-5)
    bent = batch["target"].clone()
    bent[..., 14, :] += 0.3                                 # slot 14: the left forearm
    assert float(losses(bent, batch)["pa"]) > 1e-3
    # the alignment itself: recovers a known similarity, never a reflection
    x = torch.randn(5, 12, 3, dtype=torch.float64)
    scale, r = similarity_fit(x, 2.0 * x @ turn.double() + 1.0)
    assert torch.allclose(scale, torch.full((5,), 2.0, dtype=torch.float64))
    assert torch.allclose(r, turn.double().expand(5, 3, 3), atol=1e-6)
    _, r = similarity_fit(x, x * torch.tensor([-1.0, 1, 1], dtype=torch.float64))
    assert torch.allclose(torch.linalg.det(r), torch.ones(5, dtype=torch.float64))


def test_unweighted_pa_is_monitored_in_validation_only():
    batch = make_batch()
    pred = batch["target"].clone()
    pred[..., 2:, :] += 0.05
    cfg = replace(ALL_ON, w_pa=0.0)
    assert np.isnan(float(losses(pred, batch, cfg)["pa"]))
    with torch.no_grad():
        monitored = float(losses(pred, batch, cfg)["pa"])
    assert monitored == pytest.approx(float(losses(pred, batch)["pa"]), rel=1e-5)
    assert float(losses(pred, batch, cfg)["total"]) == pytest.approx(
        float(losses(pred, batch)["total"]) - monitored, rel=1e-5)


def test_pa_term_survives_non_finite_predictions():
    """A NaN prediction makes the loss NaN (the train loop then skips the step); the SVD of
    the alignment must not raise instead."""
    batch = make_batch()
    pred = batch["target"].clone()
    pred[0, 3, 5, :] = float("nan")
    out = losses(pred, batch)
    assert not np.isfinite(float(out["total"]))


def test_joints_term_is_the_mean_joint_distance_in_metres():
    batch = make_batch()
    target = batch["target"].clone()
    joints = joints_of(target, batch)
    assert float(compute_losses(target, batch, ALL_ON, joints)["joints"]) == pytest.approx(
        0.0, abs=1e-6)
    shifted = joints.clone()
    shifted[..., 1:, 0] += 0.01                 # every joint below the Hips 1 cm off
    out = compute_losses(target, batch, ALL_ON, shifted)
    assert float(out["joints"]) == pytest.approx(0.01, rel=1e-4)
    assert float(out["fk"]) == pytest.approx(0.0, abs=1e-6)  # the rotations are right
    shifted[..., 0, :] += 1.0                   # the Hips is not compared (always 0)
    assert float(compute_losses(target, batch, ALL_ON, shifted)["joints"]) == pytest.approx(
        0.01, rel=1e-4)
    batch["has_root_rotation"][0] = False       # the head works in the camera frame: skipped
    shifted[1] = joints[1]
    assert float(compute_losses(target, batch, ALL_ON, shifted)["joints"]) == pytest.approx(
        0.0, abs=1e-6)


def test_joints_term_needs_the_joints_only_when_weighted():
    batch = make_batch()
    with pytest.raises(ValueError, match="joint head"):
        compute_losses(batch["target"], batch, ALL_ON)
    out = compute_losses(batch["target"], batch, replace(ALL_ON, w_joints=0))
    assert np.isnan(float(out["joints"])) and np.isfinite(float(out["total"]))


def test_frame_term_is_the_branch_joint_distance_and_needs_it_only_when_weighted():
    batch = make_batch()
    target = batch["target"].clone()
    joints = joints_of(target, batch)
    cfg = replace(ALL_ON, w_frame=1)
    frame = joints[..., 1:, :].clone()
    assert float(compute_losses(target, batch, cfg, joints, frame)["frame"]) == pytest.approx(
        0.0, abs=1e-6)
    frame[..., 2] -= 0.03                       # every joint 3 cm too near the camera
    out = compute_losses(target, batch, cfg, joints, frame)
    assert float(out["frame"]) == pytest.approx(0.03, rel=1e-4)
    assert float(out["joints"]) == pytest.approx(0.0, abs=1e-6)  # the head's own term is apart
    with pytest.raises(ValueError, match="per-frame branch"):
        compute_losses(target, batch, cfg, joints)
    out = compute_losses(target, batch, ALL_ON, joints)
    assert np.isnan(float(out["frame"])) and np.isfinite(float(out["total"]))
