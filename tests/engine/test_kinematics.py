import numpy as np
import torch

from engine import kinematics as kin
from engine import rotations as rot
from engine.skeleton import DEFAULT_OFFSETS, PARENTS


def random_globals(f, seed=0):
    q = np.random.default_rng(seed).normal(size=(f, 21, 4))
    return rot.quaternion_to_matrix(q)


def test_fk_reproduces_totalcapture_positions(totalcapture_dir):
    import json
    d = np.load(totalcapture_dir / "gt" / "S1_freestyle1.npz")
    offsets = np.array(json.loads((totalcapture_dir / "skeleton.json").read_text())
                       ["offsets_m_per_sequence"]["S1_freestyle1"])
    g = rot.quaternion_to_matrix(d["orientations"][:200].astype(np.float64))
    pos = kin.forward_kinematics(g, offsets)
    ref = d["positions"][:200] - d["positions"][:200, :1]
    assert np.abs(pos - ref).max() < 1e-4


def test_local_global_round_trip_and_slots():
    g = random_globals(10)
    np.testing.assert_allclose(kin.local_to_global(g[:, 0], kin.global_to_local(g)), g, atol=1e-12)
    root = np.random.default_rng(1).normal(size=(10, 3))
    slots = kin.rotations_to_slots(g, root)
    assert slots.shape == (10, 22, 6)
    np.testing.assert_allclose(slots[1:, 0, :3], np.diff(root, axis=0), atol=1e-6)
    assert np.all(slots[0, 0, :3] == 0)
    trans, g2 = kin.slots_to_rotations(slots.astype(np.float64))
    np.testing.assert_allclose(g2, g, atol=1e-5)


def test_fk_bone_lengths_and_torch_agree():
    g = random_globals(5, seed=2)
    pos = kin.forward_kinematics(g)
    for j in range(1, 21):
        np.testing.assert_allclose(np.linalg.norm(pos[:, j] - pos[:, PARENTS[j]], axis=-1),
                                   np.linalg.norm(DEFAULT_OFFSETS[j]), rtol=1e-5)
    pos_t = kin.forward_kinematics(torch.from_numpy(g))
    np.testing.assert_allclose(pos_t.numpy(), pos, atol=1e-6)


# The joint-by-joint recursion the level-by-level functions replaced, written out.
def ref_local_to_global(root, local):
    glob = [root]
    for j in range(1, 21):
        glob.append(glob[PARENTS[j]] @ local[..., j - 1, :, :])
    return rot._stack(glob, axis=-3)


def ref_global_to_local(glob):
    return rot._stack([glob[..., PARENTS[j], :, :].swapaxes(-1, -2) @ glob[..., j, :, :]
                       for j in range(1, 21)], axis=-3)


def ref_forward_kinematics(glob, offsets):
    pos = [glob[..., 0, :, 0] * 0]
    for j in range(1, 21):
        p = PARENTS[j]
        pos.append(pos[p] + (glob[..., p, :, :] @ offsets[..., j, :, None])[..., 0])
    return rot._stack(pos, axis=-2)


def test_level_by_level_equals_the_joint_by_joint_recursion():
    rng = np.random.default_rng(3)
    for shape in [(), (4,), (2, 3)]:
        g = rot.quaternion_to_matrix(rng.normal(size=shape + (21, 4)))
        offsets = rng.normal(size=shape + (21, 3))
        for dtype, tol in [(np.float64, 1e-12), (np.float32, 2e-6)]:
            gd, od = g.astype(dtype), offsets.astype(dtype)
            loc = kin.global_to_local(gd)
            assert loc.dtype == dtype and loc.shape == shape + (20, 3, 3)
            np.testing.assert_allclose(loc, ref_global_to_local(gd), atol=tol)
            glob = kin.local_to_global(gd[..., 0, :, :], loc)
            assert glob.dtype == dtype and glob.shape == shape + (21, 3, 3)
            np.testing.assert_allclose(glob, ref_local_to_global(gd[..., 0, :, :], loc), atol=tol)
            pos = kin.forward_kinematics(gd, od)
            assert pos.dtype == dtype and pos.shape == shape + (21, 3)
            np.testing.assert_allclose(pos, ref_forward_kinematics(gd, od), atol=tol)
        # default offsets broadcast against a batch; (B, 1, 21, 3) offsets against (B, S, ...)
        np.testing.assert_allclose(kin.forward_kinematics(g),
                                   ref_forward_kinematics(g, DEFAULT_OFFSETS.astype(np.float64)),
                                   atol=1e-12)
    g = rot.quaternion_to_matrix(rng.normal(size=(2, 5, 21, 4)))
    off = rng.normal(size=(2, 1, 21, 3))
    np.testing.assert_allclose(kin.forward_kinematics(g, off), ref_forward_kinematics(g, off),
                               atol=1e-12)


def test_level_by_level_gradients_equal_the_recursion():
    rng = np.random.default_rng(4)
    g0 = rot.quaternion_to_matrix(rng.normal(size=(3, 21, 4)))
    off = torch.tensor(rng.normal(size=(21, 3)), requires_grad=True)
    w = torch.tensor(rng.normal(size=(3, 21, 3)))
    grads = []
    for l2g, g2l, fk in [(kin.local_to_global, kin.global_to_local, kin.forward_kinematics),
                         (ref_local_to_global, ref_global_to_local, ref_forward_kinematics)]:
        g = torch.tensor(g0, requires_grad=True)
        off.grad = None
        glob = l2g(g[..., 0, :, :], g2l(g))
        ((fk(glob, off) * w).sum() + glob.sum()).backward()
        grads.append((g.grad.clone(), off.grad.clone()))
    for a, b in zip(*grads):
        assert torch.isfinite(a).all() and a.abs().max() > 0
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
