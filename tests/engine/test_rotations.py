"""Property tests of engine.rotations (numpy and torch, float64 round trips)."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.transform import Rotation

from engine import rotations as rot


def random_quats(n, seed=0):
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_quaternion_matrix_round_trip_float64(backend):
    q = random_quats(500)
    x = q if backend == "numpy" else torch.from_numpy(q)
    back = rot.matrix_to_quaternion(rot.quaternion_to_matrix(x))
    back = np.asarray(back)
    # equal up to sign
    err = np.minimum(np.abs(back - q).max(-1), np.abs(back + q).max(-1))
    assert err.max() < 1e-10


def test_matches_scipy_convention():
    """w,x,y,z real-first vs SciPy's x,y,z,w: same matrices once reordered."""
    q = random_quats(100, seed=1)
    ours = rot.quaternion_to_matrix(q)
    ref = Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_rotations_by_pi_are_stable():
    axes = np.eye(3)
    q = np.concatenate([np.zeros((3, 1)), axes], axis=1)  # 180 degrees about x, y, z
    m = rot.quaternion_to_matrix(q)
    back = rot.matrix_to_quaternion(m)
    err = np.minimum(np.abs(back - q).max(-1), np.abs(back + q).max(-1))
    assert err.max() < 1e-12
    assert np.all(back[:, 0] >= 0)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, (6,), elements=st.floats(-1e3, 1e3, allow_nan=False)))
def test_any_6d_gives_a_proper_rotation(d6):
    a1, a2 = d6[:3], d6[3:]
    if np.linalg.norm(np.cross(a1, a2)) <= 1e-3 * np.linalg.norm(a1) * np.linalg.norm(a2) + 1e-6:
        return  # degenerate input: no unique frame
    m = rot.rotation_6d_to_matrix(d6)
    np.testing.assert_allclose(m.T @ m, np.eye(3), atol=1e-9)
    assert abs(np.linalg.det(m) - 1) < 1e-9


def test_6d_round_trip_and_first_column_kept():
    m = rot.quaternion_to_matrix(random_quats(50, seed=2))
    np.testing.assert_allclose(rot.rotation_6d_to_matrix(rot.matrix_to_rotation_6d(m)), m, atol=1e-12)


def test_gradients_finite_torch():
    d6 = torch.randn(64, 6, dtype=torch.float64, requires_grad=True)
    q = rot.rotation_6d_to_quaternion(d6)
    q.sum().backward()
    assert torch.isfinite(d6.grad).all()
    m = torch.eye(3, dtype=torch.float64).expand(4, 3, 3).clone().requires_grad_(True)
    rot.matrix_to_quaternion(m).sum().backward()  # identity: sqrt at 0 in three branches
    assert torch.isfinite(m.grad).all()


def test_quaternion_multiply_is_matrix_product():
    a, b = random_quats(20, seed=3), random_quats(20, seed=4)
    np.testing.assert_allclose(rot.quaternion_to_matrix(rot.quaternion_multiply(a, b)),
                               rot.quaternion_to_matrix(a) @ rot.quaternion_to_matrix(b), atol=1e-12)


def test_geodesic_angle():
    aa = np.array([[0.3, 0, 0], [0, 0, 2.5], [0, 0, 0]])
    m = rot.axis_angle_to_matrix(aa)
    ang = rot.geodesic_angle(np.eye(3), m)
    np.testing.assert_allclose(ang, [0.3, 2.5, 0.0], atol=1e-6)
    ang_t = rot.geodesic_angle(torch.eye(3, dtype=torch.float64), torch.from_numpy(m))
    np.testing.assert_allclose(ang_t.numpy(), [0.3, 2.5, 0.0], atol=1e-3)


def test_axis_angle_matches_scipy():
    aa = np.random.default_rng(5).normal(size=(30, 3))
    np.testing.assert_allclose(rot.axis_angle_to_matrix(aa), Rotation.from_rotvec(aa).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(rot.axis_angle_to_matrix(torch.from_numpy(aa)).numpy(),
                               Rotation.from_rotvec(aa).as_matrix(), atol=1e-12)


def test_numpy_matrix_to_quaternion_equals_the_torch_candidates():
    """The NumPy path (candidates as one (9, 16) product) gives the torch path's quaternions,
    also for rotations by and near pi, float64 and float32; float32 keeps a float result."""
    rng = np.random.default_rng(5)
    axes = rng.normal(size=(60, 3))
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    angles = np.concatenate([np.full(20, np.pi), np.pi - 1e-6 * rng.random(20), rng.random(20) * 3])
    m = np.concatenate([rot.axis_angle_to_matrix(axes * angles[:, None]),
                        rot.quaternion_to_matrix(random_quats(200, seed=6)),
                        np.diag([1.0, -1, -1])[None], np.eye(3)[None]]).reshape(2, 131, 3, 3)
    ours = rot.matrix_to_quaternion(m)
    ref = rot.matrix_to_quaternion(torch.from_numpy(m)).numpy()
    assert ours.shape == (2, 131, 4)
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    f32 = rot.matrix_to_quaternion(m.astype(np.float32))
    assert f32.dtype.kind == "f"
    err = np.minimum(np.abs(f32 - ref).max(-1), np.abs(f32 + ref).max(-1))  # w ~ 0 at pi
    assert err.max() < 2e-6


def test_stack_equals_np_stack():
    xs = [np.arange(24.0).reshape(2, 3, 4) * k for k in range(3)]
    for axis in (-1, -2, -3, -4, 0, 2):
        out = rot._stack(xs, axis)
        np.testing.assert_array_equal(out, np.stack(xs, axis=axis))
        assert out.shape == np.stack(xs, axis=axis).shape
