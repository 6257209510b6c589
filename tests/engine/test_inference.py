import numpy as np
import pytest

from engine import inference as inf
from engine import rotations as rot
from engine.checkpoint import export_weights
from engine.errors import CheckpointError, InputError
from engine.filters import OneEuroConfig
from engine.kinematics import forward_kinematics
from engine.skeleton import DEFAULT_OFFSETS, PARENTS

FPS = 30.0
# 300 frames: rest before the first detection (0-2), a short gap (50-54, interpolated at
# 30 fps: <= 15 frames), a long gap (120-159, held), a trailing gap (297-299, held).
GAPS = [(0, 3), (50, 55), (120, 160), (297, 300)]


@pytest.fixture(scope="module")
def model(make_tiny_model):
    return make_tiny_model(0)


@pytest.fixture(scope="module")
def predictor(model):
    return inf.Predictor(model)


@pytest.fixture(scope="module")
def lm(make_landmarks):
    return make_landmarks(300, 0, GAPS)


@pytest.fixture(scope="module")
def pred(predictor, lm):
    return predictor.predict(lm, fps=FPS)


def test_shapes_units_and_consistency(pred):
    n = 300
    assert pred.local_6d.shape == (n, 22, 6) and pred.global_quats.shape == (n, 21, 4)
    assert pred.joints.shape == (n, 21, 3) and pred.root_translation.shape == (n, 3)
    assert pred.valid.dtype == bool and len(pred) == n
    for a in (pred.local_6d, pred.global_quats, pred.joints, pred.root_translation):
        assert a.dtype == np.float32 and np.isfinite(a).all()
    # quaternions are unit, continuous in time, and give the joints through FK (default body)
    np.testing.assert_allclose(np.linalg.norm(pred.global_quats, axis=-1), 1, atol=1e-5)
    assert ((pred.global_quats[1:] * pred.global_quats[:-1]).sum(-1) >= 0).all()
    fk = forward_kinematics(rot.quaternion_to_matrix(pred.global_quats.astype(np.float64)),
                            DEFAULT_OFFSETS.astype(np.float64))
    np.testing.assert_allclose(fk, pred.joints, atol=1e-5)
    # metres relative to the Hips: bone lengths are the default body's
    assert np.abs(pred.joints[:, 0]).max() == 0
    bones = np.linalg.norm(pred.joints[:, 1:] - pred.joints[:, list(PARENTS[1:])], axis=-1)
    np.testing.assert_allclose(bones, np.broadcast_to(np.linalg.norm(DEFAULT_OFFSETS[1:], axis=-1),
                                                      bones.shape), atol=1e-5)
    # 6D rotations are orthonormal column pairs; slot 0 carries the root position
    c0, c1 = pred.local_6d[:, 1:, :3], pred.local_6d[:, 1:, 3:]
    np.testing.assert_allclose(np.linalg.norm(c0, axis=-1), 1, atol=1e-5)
    np.testing.assert_allclose((c0 * c1).sum(-1), 0, atol=1e-5)
    np.testing.assert_array_equal(pred.root_translation, pred.local_6d[:, 0, 3:6])
    # the model responds to the input: poses vary over the valid frames
    assert pred.joints[pred.valid].std(axis=0).max() > 1e-3


def test_gaps_are_bridged_and_reported(pred):
    valid = np.ones(300, dtype=bool)
    for a, b in GAPS:
        valid[a:b] = False
    np.testing.assert_array_equal(pred.valid, valid)
    cov = pred.coverage
    assert (cov.frames, cov.valid_frames, cov.gaps, cov.longest_gap) == (300, 249, 4, 40)
    assert (cov.rest_frames, cov.interpolated_frames, cov.held_frames) == (3, 5, 43)
    assert cov.fraction == pytest.approx(249 / 300)
    # before the first detection: the rest pose, upright (head above the hips: y down)
    np.testing.assert_allclose(pred.local_6d[:3], np.broadcast_to(inf.rest_slots(), (3, 22, 6)),
                               atol=1e-6)
    assert pred.joints[0, 6, 1] < -0.5
    # long and trailing gaps hold the last pose, with zero displacement
    for a, b in [(120, 160), (297, 300)]:
        held = np.broadcast_to(pred.local_6d[a - 1, 1:], (b - a, 21, 6))
        np.testing.assert_allclose(pred.local_6d[a:b, 1:], held, atol=1e-6)
        assert np.all(pred.root_translation[a:b] == pred.root_translation[a - 1])
        assert np.all(pred.local_6d[a:b, 0, :3] == 0)
    # the short gap is interpolated: root position linear, rotations on the geodesic between
    a, b = 49, 55
    w = (np.arange(50, 55) - a) / (b - a)
    lin = (1 - w)[:, None] * pred.root_translation[a] + w[:, None] * pred.root_translation[b]
    np.testing.assert_allclose(pred.root_translation[50:55], lin, atol=1e-6)
    m = rot.quaternion_to_matrix(pred.global_quats[[a, 52, b], 0].astype(np.float64))
    ang_ab = rot.geodesic_angle(m[0], m[2])
    assert ang_ab > 1e-3
    assert rot.geodesic_angle(m[0], m[1]) == pytest.approx(ang_ab / 2, abs=1e-3)
    assert rot.geodesic_angle(m[1], m[2]) == pytest.approx(ang_ab / 2, abs=1e-3)


def test_chunked_equals_one_pass(predictor, lm, pred):
    chunked = predictor.predict(lm, fps=FPS, chunk=7)
    for name in ("local_6d", "global_quats", "joints", "root_translation"):
        np.testing.assert_allclose(getattr(chunked, name), getattr(pred, name), atol=1e-5)


def test_streaming_equals_batch_on_valid_frames(predictor, lm, pred):
    stream = predictor.stream(fps=FPS)
    frames = [stream.push(f) for f in lm]
    assert all(len(p) == 1 for p in frames)
    s6d = np.concatenate([p.local_6d for p in frames])
    sq = np.concatenate([p.global_quats for p in frames])
    sj = np.concatenate([p.joints for p in frames])
    sv = np.concatenate([p.valid for p in frames])
    np.testing.assert_array_equal(sv, pred.valid)
    v = pred.valid
    np.testing.assert_allclose(s6d[v], pred.local_6d[v], atol=1e-5)
    np.testing.assert_allclose(sq[v], pred.global_quats[v], atol=1e-5)
    np.testing.assert_allclose(sj[v], pred.joints[v], atol=1e-5)
    # streaming cannot see the next detection: every gap holds the last pose
    np.testing.assert_allclose(s6d[50:55, 1:], np.broadcast_to(s6d[49, 1:], (5, 21, 6)), atol=1e-6)
    np.testing.assert_allclose(s6d[:3], np.broadcast_to(inf.rest_slots(), (3, 22, 6)), atol=1e-6)
    cov = stream.coverage
    assert (cov.frames, cov.valid_frames, cov.gaps, cov.longest_gap, cov.rest_frames, cov.held_frames) \
        == (300, 249, 4, 40, 3, 48)


def test_streaming_runs_the_numpy_frame_path_and_falls_back_to_step(predictor, lm, pred):
    """Both backends stream through NumpyMotionTransformer.step_frame; a backend without a
    frame network streams through its own ``step``, with the same outputs."""
    from engine.numpy_model import NumpyMotionTransformer

    assert isinstance(inf.frame_network(predictor.backend), NumpyMotionTransformer)

    class StepOnly:  # the Backend protocol and nothing else
        name = "step-only"

        def step(self, feats, valid, cache):
            return predictor.backend.step(feats, valid, cache)
    assert inf.frame_network(StepOnly()) is None
    stream = inf.Predictor(StepOnly()).stream(fps=FPS)
    got = np.concatenate([stream.push(f).local_6d for f in lm[:80]])
    v = pred.valid[:80]
    np.testing.assert_allclose(got[v], pred.local_6d[:80][v], atol=1e-5)


def test_single_frame_and_bad_inputs(predictor, lm):
    one = predictor.predict(lm[10:11], fps=FPS)
    assert one.joints.shape == (1, 21, 3) and one.valid.tolist() == [True]
    nothing = predictor.predict(np.zeros((4, 33, 10), np.float32), fps=FPS)  # never detected
    assert not nothing.valid.any() and nothing.coverage.rest_frames == 4
    with pytest.raises(InputError, match="no frames"):
        predictor.predict(np.zeros((0, 33, 10), np.float32))
    with pytest.raises(InputError, match="shape"):
        predictor.predict(np.zeros((5, 33, 3), np.float32))
    with pytest.raises(InputError, match="aspect"):
        predictor.predict(lm, aspect=0)
    with pytest.raises(InputError, match="shape"):
        predictor.stream().push(lm[:2])


def test_smoothing_is_causal_and_reduces_jitter(model, lm, pred):
    noisy = lm.copy()
    noise = np.random.default_rng(3).normal(0, 0.02, noisy[:, :, :8].shape)
    noisy[:, :, :8] += noise * (noisy[:, :, :8] != 0)
    cfg = inf.InferenceConfig(smoothing=OneEuroConfig(min_cutoff=1.0, beta=0.0))
    smooth_p = inf.Predictor(model, cfg)
    rough = inf.Predictor(model).predict(noisy, fps=FPS)
    smooth = smooth_p.predict(noisy, fps=FPS)
    seg = slice(160, 297)  # a long run of valid frames

    def jit(p):
        return np.abs(np.diff(p.joints[seg], 2, axis=0)).mean()
    assert jit(smooth) < 0.7 * jit(rough)
    stream = smooth_p.stream(fps=FPS)
    s = np.concatenate([stream.push(f).local_6d for f in noisy])
    np.testing.assert_allclose(s[smooth.valid], smooth.local_6d[smooth.valid], atol=1e-5)


def test_backends_and_checkpoints(tmp_path, model, lm, pred, monkeypatch):
    path = tmp_path / "w.safetensors"
    export_weights(model, path)
    for backend in ("torch", "numpy", "auto"):
        p = inf.Predictor.from_checkpoint(path, backend=backend).predict(lm, fps=FPS)
        np.testing.assert_allclose(p.local_6d, pred.local_6d, atol=1e-4)
    monkeypatch.setattr(inf, "DEFAULT_WEIGHTS", tmp_path / "none" / "default.safetensors")
    with pytest.raises(CheckpointError, match="shipped weights"):
        inf.Predictor.from_checkpoint(None)
    with pytest.raises(CheckpointError, match="not found"):
        inf.Predictor.from_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(InputError, match="backend"):
        inf.Predictor.from_checkpoint(path, backend="jax")
