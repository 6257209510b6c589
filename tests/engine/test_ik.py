"""engine.ik: the geometric prior is a proper rotation, backend-independent, re-derivable from
the shared data, and already close to the ground truth before any learning."""
import numpy as np
import pytest
import torch

from engine import ik
from engine import metrics as mt
from engine.features import compute_features
from engine.kinematics import forward_kinematics


def test_prior_is_a_rotation_and_backends_agree():
    x = np.random.default_rng(0).normal(size=(7, 25, 3))
    g = ik.prior_rotations(x)
    assert g.shape == (7, 21, 3, 3)
    np.testing.assert_allclose(np.swapaxes(g, -1, -2) @ g, np.broadcast_to(np.eye(3), g.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(g), 1.0, atol=1e-12)
    np.testing.assert_allclose(ik.prior_rotations(torch.from_numpy(x)).numpy(), g, atol=1e-12)


def test_zero_landmarks_keep_the_residual():
    res = np.tile(np.array([1.0, 0, 0, 0, 1, 0], dtype=np.float32), (2, 21, 1))
    out = ik.apply_prior(res, np.zeros((2, 25, 3), dtype=np.float32))
    np.testing.assert_allclose(out, res, atol=1e-6)


@pytest.fixture(scope="module")
def real_pair(totalcapture_dir):
    from training import totalcapture as tc
    p = tc.load_aligned_pair(totalcapture_dir, "S1_freestyle1_cam4")
    sl = slice(0, None, 3)
    f, valid, _ = compute_features(p["landmarks"][sl], focal=p["camera"].fx / 1920)
    return f[valid][:, :, 0:3].astype(np.float64), p["glob"][sl][valid], p["pos"][sl][valid]


def test_local_axes_are_re_derived_from_the_data(real_pair):
    """One training view (of the 25 the table was fitted on) re-derives it closely."""
    x, glob, _ = real_pair
    fitted = ik.fit_local_axes([(x, glob)])
    for name, axes in ik.LOCAL_AXES.items():
        cos = (np.asarray(axes) * fitted[name]).sum(-1)
        assert cos[0] > np.cos(np.radians(30)), name
    assert np.mean([(np.asarray(a) * fitted[n]).sum(-1).mean() for n, a in ik.LOCAL_AXES.items()]) > 0.97


def test_prior_alone_is_about_as_good_as_blazepose(real_pair):
    x, glob, pos = real_pair
    g = ik.prior_rotations(x)
    pred = mt.center_eval_joints(forward_kinematics(g))
    gt = mt.center_eval_joints(pos - pos[:, :1])
    assert mt.pa_mpjpe(pred, gt).mean() < 90
    assert mt.mare(g, glob).mean() < 0.8


def test_prior_under_cpu_bf16_autocast():
    """Training on CPU with mixed precision (bf16 autocast) must run through the prior."""
    from engine.model import ModelConfig, MotionTransformer
    m = MotionTransformer(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64))
    x = torch.randn(2, 8, 25, 18)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
    out.float().sum().backward()
    assert torch.isfinite(out.float()).all()
