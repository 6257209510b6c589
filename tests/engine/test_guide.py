"""engine.guide: rotations turned so that the bones point at predicted joints."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.guide import SWUNG, SWUNG_CHILD, guide_globals, guide_matrices, swing
from engine.kinematics import forward_kinematics, local_to_global
from engine.rotations import axis_angle_to_matrix
from engine.skeleton import JOINT_INDEX, JOINT_NAMES, PARENTS


def random_globals(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    local = axis_angle_to_matrix(rng.normal(size=(n, 21, 3)) * 0.5)
    return local_to_global(local[:, 0], local[:, 1:])


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_swung_joints_are_the_joints_with_one_child():
    names = {JOINT_NAMES[j] for j in SWUNG}
    assert names == {"Spine", "Spine1", "Spine2", "Neck", "RightShoulder", "RightArm",
                     "RightForeArm", "LeftShoulder", "LeftArm", "LeftForeArm", "RightUpLeg",
                     "RightLeg", "LeftUpLeg", "LeftLeg"}
    assert all(PARENTS[c] == j for j, c in zip(SWUNG, SWUNG_CHILD))


def test_swing_is_the_smallest_rotation_between_two_directions():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(500, 3)), rng.normal(size=(500, 3))
    r = swing(a, b)
    np.testing.assert_allclose((r @ unit(a)[..., None])[..., 0], unit(b), atol=1e-9)
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape),
                               atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-9)
    # smallest: the axis is normal to both directions (a x b is fixed by the rotation)
    axis = np.cross(a, b)
    np.testing.assert_allclose((r @ axis[..., None])[..., 0], axis, atol=1e-9)
    np.testing.assert_allclose(swing(a, 3 * a), np.broadcast_to(np.eye(3), r.shape), atol=1e-9)


def test_antiparallel_directions_stay_finite_in_value_and_gradient():
    a = torch.tensor([[1.0, 0.0, 0.0]], requires_grad=True)
    b = torch.tensor([[-1.0, 1e-7, 0.0]], requires_grad=True)
    r = swing(a, b)
    r.sum().backward()
    assert torch.isfinite(r).all() and torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


def test_zero_residual_changes_nothing():
    g = random_globals(50)
    g2, joints = guide_globals(g, np.zeros((50, 20, 3)))
    np.testing.assert_allclose(g2, g, atol=1e-9)
    np.testing.assert_allclose(joints, forward_kinematics(g), atol=1e-12)


def test_bones_point_at_the_predicted_joints():
    g = random_globals(40, seed=2)
    rng = np.random.default_rng(3)
    residual = rng.normal(size=(40, 20, 3)) * 0.08
    g2, joints = guide_globals(g, residual)
    np.testing.assert_allclose(joints[:, 1:], forward_kinematics(g)[:, 1:] + residual, atol=1e-12)
    p = forward_kinematics(g2)                                    # default body
    for j, c in zip(SWUNG, SWUNG_CHILD):
        cos = (unit(p[:, c] - p[:, j]) * unit(joints[:, c] - joints[:, j])).sum(-1)
        np.testing.assert_allclose(cos, 1.0, atol=1e-9, err_msg=JOINT_NAMES[j])
    r, l_ = JOINT_INDEX["RightUpLeg"], JOINT_INDEX["LeftUpLeg"]
    cos = (unit(p[:, l_] - p[:, r]) * unit(joints[:, l_] - joints[:, r])).sum(-1)
    np.testing.assert_allclose(cos, 1.0, atol=1e-9)
    # twist kept: a swung bone's rotation differs from the old one by a rotation whose axis
    # is normal to the old bone direction
    for j in SWUNG:
        delta = g2[:, j] @ np.swapaxes(g[:, j], -1, -2)
        axis = np.stack([delta[:, 2, 1] - delta[:, 1, 2], delta[:, 0, 2] - delta[:, 2, 0],
                         delta[:, 1, 0] - delta[:, 0, 1]], -1)
        c = SWUNG_CHILD[SWUNG.index(j)]
        bone = unit(p[:, c] - p[:, j])
        old_bone = unit(forward_kinematics(g)[:, c] - forward_kinematics(g)[:, j])
        assert np.abs((axis * np.cross(old_bone, bone)).sum(-1)
                      - np.linalg.norm(axis, axis=-1) * np.linalg.norm(
                          np.cross(old_bone, bone), axis=-1)).max() < 1e-6
    # joints without one child keep their rotation
    for name in ("Spine3", "Head", "RightHand", "LeftHand", "RightFoot", "LeftFoot"):
        np.testing.assert_allclose(g2[:, JOINT_INDEX[name]], g[:, JOINT_INDEX[name]], atol=1e-12)


def test_torch_equals_numpy_and_has_gradients():
    g = random_globals(8, seed=4).astype(np.float32)
    res = (np.random.default_rng(5).normal(size=(8, 20, 3)) * 0.05).astype(np.float32)
    g_np, j_np = guide_globals(g, res)
    gt = torch.from_numpy(g).requires_grad_()
    rt = torch.from_numpy(res).requires_grad_()
    g_t, j_t = guide_globals(gt, rt)
    np.testing.assert_allclose(g_t.detach().numpy(), g_np, atol=2e-5)
    np.testing.assert_allclose(j_t.detach().numpy(), j_np, atol=1e-6)
    (g_t.square().sum() + j_t.sum()).backward()
    assert torch.isfinite(gt.grad).all() and rt.grad.abs().sum() > 0


def test_guide_matrices_keeps_the_output_form():
    """Hips global + local rotations in, the same form out, equal to guiding the globals."""
    from engine.kinematics import global_to_local
    g = random_globals(6, seed=6).astype(np.float32)
    res = (np.random.default_rng(9).normal(size=(6, 20, 3)) * 0.05).astype(np.float32)
    mats = np.concatenate([g[:, :1], global_to_local(g)], axis=1)
    out, joints = guide_matrices(mats, res)
    assert out.dtype == np.float32 and out.shape == (6, 21, 3, 3) and joints.shape == (6, 21, 3)
    want, _ = guide_globals(g, res)
    np.testing.assert_allclose(local_to_global(out[:, 0], out[:, 1:]), want, atol=1e-5)
    with pytest.raises(Exception):
        guide_matrices(mats, np.zeros((6, 19, 3), np.float32))


def test_one_frame_equals_the_batch():
    """A streamed frame takes a shorter path (the Hips in Python floats): same result."""
    g = random_globals(5, seed=7).astype(np.float32)
    res = (np.random.default_rng(8).normal(size=(5, 20, 3)) * 0.05).astype(np.float32)
    batch, joints = guide_globals(g, res)
    for i in range(5):
        one, j1 = guide_globals(g[i], res[i])
        assert one.dtype == np.float32 and one.shape == (21, 3, 3)
        np.testing.assert_allclose(one, batch[i], atol=2e-6)
        np.testing.assert_allclose(j1, joints[i], atol=1e-7)
