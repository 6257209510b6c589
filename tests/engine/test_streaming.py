"""The lean torch forward (rolling key/value cache, blocked attention), chunked batch runs and
streaming: all equal the module's one-pass forward and batch ``predict``."""
import numpy as np
import pytest
import torch

from engine import inference as inf
from engine.features import compute_features

FPS = 30.0
GAPS = [(0, 2), (40, 43), (90, 130), (250, 251)]  # rest, short, long (held), single frame


@pytest.fixture(scope="module")
def model(make_tiny_model):
    return make_tiny_model(1)


@pytest.fixture(scope="module")
def lm(make_landmarks):
    return make_landmarks(300, 4, GAPS)


@pytest.fixture(scope="module")
def one_pass(model, lm):
    feats, valid, _ = compute_features(lm)
    with torch.no_grad():
        out = model(torch.from_numpy(feats)[None], torch.from_numpy(valid)[None])[0].numpy()
    return feats, valid, out


@pytest.mark.parametrize("chunk,block", [(1, 32), (7, 32), (16, 4), (100, 32), (300, 64)])
def test_lean_forward_equals_the_module(model, one_pass, chunk, block):
    feats, valid, ref = one_pass
    backend = inf.TorchBackend(model, block=block)
    cache, outs = None, []
    for i in range(0, len(feats), chunk):
        out, cache = backend.step(feats[i:i + chunk], valid[i:i + chunk], cache)
        outs.append(out)
    np.testing.assert_allclose(np.concatenate(outs), ref, atol=1e-5)
    assert cache.t == len(feats) and cache.k.shape[2] == model.cfg.window  # a ring, not a log


def test_mixed_chunks_and_frames_share_one_cache(model, one_pass):
    feats, valid, ref = one_pass
    backend = inf.TorchBackend(model)
    cache, outs, i = None, [], 0
    for size in [1, 1, 5, 40, 1, 3, 17, 1, 100, 1, 1000]:
        out, cache = backend.step(feats[i:i + size], valid[i:i + size], cache)
        outs.append(out)
        i += size
    np.testing.assert_allclose(np.concatenate(outs), ref, atol=1e-5)


def test_far_positions_give_the_same_outputs(model, one_pass):
    """Keys are rotated at absolute frame indices: an hour into a video (216,000 frames at
    60 fps) the outputs are still those of a fresh sequence."""
    feats, valid, ref = one_pass
    backend = inf.TorchBackend(model)
    for chunk in (1, 64):
        cache = backend.new_cache()
        cache.t = 216_000 - 7
        outs = []
        for i in range(0, 80, chunk):
            j = min(i + chunk, 80)
            out, cache = backend.step(feats[i:j], valid[i:j], cache)
            outs.append(out)
        np.testing.assert_allclose(np.concatenate(outs), ref[:80], atol=1e-5)


def test_streaming_equals_batch_from_the_first_frame(model, lm):
    predictor = inf.Predictor(model)
    batch = predictor.predict(lm, fps=FPS)
    stream = predictor.stream(fps=FPS)
    frames = [stream.push(f) for f in lm]
    valid = batch.valid
    assert valid[2] and not valid[:2].any()
    for name in ("local_6d", "global_quats", "joints", "root_translation"):
        got = np.concatenate([getattr(p, name) for p in frames])
        # every frame with a detection, the first one included (no warm-up), to 1e-5
        np.testing.assert_allclose(got[valid], getattr(batch, name)[valid], atol=1e-5)
    stream.reset()  # a new sequence starts afresh
    again = np.concatenate([stream.push(f).local_6d for f in lm[:60]])
    np.testing.assert_allclose(again[valid[:60]], batch.local_6d[:60][valid[:60]], atol=1e-5)


def test_chunked_run_equals_predict(model, lm, monkeypatch):
    predictor = inf.Predictor(model)
    ref = predictor.predict(lm, fps=FPS)
    monkeypatch.setattr(inf, "CONVERT_CHUNK", 37)  # the final conversion in blocks, too
    run = predictor.begin(fps=FPS, chunk=50)       # length unknown: the buffer grows
    for a, b in [(0, 1), (1, 90), (90, 91), (91, 300)]:
        run.feed(lm[a:b])
    assert run.frames == 300
    got = run.finish()
    for name in ("local_6d", "global_quats", "joints", "root_translation", "valid"):
        np.testing.assert_allclose(getattr(got, name), getattr(ref, name), atol=1e-6)
    assert got.coverage == ref.coverage
    with pytest.raises(RuntimeError, match="finished"):
        run.feed(lm[:3])
    with pytest.raises(inf.InputError, match="no frames"):
        predictor.begin(fps=FPS).finish()


def test_numpy_backend_streams_like_its_batch(model, lm, tmp_path):
    from engine.checkpoint import export_weights

    path = tmp_path / "w.safetensors"
    export_weights(model, path)
    predictor = inf.Predictor.from_checkpoint(path, backend="numpy")
    batch = predictor.predict(lm[:120], fps=FPS)
    stream = predictor.stream(fps=FPS)
    got = np.concatenate([stream.push(f).local_6d for f in lm[:120]])
    np.testing.assert_allclose(got[batch.valid], batch.local_6d[batch.valid], atol=1e-5)


def test_frame_conversion_equals_the_batch_conversion():
    """The streaming path's one-frame conversion equals slots_to_prediction frame by frame,
    quaternion signs carried over (random, non-orthonormal 6D: both re-orthonormalise)."""
    rng = np.random.default_rng(7)
    slots = rng.normal(size=(6, 22, 6)).astype(np.float32)
    offsets = rng.normal(size=(21, 3)).astype(np.float32)
    cov = inf.Coverage(frames=6)
    ref = inf.slots_to_prediction(slots, np.ones(6, bool), cov, offsets)
    assert (ref.global_quats[1:, :, 0] < 0).any()  # some signs were carried over (w < 0)
    prev = None
    for i in range(6):
        got = inf.frame_to_prediction(slots[i].copy(), True, cov, offsets, prev)
        for name in ("local_6d", "global_quats", "joints", "root_translation"):
            assert getattr(got, name).dtype == np.float32
            np.testing.assert_allclose(getattr(got, name)[0], getattr(ref, name)[i], atol=1e-6)
        assert got.valid.tolist() == [True] and got.coverage is cov
        prev = got.global_quats[0]


def test_step_frame_gives_the_rotations_its_slots_encode(model, one_pass):
    """With the geometric prior, step_frame(matrices=True) hands over the composed rotations,
    which the streaming conversion uses instead of decoding the 6D slots again."""
    from engine.rotations import matrix_to_rotation_6d
    feats, valid, ref = one_pass
    net = inf.frame_network(inf.TorchBackend(model))
    assert net.geometric_prior
    cache = net.new_frame_cache()
    for i in range(5):
        out, mats = net.step_frame(feats[i], bool(valid[i]), cache, matrices=True)
        assert mats.shape == (21, 3, 3) and mats.dtype == np.float32
        np.testing.assert_array_equal(matrix_to_rotation_6d(mats), out[1:])
        np.testing.assert_allclose(mats @ np.swapaxes(mats, -1, -2),
                                   np.broadcast_to(np.eye(3), mats.shape), atol=1e-5)
        np.testing.assert_allclose(out, ref[i], atol=1e-5)
