import numpy as np
import pytest

from engine import metrics as mt
from engine.filters import OneEuroConfig, OneEuroFilter, one_euro
from engine.rotations import axis_angle_to_matrix
from engine.skeleton import DEFAULT_OFFSETS, EVAL_JOINT_INDICES, EVAL_ROOT_JOINTS, NUM_JOINTS
from engine.kinematics import forward_kinematics


def random_poses(n: int = 20, j: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.3, size=(n, j, 3))


def random_rotations(shape, seed: int = 0) -> np.ndarray:
    return axis_angle_to_matrix(np.random.default_rng(seed).normal(0, 1.0, size=shape + (3,)))


def test_identical_poses_give_zero():
    p = random_poses()
    mask = np.ones(len(p), dtype=bool)
    assert np.all(mt.mpjpe(p, p) == 0)
    np.testing.assert_allclose(mt.pa_mpjpe(p, p), 0, atol=1e-9)
    np.testing.assert_allclose(mt.accel_error(p, p, mask), 0, atol=1e-12)
    r = random_rotations((5, NUM_JOINTS))
    np.testing.assert_allclose(mt.mare(r, r), 0, atol=1e-6)


def test_known_offsets_in_mm():
    gt = random_poses()
    pred = gt + np.array([0.003, 0.0, 0.004])  # every joint 5 mm off
    np.testing.assert_allclose(mt.mpjpe(pred, gt), 5.0, atol=1e-9)
    np.testing.assert_allclose(mt.pa_mpjpe(pred, gt), 0.0, atol=1e-9)  # a translation
    one_off = gt.copy()
    one_off[:, 0] += [0.0, 0.012, 0.0]  # one of 12 joints 12 mm off -> 1 mm mean
    np.testing.assert_allclose(mt.mpjpe(one_off, gt), 1.0, atol=1e-9)


def test_procrustes_removes_similarity_but_not_shape_or_reflection():
    gt = random_poses(seed=1)
    r = random_rotations((len(gt),), seed=2)
    moved = 1.7 * np.einsum("fij,fkj->fki", r, gt) + np.array([0.3, -1.0, 4.0])
    np.testing.assert_allclose(mt.pa_mpjpe(moved, gt), 0, atol=1e-6)
    assert mt.mpjpe(moved, gt).min() > 100
    # a mirror image is not a similarity transform: PA must not undo it
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    assert mt.pa_mpjpe(mirrored, gt).min() > 1.0
    # invariant to a similarity transform of the prediction
    noisy = gt + np.random.default_rng(3).normal(0, 0.02, gt.shape)
    moved_noisy = 0.6 * np.einsum("fij,fkj->fki", r, noisy) + 2.0
    np.testing.assert_allclose(mt.pa_mpjpe(moved_noisy, gt), mt.pa_mpjpe(noisy, gt), rtol=1e-6)
    assert np.all(mt.pa_mpjpe(noisy, gt) <= mt.mpjpe(noisy, gt) + 1e-9)


def test_accel_and_jitter():
    t = np.arange(30, dtype=np.float64)[:, None, None]
    gt = random_poses(1, seed=4) + 0.01 * t * np.array([1.0, -0.5, 0.2])  # constant velocity
    mask = np.ones(30, dtype=bool)
    np.testing.assert_allclose(mt.jitter(gt, mask), 0, atol=1e-9)
    accel = gt + 0.5 * 0.002 * t ** 2 * np.array([1.0, 0.0, 0.0])  # 2 mm/frame^2 on every joint
    np.testing.assert_allclose(mt.accel_error(accel, gt, mask), 2.0, atol=1e-9)
    np.testing.assert_allclose(mt.jitter(accel, mask), 2.0, atol=1e-9)
    # only frames whose 3-frame neighbourhood is in the mask count
    mask[10] = False
    assert mt.accel_error(accel, gt, mask).shape == (28 - 3,)
    assert mt.accel_error(accel[:2], gt[:2], mask[:2]).shape == (0,)


def test_mare_known_angle():
    r = random_rotations((4, NUM_JOINTS), seed=5)
    turn = axis_angle_to_matrix(np.array([0.0, 0.3, 0.0]))
    np.testing.assert_allclose(mt.mare(r @ turn, r), 0.3, atol=1e-6)


def test_centering_uses_the_up_leg_midpoint_and_blazepose_hips():
    glob = np.broadcast_to(np.eye(3), (2, NUM_JOINTS, 3, 3))
    joints = forward_kinematics(glob, DEFAULT_OFFSETS.astype(np.float64)) + 5.0
    c = mt.center_eval_joints(joints)
    assert c.shape == (2, 12, 3)
    i_r = list(EVAL_JOINT_INDICES).index(EVAL_ROOT_JOINTS[0])
    i_l = list(EVAL_JOINT_INDICES).index(EVAL_ROOT_JOINTS[1])
    np.testing.assert_allclose(c[:, i_r] + c[:, i_l], 0, atol=1e-12)
    world = np.random.default_rng(6).normal(size=(3, 33, 3))
    b = mt.center_blazepose_joints(world)
    np.testing.assert_allclose(b[:, 6] + b[:, 9], 0, atol=1e-12)  # hips 24 / 23


def test_one_euro_constant_noise_and_causality():
    cfg = OneEuroConfig(min_cutoff=1.0, beta=0.5, d_cutoff=1.0, fps=60.0)
    const = np.broadcast_to(np.array([0.1, -0.2, 3.0]), (100, 5, 3)).copy()
    np.testing.assert_allclose(one_euro(const, cfg), const, atol=1e-12)
    rng = np.random.default_rng(0)
    clean = np.sin(np.linspace(0, 3, 300))[:, None, None] * np.ones((1, 5, 3))
    noisy = clean + rng.normal(0, 0.05, clean.shape)
    still = const + rng.normal(0, 0.05, const.shape)
    smooth = one_euro(still, OneEuroConfig(min_cutoff=1.0, beta=0.0, fps=60.0))
    assert np.abs(smooth - const)[30:].mean() < 0.5 * np.abs(still - const)[30:].mean()
    out = one_euro(noisy, cfg)
    assert np.abs(np.diff(out, 2, axis=0)).mean() < 0.5 * np.abs(np.diff(noisy, 2, axis=0)).mean()
    changed = noisy.copy()
    changed[150:] += 1.0
    np.testing.assert_array_equal(one_euro(changed, cfg)[:150], out[:150])
    assert not np.allclose(one_euro(changed, cfg)[150:], out[150:])


def test_one_euro_resets_at_gaps_and_streams_like_batch():
    cfg = OneEuroConfig(min_cutoff=0.5, beta=0.0, fps=30.0)
    x = np.random.default_rng(1).normal(size=(50, 2, 6)).astype(np.float32)
    valid = np.ones(50, dtype=bool)
    valid[20:23] = False
    out = one_euro(x, cfg, valid)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[20:24], x[20:24])  # gap unchanged, restart passes through
    np.testing.assert_array_equal(out[0], x[0])
    assert not np.allclose(out[5], x[5])
    f = OneEuroFilter(cfg)
    stream = np.stack([f(x[t]) for t in range(20)])
    np.testing.assert_allclose(stream, out[:20], atol=1e-7)
    with pytest.raises(ValueError):
        OneEuroConfig(min_cutoff=0.0)


def test_one_euro_sequence_equals_the_written_out_filter_with_resets():
    """The in-place sequence filter == the paper's recursion, restarted after invalid frames."""
    rng = np.random.default_rng(3)
    x = np.cumsum(rng.normal(size=(200, 4, 6)), axis=0).astype(np.float32)
    valid = np.ones(200, bool)
    valid[[50, 51, 120]] = False
    cfg = OneEuroConfig(min_cutoff=2.0, beta=0.3, d_cutoff=1.0, fps=30.0)
    ad = 1 / (1 + 30.0 / (2 * np.pi * 1.0))
    ref, xh, dxh = x.astype(np.float64).copy(), None, None
    for t in range(200):
        if not valid[t]:
            xh = None
            continue
        if xh is None:
            xh, dxh = x[t].astype(np.float64), np.zeros((4, 6))
            continue
        dxh = ad * (x[t] - xh) * 30.0 + (1 - ad) * dxh
        fc = 2.0 + 0.3 * np.linalg.norm(dxh, axis=-1, keepdims=True)
        a = 1 / (1 + 30.0 / (2 * np.pi * fc))
        xh = a * x[t] + (1 - a) * xh
        ref[t] = xh
    out = one_euro(x, cfg, valid)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out[~valid], x[~valid])
    f = OneEuroFilter(cfg)
    step = np.stack([f(x[t]) for t in range(50)])
    np.testing.assert_allclose(step, out[:50], rtol=1e-6, atol=1e-6)


def test_one_euro_vector_cutoffs_give_single_vectors_their_own_filter():
    """A vector with its own min cutoff is filtered exactly as if it were filtered alone."""
    rng = np.random.default_rng(4)
    x = np.cumsum(rng.normal(size=(120, 3, 6)), axis=0).astype(np.float32)
    valid = np.ones(120, bool)
    valid[60] = False
    cfg = OneEuroConfig(min_cutoff=2.0, beta=0.3, fps=30.0, vector_cutoffs=((1, 8.0),))
    out = one_euro(x, cfg, valid)
    plain = one_euro(x, OneEuroConfig(min_cutoff=2.0, beta=0.3, fps=30.0), valid)
    own = one_euro(x, OneEuroConfig(min_cutoff=8.0, beta=0.3, fps=30.0), valid)
    np.testing.assert_array_equal(out[:, [0, 2]], plain[:, [0, 2]])
    np.testing.assert_array_equal(out[:, 1], own[:, 1])
    assert not np.allclose(out[:, 1], plain[:, 1])
    f = OneEuroFilter(cfg)
    np.testing.assert_allclose(np.stack([f(x[t]) for t in range(60)]), out[:60], atol=1e-6)
    with pytest.raises(ValueError, match="do not fit"):
        one_euro(x, OneEuroConfig(vector_cutoffs=((3, 1.0),)))
    for bad in (((0, 0.0),), ((-1, 2.0),), ((0, float("nan")),), (("a", 1.0),)):
        with pytest.raises(ValueError, match="vector cutoffs"):
            OneEuroConfig(vector_cutoffs=bad)
