import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import model as tm
from engine import numpy_model as nm
from engine.checkpoint import export_weights
from engine.errors import CheckpointError

REPO = Path(__file__).resolve().parents[2]


def random_model(seed: int = 0, joint_head: bool = False,
                 frame_branch: int = 0) -> tm.MotionTransformer:
    """A tiny model whose every parameter is random (not the near-identity init)."""
    torch.manual_seed(seed)
    m = tm.MotionTransformer(tm.ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, window=16,
                                            joint_head=joint_head, frame_branch=frame_branch,
                                            frame_mix=0.7))
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.3)
        if frame_branch:  # joints tens of centimetres from the head's, as in a trained model
            m.frame_branch.out.weight.mul_(0.1)
    m.set_input_normalization(torch.randn(450) * 0.1, torch.rand(450) + 0.5)
    return m.eval()


def numpy_twin(m: tm.MotionTransformer) -> nm.NumpyMotionTransformer:
    return nm.NumpyMotionTransformer({k: v.numpy() for k, v in m.state_dict().items()},
                                     m.cfg.to_dict())


def test_erf_matches_math_erf():
    x = np.concatenate([np.linspace(-9, 9, 20001), [0.0, 1.0, -1.0, 8.0, -8.0, 1e-12, 40.0]])
    ref = np.array([math.erf(v) for v in x])
    assert np.abs(nm.erf(x) - ref).max() < 1e-15


def test_gelu_matches_torch_exact_gelu():
    x = np.concatenate([np.linspace(-12, 12, 200001), [0.0, np.inf, -1e9, 1e9]]).astype(np.float32)
    ref = torch.nn.functional.gelu(torch.from_numpy(x).double()).numpy()
    out = nm.gelu(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert np.abs(out[:-3] - ref[:-3]).max() < 5e-7  # float32 rounding of values up to 12
    assert out[-3] == np.inf and out[-2] == 0 and out[-1] == 1e9
    with np.errstate(invalid="ignore"):  # NaN has no table index (NumPy warns)
        assert np.isnan(nm.gelu(np.array([np.nan], np.float32)))[0]


#: (joint head, per-frame branch width): the plain model, the joint head, both
HEADS = [(False, 0), (True, 0), (True, 24)]


@pytest.mark.parametrize("joint_head,frame_branch", HEADS)
def test_step_frame_equals_the_batch_forward(joint_head, frame_branch):
    """One frame at a time through the ring cache, from the first frame, through a gap longer
    than the window, and far into a sequence (keys rotated at absolute frame indices)."""
    m = random_model(3, joint_head, frame_branch)
    npm = numpy_twin(m)
    g = torch.Generator().manual_seed(4)
    feats = torch.randn(1, 60, 25, 18, generator=g)
    valid = torch.ones(1, 60, dtype=torch.bool)
    valid[0, [0, 5, 6]] = False
    valid[0, 20:40] = False  # longer than the window (16): the ring holds no valid key
    with torch.no_grad():
        ref = m(feats, valid)[0].numpy()
    for start in (0, 216_000 - 7):
        cache = npm.new_frame_cache()
        cache.t = start
        out = np.stack([npm.step_frame(f, bool(v), cache)
                        for f, v in zip(feats[0].numpy(), valid[0].numpy())])
        assert out.dtype == np.float32 and out.shape == (60, 22, 6)
        np.testing.assert_allclose(out, ref, atol=1e-4)
        assert cache.t == start + 60 and cache.k.shape[2] == m.cfg.window  # a ring, not a log


def test_constants_mirror_the_torch_model():
    np.testing.assert_array_equal(nm.IDENTITY_6D, np.float32(tm.IDENTITY_6D))
    np.testing.assert_array_equal(nm.ROOT_SCALE, np.float32(tm.ROOT_SCALE))
    np.testing.assert_array_equal(nm.ROOT_OFFSET, np.float32(tm.ROOT_OFFSET))
    assert nm.JOINT_SCALE == np.float32(tm.JOINT_SCALE)


def test_joint_head_weights_are_required_when_the_config_has_one():
    m = random_model(0, joint_head=True)
    state = {k: v.numpy() for k, v in m.state_dict().items() if not k.startswith("joint_head")}
    with pytest.raises(CheckpointError, match="joint_head"):
        nm.NumpyMotionTransformer(state, m.cfg.to_dict())


def test_frame_branch_weights_are_required_when_the_config_has_one():
    m = random_model(0, joint_head=True, frame_branch=24)
    state = {k: v.numpy() for k, v in m.state_dict().items() if k != "frame_branch.blocks.1.4.bias"}
    with pytest.raises(CheckpointError, match="frame_branch.blocks.1.4.bias"):
        nm.NumpyMotionTransformer(state, m.cfg.to_dict())
    full = {k: v.numpy() for k, v in m.state_dict().items()}
    for bad in ({"frame_mix": 1.5}, {"frame_branch": "24"}, {"frame_branch": 24, "joint_head": False}):
        with pytest.raises(CheckpointError, match="frame_"):
            nm.NumpyMotionTransformer(full, {**m.cfg.to_dict(), **bad})


@pytest.mark.parametrize("joint_head,frame_branch", HEADS)
def test_numpy_forward_equals_torch_in_one_pass_and_chunked(joint_head, frame_branch):
    m = random_model(0, joint_head, frame_branch)
    npm = numpy_twin(m)
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(2, 70, 25, 18, generator=g)
    valid = torch.rand(2, 70, generator=g) > 0.3
    valid[:, 20:30] = False  # a gap longer than nothing
    with torch.no_grad():
        ref = m(feats, valid).numpy()
    out = npm(feats.numpy(), valid.numpy())
    assert out.dtype == np.float32 and out.shape == (2, 70, 22, 6)
    assert np.abs(ref).max() > 1.0  # the random model is far from the rest pose
    # With the branch, random weights mix joints into short, badly conditioned bones: the
    # torch float32 output itself is 2.4e-4 from float64 there, this path 1.7e-4.
    tol = 4e-4 if frame_branch else 1e-4
    np.testing.assert_allclose(out, ref, atol=tol)
    # chunked with the cache, uneven chunks (one frame, then longer than the window)
    parts, cache = [], None
    for a, b in [(0, 1), (1, 25), (25, 27), (27, 70)]:
        o, cache = npm(feats[:, a:b].numpy(), valid[:, a:b].numpy(), past=cache, return_cache=True)
        parts.append(o)
    np.testing.assert_allclose(np.concatenate(parts, axis=1), ref, atol=tol)
    assert cache[0][0].shape[2] == m.cfg.window - 1


def test_loader_refuses_bad_files(tmp_path):
    pt = tmp_path / "x.pt"
    pt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="safetensors"):
        nm.load_numpy_model(pt)
    junk = tmp_path / "x.safetensors"
    junk.write_bytes(b"\x00" * 40)
    with pytest.raises(CheckpointError):
        nm.load_numpy_model(junk)
    with pytest.raises(CheckpointError, match="not found"):
        nm.load_numpy_model(tmp_path / "missing.safetensors")


def test_numpy_path_runs_without_torch(tmp_path):
    m = random_model(2)
    path = tmp_path / "w.safetensors"
    export_weights(m, path)
    rng = np.random.default_rng(0)
    lm = rng.uniform(0.2, 0.8, size=(40, 33, 10)).astype(np.float32)
    lm[:, :, 4] = 1
    lm[10:14] = 0
    np.save(tmp_path / "lm.npy", lm)
    from engine.inference import Predictor
    ref = Predictor.from_checkpoint(path, backend="torch").predict(lm, fps=30.0)
    np.save(tmp_path / "ref.npy", ref.local_6d)
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from engine.inference import Predictor\n"
        f"d = {str(tmp_path)!r}\n"
        "p = Predictor.from_checkpoint(d + '/w.safetensors', backend='auto')\n"
        "assert p.backend.name == 'numpy', p.backend.name\n"
        "out = p.predict(np.load(d + '/lm.npy'), fps=30.0)\n"
        "assert 'torch' not in [k for k, v in sys.modules.items() if v is not None]\n"
        "err = np.abs(out.local_6d - np.load(d + '/ref.npy')).max()\n"
        "assert err < 1e-4, err\n"
        "print('ok', err)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok")
