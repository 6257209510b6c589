import numpy as np
import pytest

from engine import features as ft
from engine.errors import InputError


@pytest.fixture(scope="module")
def real_lm(totalcapture_dir):
    return np.load(totalcapture_dir / "blazepose" / "S2_freestyle2_cam2.npy")[:600]


def test_shapes_and_masking_on_real_data(real_lm):
    f, valid, _ = ft.compute_features(real_lm)
    assert f.shape == (600, 25, 18) and f.dtype == np.float32 and valid.shape == (600,)
    detected = (real_lm != 0).any(axis=(1, 2))
    assert (valid == detected).all()  # cam2 has frames without a detection
    assert (~valid).any()
    assert np.all(f[~valid] == 0)
    assert np.isfinite(f).all()


def test_restart_zeroes_velocities_and_sets_flag():
    rng = np.random.default_rng(0)
    lm = rng.uniform(0.2, 0.8, size=(10, 33, 10)).astype(np.float32)
    lm[:, :, 4] = 1
    lm[4] = 0                     # no detection
    lm[5, :, 4] = 0               # track restart
    f, valid, _ = ft.compute_features(lm)
    assert not valid[4] and valid[5]
    assert f[5, 0, 12] == 1 and f[6, 0, 12] == 0
    assert np.all(f[5, :, 3:6] == 0) and np.all(f[5, :, 8:10] == 0) and np.all(f[5, :, 16] == 0)
    assert np.any(f[6, :, 3:6] != 0)
    assert f[5, 0, 17] == 0 and f[6, 0, 17] == pytest.approx(1 / 64)


def test_nan_and_degenerate_frames_are_invalid():
    lm = np.random.default_rng(1).uniform(0.2, 0.8, size=(4, 33, 10)).astype(np.float32)
    lm[1, 3, 2] = np.nan
    lm[2, :, 5:7] = 0.5           # torso of length 0 in the image
    f, valid, _ = ft.compute_features(lm)
    assert valid.tolist() == [True, False, False, True]
    assert np.isfinite(f).all()


def test_chunked_features_equal_one_pass(real_lm):
    full, v_full, _ = ft.compute_features(real_lm)
    parts, state = [], None
    for s in range(0, 600, 77):
        f, v, state = ft.compute_features(real_lm[s:s + 77], state=state)
        parts.append(f)
    np.testing.assert_array_equal(np.concatenate(parts), full)


@pytest.mark.parametrize("bad", [np.zeros((5, 33)), np.zeros((5, 32, 10)), np.array(["a"] * 3)])
def test_bad_shapes_give_clear_errors(bad):
    with pytest.raises(InputError, match="landmarks"):
        ft.compute_features(bad)


def test_mirror_landmarks_is_involution(real_lm):
    m = ft.mirror_landmarks(real_lm)
    np.testing.assert_allclose(ft.mirror_landmarks(m), real_lm, atol=1e-6)
    det = (real_lm != 0).any(axis=(1, 2))
    # left wrist of the mirror is the right wrist, x flipped
    np.testing.assert_allclose(m[det, 15, 0], -real_lm[det, 16, 0])
    assert np.all(m[~det] == 0)


def test_ray_rotation_brings_world_landmarks_into_camera_axes(totalcapture_dir):
    """The measured finding behind channels 0-2: undoing the ray rotation lowers the error of
    BlazePose's world landmarks against the ground truth in the camera frame."""
    import json

    from engine.skeleton import EVAL_BLAZEPOSE_INDICES, EVAL_JOINT_INDICES, FEATURE_LANDMARK_INDICES
    cam = json.loads((totalcapture_dir / "calibration.json").read_text())["cameras"][2]  # cam3
    off = json.loads((totalcapture_dir / "alignment.json").read_text())["files"]["S2_freestyle2_cam3"]["offset_frames"]
    lm = np.load(totalcapture_dir / "blazepose" / "S2_freestyle2_cam3.npy")[100:900]
    gt = np.load(totalcapture_dir / "gt" / "S2_freestyle2.npz")["positions"][100 + off:900 + off]
    xc = gt @ np.array(cam["R"]).T + np.array(cam["t_m"])
    xc = xc - 0.5 * (xc[:, 15:16] + xc[:, 18:19])
    f, valid, _ = ft.compute_features(lm)
    fi = [FEATURE_LANDMARK_INDICES.index(b) for b in EVAL_BLAZEPOSE_INDICES]
    gt_j = xc[:, list(EVAL_JOINT_INDICES)]
    raw = np.linalg.norm(lm[:, list(EVAL_BLAZEPOSE_INDICES), :3] - gt_j, axis=-1)[valid].mean()
    turned = np.linalg.norm(f[:, fi, 0:3] - gt_j, axis=-1)[valid].mean()
    assert turned < 0.9 * raw


@pytest.mark.parametrize("aspect, focal", [(16 / 9, 0.67), (0.6, 1.3)])
def test_frame_by_frame_equals_one_pass_bit_for_bit(real_lm, aspect, focal):
    """The single-frame path (streaming) gives the one-pass numbers exactly, signed zeros
    included, through gaps, restarts, NaN/inf, implausible values and degenerate torsos, and
    after a chunk (a state without the single-frame path's cached terms)."""
    rng = np.random.default_rng(3)
    syn = rng.uniform(0.2, 0.8, size=(40, 33, 10)).astype(np.float32)
    syn[:, :, 4] = 1
    syn[4] = 0
    syn[5, :, 4] = 0
    syn[9, 3, 2] = np.nan
    syn[12, :, 5:7] = 0.5
    syn[20, 1, 1] = 1e3
    syn[21:23] = 0
    syn[30, 2, 2] = np.inf
    for lm in (real_lm[:300], syn):
        ref, v_ref, s_ref = ft.compute_features(lm, aspect, focal=focal)
        outs, vs = [], []
        f, v, state = ft.compute_features(lm[:7], aspect, focal=focal)
        outs.append(f), vs.append(v)
        for frame in lm[7:]:
            f, v, state = ft.compute_features(frame[None], aspect, state, focal)
            outs.append(f), vs.append(v)
        out = np.concatenate(outs)
        np.testing.assert_array_equal(out, ref)
        np.testing.assert_array_equal(np.signbit(out), np.signbit(ref))
        np.testing.assert_array_equal(np.concatenate(vs), v_ref)
        assert (state.prev_valid, state.since_start) == (s_ref.prev_valid, s_ref.since_start)
        np.testing.assert_array_equal(state.prev, s_ref.prev)


def test_single_frame_cache_follows_the_state(real_lm):
    """A state whose ``prev`` was replaced (or a different aspect) does not reuse the cached
    terms of another frame."""
    _, valid, _ = ft.compute_features(real_lm)
    i = next(i for i in range(len(real_lm) - 2)
             if valid[i:i + 3].all() and (real_lm[i + 1:i + 3, 0, 4] == 1).all())
    lm = real_lm[i:i + 3]
    _, _, s1 = ft.compute_features(lm[0:1])
    _, _, s2 = ft.compute_features(lm[1:2], state=s1)
    swapped = ft.FeatureState(prev=lm[0].copy(), prev_valid=True, since_start=s2.since_start,
                              terms=s2.terms)
    got, _, _ = ft.compute_features(lm[2:3], state=swapped)
    ref, _, _ = ft.compute_features(np.concatenate([lm[0:1], lm[2:3]]))
    np.testing.assert_array_equal(got[0, :, :17], ref[1, :, :17])
    assert np.any(got[0, :, 3:6] != 0)  # velocities (from the right previous frame)
    got, _, _ = ft.compute_features(lm[2:3], 1.0, state=s2)
    ref, _, _ = ft.compute_features(lm[1:3], 1.0)
    np.testing.assert_array_equal(got[0, :, :17], ref[1, :, :17])
