"""Landmark arrays given to ``blaze2cap predict`` / ``Predictor.predict``, and gap bridging.
Rows ``array-*`` and ``gaps-*`` of the table."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from engine import rotations as rot
from engine.inference import Predictor, rest_slots
from robustness_cases import CASES
from robustness_helpers import cli_error, plausible_landmarks, run_cli


def predict(capsys, weights, src, out, *extra) -> tuple[int, str]:
    code, stdout, lines = run_cli(capsys, "predict", src, "--out", out, "--checkpoint", weights,
                                  *extra)
    assert code == 0 and lines == [], lines
    return code, stdout


def _write(kind: str, path):
    if kind == "array-shape":
        np.save(path, np.zeros((5, 33)))
    elif kind == "array-dtype":
        np.save(path, np.full((3, 33, 10), "a"))
    elif kind == "array-objects":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif kind == "array-pickle":
        path.write_bytes(pickle.dumps(plausible_landmarks(3)))
    elif kind == "array-text":
        path.write_text("0.5, 0.5, 0.5\n")
    elif kind == "array-empty":
        np.save(path, np.zeros((0, 33, 10), np.float32))
    else:
        np.save(path, plausible_landmarks(3))


EXTRA = {"array-aspect": ["--aspect", "1000"], "array-focal": ["--focal", "0"],
         "array-fps": ["--fps", "0"]}
ERRORS = ("array-shape", "array-dtype", "array-objects", "array-pickle", "array-text",
          "array-empty", "array-aspect", "array-focal", "array-fps")


@pytest.mark.parametrize("key", ERRORS)
def test_bad_array_gives_one_sentence(key, tiny_weights, tmp_path, capsys):
    case = CASES[key]
    src, out = tmp_path / "clip.npy", tmp_path / "clip.npz"
    _write(key, src)
    line = cli_error(capsys, "predict", src, "--out", out, "--checkpoint", tiny_weights,
                     *EXTRA.get(key, []))
    assert line == case.cli_line("predict", name=src.name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.npy"]  # nothing written
    if key == "array-dtype":  # bool and complex alike
        for dtype in (bool, complex):
            np.save(src, np.ones((3, 33, 10), dtype))
            assert cli_error(capsys, "predict", src, "--out", out, "--checkpoint",
                             tiny_weights) == line.replace("<U1", np.dtype(dtype).name)
    if key == "array-fps":
        assert cli_error(capsys, "predict", src, "--out", out, "--checkpoint", tiny_weights,
                         "--fps", "nan") == line.replace("0.0", "nan")


def test_nan_inf_and_huge_values_are_missing_frames(tiny_weights, tmp_path, capsys):
    assert CASES["array-nan"].code == 0 and CASES["array-huge"].code == 0
    lm = plausible_landmarks(12)
    lm[2, 5, 0] = np.nan
    lm[3, :, 6] = np.inf
    lm[4, 7, 1] = -np.inf
    lm[5] *= 1e9
    lm[6, 0, 0] = 3e38
    lm[7, 3, 3] = 101.0  # one value just beyond MAX_ABS_VALUE
    np.save(tmp_path / "lm.npy", lm)
    _, out = predict(capsys, tiny_weights, tmp_path / "lm.npy", tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz") as z:
        assert z["valid"].tolist() == [i not in range(2, 8) for i in range(12)]
        assert all(np.isfinite(z[k]).all() for k in ("joints", "global_quats", "local_6d"))
    assert "12 frames, 50.0% detected, 1 gap(s) bridged (6 interpolated" in out
    # nothing plausible at all: the rest pose, reported as 0% detected
    for name, bad in (("huge", plausible_landmarks(4) * 1e9),
                      ("f64", plausible_landmarks(4).astype(np.float64) * 1e300),
                      ("nan", np.full((4, 33, 10), np.nan))):
        np.save(tmp_path / f"{name}.npy", bad)
        _, out = predict(capsys, tiny_weights, tmp_path / f"{name}.npy", tmp_path / "q.npz")
        assert "4 frames, 0.0% detected, 1 gap(s) bridged (0 interpolated, 0 held, " \
               "4 rest pose)" in out
        with np.load(tmp_path / "q.npz") as z:
            np.testing.assert_allclose(z["local_6d"], np.broadcast_to(rest_slots(), (4, 22, 6)),
                                       atol=1e-6)


def test_single_frame_and_other_dtypes(tiny_weights, tmp_path, capsys):
    assert CASES["array-single"].code == 0 and CASES["array-other-dtypes"].code == 0
    np.save(tmp_path / "one.npy", plausible_landmarks(1))
    _, out = predict(capsys, tiny_weights, tmp_path / "one.npy", tmp_path / "one.npz")
    assert "1 frame, 100.0% detected, 0 gap(s)" in out
    with np.load(tmp_path / "one.npz") as z:
        assert z["joints"].shape == (1, 21, 3) and np.isfinite(z["joints"]).all()
    predictor = Predictor.from_checkpoint(tiny_weights)
    lm = np.round(plausible_landmarks(6) * 64) / 64  # exact in float16 too
    want = predictor.predict(lm.astype(np.float32)).joints
    for dtype in (np.float16, np.float64):
        np.testing.assert_array_equal(predictor.predict(lm.astype(dtype)).joints, want)
    for dtype in (np.int64, np.uint8):  # integers are numbers too (a crude, valid pose)
        ints = (plausible_landmarks(6) * 3).astype(dtype)
        got = predictor.predict(ints)
        np.testing.assert_array_equal(got.joints, predictor.predict(ints.astype(np.float32)).joints)
        assert np.isfinite(got.joints).all()


# ---------------------------------------------------------------------------------------------
# Gaps
# ---------------------------------------------------------------------------------------------
class ScriptedBackend:
    """A stand-in network whose output at frame t is known: every rotation slot turned by
    0.1 t rad about one axis, the Hips moving 1 cm per frame along x."""

    name = "scripted"

    def step(self, feats, valid, cache):
        t0 = cache or 0
        t = np.arange(t0, t0 + len(feats))
        return scripted_slots(t), t0 + len(feats)


def scripted_slots(t: np.ndarray) -> np.ndarray:
    axis = np.array([1.0, 2.0, 2.0]) / 3.0
    mats = rot.axis_angle_to_matrix(0.1 * t[:, None] * axis)             # (n, 3, 3)
    slots = np.zeros((len(t), 22, 6), np.float32)
    slots[:, 1:] = rot.matrix_to_rotation_6d(mats)[:, None]
    slots[:, 0, 0] = 0.01
    slots[:, 0, 3:6] = np.stack([0.01 * t, np.zeros(len(t)), np.full(len(t), 4.0)], -1)
    return slots


def test_gaps_are_bridged_as_documented_and_reported(tiny_weights, tmp_path, capsys):
    assert CASES["gaps-bridged"].code == 0
    lm = plausible_landmarks(70)
    none = [*range(0, 3), *range(10, 13), *range(20, 60), *range(65, 70)]
    lm[none] = 0  # before the first detection, 3 frames, 40 frames (> 0.5 s), at the end
    np.save(tmp_path / "lm.npy", lm)
    _, out = predict(capsys, tiny_weights, tmp_path / "lm.npy", tmp_path / "p.npz")
    assert out.strip() == (f"lm.npy -> {tmp_path / 'p.npz'}: 70 frames, 27.1% detected, "
                           "4 gap(s) bridged (3 interpolated, 45 held, 3 rest pose)")
    with np.load(tmp_path / "p.npz") as z:
        assert z["valid"].tolist() == [i not in none for i in range(70)]
        assert int(z["coverage_gaps"]) == 4 and int(z["coverage_longest_gap"]) == 40
        assert np.isfinite(z["joints"]).all()
    # What the bridged frames hold, with a network whose output is known at every frame.
    pred = Predictor(ScriptedBackend()).predict(lm, fps=30.0)
    slots = pred.local_6d.astype(np.float64)
    want = scripted_slots(np.arange(70)).astype(np.float64)
    # before the first detection: the rest pose
    np.testing.assert_allclose(slots[:3], np.broadcast_to(rest_slots(), (3, 22, 6)), atol=1e-6)
    # detected frames: the network's output
    valid = pred.valid
    np.testing.assert_allclose(slots[valid], want[valid], atol=1e-5)
    # a gap up to 0.5 s: slerp (here: the same turn at the same rate), the root on the line
    # between its neighbours with the matching constant displacement
    np.testing.assert_allclose(slots[10:13, 1:], want[10:13, 1:], atol=1e-5)
    np.testing.assert_allclose(slots[10:13, 0], want[10:13, 0], atol=1e-5)
    # a longer gap and the end: the last pose held, no displacement
    for last, gap in ((19, range(20, 60)), (64, range(65, 70))):
        held = want[last].copy()
        held[0, 0:3] = 0
        np.testing.assert_allclose(slots[list(gap)], np.broadcast_to(held, (len(gap), 22, 6)),
                                   atol=1e-6)
        np.testing.assert_allclose(pred.joints[list(gap)],
                                   np.broadcast_to(pred.joints[last], (len(gap), 21, 3)),
                                   atol=1e-6)


def test_the_model_never_sees_a_missing_frame_as_a_pose(tiny_weights):
    assert CASES["gaps-never-a-pose"].code == 0
    predictor = Predictor.from_checkpoint(tiny_weights, backend="torch")
    seen = []
    step = predictor.backend.step

    def spy(feats, valid, cache):
        seen.append((feats.copy(), valid.copy()))
        return step(feats, valid, cache)

    predictor.backend.step = spy
    lm = plausible_landmarks(20)
    missing = [3, 4, 9, 15]
    outputs = []
    for filler in (0.0, np.nan, 1e9, 7.0):  # no person, NaN, huge, garbage in [-100, 100]
        bad = lm.copy()
        bad[missing] = filler
        seen.clear()
        out, valid = predictor.raw(bad, chunk=7)
        feats = np.concatenate([f for f, _ in seen])
        fed_valid = np.concatenate([v for _, v in seen])
        assert fed_valid.tolist() == valid.tolist() == [i not in missing for i in range(20)]
        assert (feats[missing] == 0).all() and np.isfinite(feats).all()
        outputs.append(out[valid])
    for other in outputs[1:]:  # the content of a missing frame never changes the others
        np.testing.assert_array_equal(other, outputs[0])
