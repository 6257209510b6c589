"""training.synthetic: the noise model is fitted on real pairs and synthetic input looks like
real BlazePose to the features and the naive baseline."""
import json

import numpy as np
import pytest

from engine.features import compute_features
from engine.skeleton import EVAL_BLAZEPOSE_INDICES, EVAL_JOINT_INDICES, FEATURE_LANDMARK_INDICES
from training import synthetic as syn
from training import totalcapture as tc
from training.cli import main


@pytest.fixture(scope="module")
def pair(totalcapture_dir):
    p = tc.load_aligned_pair(totalcapture_dir, "S1_freestyle1_cam4")
    return dict(landmarks=p["landmarks"], pos=p["pos"], glob=p["glob"],
                clean=(p["flags"] & 8) > 0, aspect=16 / 9, height=1080), p["camera"]


def naive_error_and_accel(lm, pos):
    f, valid, _ = compute_features(lm)
    fi = [FEATURE_LANDMARK_INDICES.index(b) for b in EVAL_BLAZEPOSE_INDICES]
    gt = pos - 0.5 * (pos[:, 15:16] + pos[:, 18:19])
    err = np.linalg.norm(f[:, fi, :3] - gt[:, list(EVAL_JOINT_INDICES)], axis=-1)[valid].mean()
    acc = np.linalg.norm(np.diff(f[:, fi, :3], 2, axis=0), axis=-1)[valid[2:] & valid[1:-1] & valid[:-2]].mean()
    return 1000 * err, 1000 * acc, valid.mean()


def test_synthetic_input_matches_real_blazepose_statistics(pair):
    p, cam = pair
    model = syn.fit_noise_model([p])
    assert model.n_frames_fitted > 1000 and 0 < model.yaw_std < 0.5
    camd = dict(fx=cam.fx, fy=cam.fy, cx=cam.cx, cy=cam.cy, image_width=cam.width,
                image_height=cam.height)
    lm = syn.synthesize(p["pos"], p["glob"], camd, model, np.random.default_rng(0))
    assert lm.shape == p["landmarks"].shape and lm.dtype == np.float32
    real = naive_error_and_accel(p["landmarks"], p["pos"])
    fake = naive_error_and_accel(lm, p["pos"])
    assert 0.6 * real[0] < fake[0] < 1.4 * real[0]      # naive error, mm
    assert 0.4 * real[1] < fake[1] < 2.5 * real[1]      # acceleration, mm/frame^2
    assert fake[2] > 0.9                                 # mostly detected
    det = (lm != 0).any(axis=(1, 2))
    restarts = det & np.r_[True, ~det[:-1]]  # the first frame starts a track too
    assert np.all(lm[restarts, :, 4] == 0) and np.all(lm[det & ~restarts, :, 4] == 1)


def test_prepare_synthetic_adds_entries_and_saves_the_noise_model(totalcapture_dir, tmp_path):
    out = tmp_path / "ds"
    assert main(["prepare", "--totalcapture", str(totalcapture_dir), "--out", str(out),
                 "--sequences", "S1_freestyle1,S2_freestyle2", "--cameras", "4",
                 "--strides", "1", "--no-mirror", "--synthetic", "--synthetic-strides", "1"]) == 0
    entries = json.loads((out / "dataset_map.json").read_text())
    synth = [e for e in entries if e.get("synthetic")]
    assert [e["sequence"] for e in synth] == ["S1_freestyle1"]  # never the validation sequence
    assert all(e["split_train"] and not e["split_test"] for e in synth)
    assert syn.NoiseModel.load(out / "noise_model.json").n_frames_fitted > 0
