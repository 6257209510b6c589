"""blaze2cap prepare: TotalCapture slice -> dataset that decodes back to the GT; HF import."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine import data as D
from engine import kinematics as kin
from engine import rotations as rot
from engine.errors import DatasetError
from engine.features import mirror_landmarks
from engine.skeleton import (EVAL_BLAZEPOSE_INDICES, EVAL_JOINT_INDICES, FEATURE_LANDMARK_INDICES,
                             mirror_joint_permutation)
from training import prepare
from training import totalcapture as tc
from training.cli import main

SEQ = "S1_freestyle1"
VAL = "S2_freestyle2"


@pytest.fixture(scope="module")
def ds(totalcapture_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    rc = main(["prepare", "--totalcapture", str(totalcapture_dir), "--out", str(out),
               "--sequences", f"{SEQ},{VAL}", "--cameras", "4,5", "--strides", "1,2"])
    assert rc == 0
    return out


def entries_by(ds, **kw):
    entries = json.loads((ds / D.MAP_NAME).read_text())
    return [e for e in entries if all(e[k] == v for k, v in kw.items())]


def gt_in_camera(totalcapture_dir, camera):
    """(n, 21, 3) GT joints in the camera frame over the aligned overlap, and the overlap."""
    name = f"{SEQ}_cam{camera}"
    offset = tc.load_alignment(totalcapture_dir)[name]["offset_frames"]
    gt = tc.load_gt(totalcapture_dir, SEQ)
    cam = tc.load_cameras(totalcapture_dir)[camera]
    n_blaze = np.load(totalcapture_dir / "blazepose" / f"{name}.npy", mmap_mode="r").shape[0]
    b0, g0, n = tc.overlap(n_blaze, len(gt.positions), offset)
    return tc.world_to_camera(gt.positions[g0:g0 + n], cam), cam, (b0, g0, n)


def decode(ds, entry):
    """Joints (F, 21, 3) in the camera frame from an entry's target and offsets."""
    target = np.load(ds / entry["target"]).astype(np.float64)
    slot0, glob = kin.slots_to_rotations(target)
    return kin.forward_kinematics(glob, np.asarray(entry["skeleton_offsets"])) + slot0[:, None, 3:6]


def test_layout_and_map(ds):
    entries = json.loads((ds / D.MAP_NAME).read_text())
    assert isinstance(entries, list)
    train = [e for e in entries if e["split_train"]]
    test = [e for e in entries if e["split_test"]]
    # 2 cameras x (s1: 1 + s2: 2 offsets) x (plain, mirrored); validation: stride 1 only
    assert len(train) == 12 and len(test) == 2 and len(entries) == 14
    assert {e["sequence"] for e in train} == {SEQ} and {e["sequence"] for e in test} == {VAL}
    assert all(e["stride"] == 1 and not e["mirror"] for e in test)
    keys = {"source", "target", "subject", "split_train", "split_test", "sequence", "camera",
            "stride", "offset", "mirror", "frames", "fps", "aspect", "flags", "skeleton_offsets",
            "has_root_rotation", "source_format"}
    for e in entries:
        assert keys <= set(e)
        assert e["split_train"] != e["split_test"]
        assert e["source"] == (f"blaze_augmented/{e['subject']}/{e['sequence'][3:]}/cam{e['camera']}/"
                               f"blaze_{e['sequence']}_cam{e['camera']}_seg0_s{e['stride']}_o{e['offset']}"
                               + ("_m" if e["mirror"] else "") + ".npy")
        lm, tg, fl = (np.load(ds / e[k]) for k in ("source", "target", "flags"))
        assert lm.shape == (e["frames"], 33, 10) and lm.dtype == np.float32
        assert tg.shape == (e["frames"], 22, 6) and tg.dtype == np.float32
        assert fl.shape == (e["frames"],) and fl.dtype == np.uint8
        assert e["fps"] == 60 / e["stride"] and abs(e["aspect"] - 16 / 9) < 1e-9
        assert np.asarray(e["skeleton_offsets"]).shape == (21, 3)
        assert e["has_root_rotation"] is True and e["source_format"] == "blaze2cap"
    assert not list(ds.rglob("*.tmp"))  # atomic writes leave no temporaries
    assert D.load_dataset_map(ds)  # our own loader accepts it


def test_targets_decode_to_gt_and_project_onto_blazepose(ds, totalcapture_dir):
    gt_cam, cam, (b0, g0, n) = gt_in_camera(totalcapture_dir, 4)
    e = entries_by(ds, sequence=SEQ, camera=4, stride=1, mirror=False)[0]
    assert e["frames"] == n
    joints = decode(ds, e)
    assert np.abs(joints - gt_cam).max() < 1e-4
    # at the documented offset the projected joints fall on BlazePose's 2D landmarks
    lm = np.load(ds / e["source"])
    det = (lm != 0).any(axis=(1, 2))
    uv = tc.project(joints[:, list(EVAL_JOINT_INDICES)], cam)
    bp = lm[:, list(EVAL_BLAZEPOSE_INDICES), 5:7] * [1920, 1080]
    err = np.median(np.linalg.norm(uv - bp, axis=-1)[det])
    assert err < 12.0, err
    raw = np.load(totalcapture_dir / "blazepose" / f"{SEQ}_cam4.npy")
    np.testing.assert_array_equal(lm[1:], raw[b0 + 1:b0 + n])  # stride 1: landmarks unchanged


def test_documented_offset_is_the_best_alignment(ds, totalcapture_dir):
    """S2_freestyle2 cam4 (offset -3): shifting the targets against the landmarks by a few
    frames either way only makes the 2D agreement worse (a sign error would be 6 off)."""
    e = entries_by(ds, sequence=VAL, camera=4)[0]
    cam = tc.load_cameras(totalcapture_dir)[4]
    uv = tc.project(decode(ds, e)[:, list(EVAL_JOINT_INDICES)], cam)
    lm = np.load(ds / e["source"])
    bp = lm[:, list(EVAL_BLAZEPOSE_INDICES), 5:7] * [1920, 1080]
    det = (lm != 0).any(axis=(1, 2))
    n = len(lm)

    def error(k):  # GT frame i + k against BlazePose frame i
        a, b = slice(max(0, k), n + min(0, k)), slice(max(0, -k), n + min(0, -k))
        return np.median(np.linalg.norm(uv[a] - bp[b], axis=-1), axis=-1)[det[b]].mean()

    errs = {k: error(k) for k in range(-4, 5)}
    assert errs[0] <= min(errs.values()) + 0.5, errs
    assert errs[-4] > errs[0] + 1 and errs[4] > errs[0] + 1, errs


def test_stride_two_halves_frames_and_keeps_displacements(ds):
    s1 = entries_by(ds, sequence=SEQ, camera=4, stride=1, mirror=False)[0]
    t1 = np.load(ds / s1["target"])
    l1 = np.load(ds / s1["source"])
    for off in (0, 1):
        e = entries_by(ds, sequence=SEQ, camera=4, stride=2, offset=off, mirror=False)[0]
        t2 = np.load(ds / e["target"])
        assert e["frames"] == len(range(off, s1["frames"], 2)) and e["fps"] == 30
        np.testing.assert_array_equal(t2[:, 1:], t1[off::2, 1:])          # rotations
        np.testing.assert_allclose(t2[:, 0, 3:], t1[off::2, 0, 3:], atol=1e-7)  # positions
        np.testing.assert_allclose(t2[1:, 0, :3], np.diff(t2[:, 0, 3:], axis=0), atol=1e-6)
        assert (t2[0, 0, :3] == 0).all()
        np.testing.assert_allclose(t2[1:, 0, :3], t1[off + 1::2, 0, :3][:len(t2) - 1]
                                   + t1[off + 2::2, 0, :3][:len(t2) - 1], atol=1e-6)
        np.testing.assert_array_equal(np.load(ds / e["source"]),
                                      D.subsample_landmarks(l1, 2, off))


def test_mirrored_entry_decodes_to_mirrored_joints(ds, totalcapture_dir):
    gt_cam, _, _ = gt_in_camera(totalcapture_dir, 4)
    plain = entries_by(ds, sequence=SEQ, camera=4, stride=1, mirror=False)[0]
    mirrored = entries_by(ds, sequence=SEQ, camera=4, stride=1, mirror=True)[0]
    expected = (gt_cam * [-1, 1, 1])[:, mirror_joint_permutation()]
    assert np.abs(decode(ds, mirrored) - expected).max() < 1e-4
    np.testing.assert_array_equal(np.load(ds / mirrored["source"]),
                                  mirror_landmarks(np.load(ds / plain["source"])))
    np.testing.assert_allclose(np.load(ds / mirrored["target"]),
                               D.mirror_targets(np.load(ds / plain["target"])), atol=2e-6)
    np.testing.assert_array_equal(np.load(ds / mirrored["flags"]), np.load(ds / plain["flags"]))


def test_flags_drop_cam5_bad_stretch(ds, totalcapture_dir):
    _, _, (b0, _, n) = gt_in_camera(totalcapture_dir, 5)
    e = entries_by(ds, sequence=SEQ, camera=5, stride=1, mirror=False)[0]
    flags = np.load(ds / e["flags"])
    bad = np.arange(1378, 2313) - b0  # BlazePose frames 1378..2312 (README)
    bad = bad[bad < n]
    assert (flags[bad] & D.FLAG_CLEAN == 0).all()
    assert (flags[: 1370 - b0] & D.FLAG_CLEAN > 0).mean() > 0.95
    assert (flags & D.FLAG_ALIGNED > 0).all()  # trimmed to the overlap
    # tracked implies in view; cam4 is clean almost everywhere
    assert ((flags & D.FLAG_TRACKED == 0) | (flags & D.FLAG_IN_VIEW > 0)).all()
    f4 = np.load(ds / entries_by(ds, sequence=SEQ, camera=4, stride=1, mirror=False)[0]["flags"])
    assert (f4 & D.FLAG_CLEAN > 0).mean() > 0.99


def test_window_dataset_on_prepared_data(ds):
    train = D.WindowDataset(ds, "train", window=64)
    item = train[0]
    assert item["features"].shape == (64, 25, 18) and bool(item["has_root_rotation"])
    e = train.entries[int(item["entry"])]
    np.testing.assert_allclose(item["offsets"].numpy(), np.asarray(e["skeleton_offsets"]), atol=1e-6)
    test = D.WindowDataset(ds, "test", window=64)
    assert {test.entries[int(w[0])]["sequence"] for w in test.windows} == {VAL}


# ---------------------------------------------------------------------------------------------
# Seed Hugging Face layout
# ---------------------------------------------------------------------------------------------
def make_hf(root, rng):
    """Two sequences in the seed's layout: 'a' consistent, 'b' with one extra target frame."""
    entries = []
    truth = {}
    for name, n, extra in (("a", 12, 0), ("b", 9, 1)):
        x = rng.uniform(0.1, 0.9, size=(n, 25, 7)).astype(np.float32)
        x[:, :, 6] = 1
        x[0, :, 6] = 0
        x[4] = 0  # a frame without detection
        glob_root = rot.axis_angle_to_matrix(rng.normal(size=(n + extra, 3)))
        delta = np.zeros((n + extra, 3, 3))
        delta[1:] = np.swapaxes(glob_root[:-1], -1, -2) @ glob_root[1:]
        y = np.zeros((n + extra, 22, 6), dtype=np.float32)
        y[:, 0, :3] = rng.normal(scale=0.01, size=(n + extra, 3))
        y[0, 0, :3] = 0
        y[1:, 1] = rot.matrix_to_rotation_6d(delta[1:])   # frame 0: all zero (seed)
        y[:, 2:] = rot.matrix_to_rotation_6d(rot.axis_angle_to_matrix(rng.normal(size=(n + extra, 20, 3))))
        src = f"blaze_augmented/S1/{name}cting1/cam3/blaze_S1_{name}cting1_cam3_seg0_s2_o1.npy"
        tgt = src.replace("blaze", "gt")
        (root / src).parent.mkdir(parents=True, exist_ok=True)
        (root / tgt).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / src, x)
        np.save(root / tgt, y)
        entries.append({"source": src, "target": tgt, "subject": "S1",
                        "split_train": name == "a", "split_test": name == "b"})
        truth[name] = (x, y, glob_root)
    (root / "dataset_map.json").write_text(json.dumps(entries))
    return entries, truth


def test_hf_import_converts(tmp_path):
    hf, out = tmp_path / "hf", tmp_path / "out"
    hf.mkdir()
    _, truth = make_hf(hf, np.random.default_rng(0))
    summary = prepare.prepare_hf(hf, out)
    assert summary.trimmed == 1 and summary.entries == {"train": 1, "test": 1}
    entries = D.load_dataset_map(out)
    for e, name in zip(entries, ("a", "b")):
        x, y, glob_root = truth[name]
        seq = D.load_sequence(out, e)
        n = len(x)
        lm, tg = seq["landmarks"], seq["target"]
        assert lm.shape == (n, 33, 10) and tg.shape == (n, 22, 6)  # 'b' trimmed to the shorter
        idx = list(FEATURE_LANDMARK_INDICES)
        np.testing.assert_array_equal(lm[:, idx, 0:3], x[:, :, 0:3])
        np.testing.assert_array_equal(lm[:, idx, 5:7], x[:, :, 3:5])
        np.testing.assert_array_equal(lm[:, idx, 3], x[:, :, 5])
        np.testing.assert_array_equal(lm[:, idx, 8], x[:, :, 5])
        np.testing.assert_array_equal(lm[:, idx, 4], lm[:, idx, 9])
        assert (lm[:, :, 7] == 0).all() and (np.delete(lm, idx, axis=1) == 0).all()
        assert (lm[4] == 0).all() and lm[5, 0, 4] == 1 and lm[0, 0, 4] == 0
        # slot 0: displacement kept, position accumulated from 0
        np.testing.assert_allclose(tg[:, 0, :3], y[:n, 0, :3])
        np.testing.assert_allclose(tg[:, 0, 3:], np.cumsum(y[:n, 0, :3], 0), atol=1e-6)
        # slot 1: root rotation integrated from identity = R_0^T R_t
        expected = np.swapaxes(glob_root[0], -1, -2) @ glob_root[:n]
        np.testing.assert_allclose(rot.rotation_6d_to_matrix(tg[:, 1].astype(np.float64)), expected, atol=1e-5)
        np.testing.assert_array_equal(tg[:, 2:], y[:n, 2:])
        assert e["has_root_rotation"] is False and e["skeleton_offsets"] is None
        assert e["stride"] == 2 and e["offset"] == 1 and e["fps"] == 30 and e["camera"] == 3
        assert seq["flags"][4] == D.FLAG_ALIGNED and seq["flags"][5] == D.ALL_FLAGS
    ds = D.WindowDataset(out, "train", window=16, min_valid_frames=4)
    assert len(ds) == 1 and not bool(ds[0]["has_root_rotation"])


@pytest.mark.parametrize("bad", ["/tmp/evil.npy", "../evil.npy", "blaze_augmented/../../evil.npy"])
def test_hf_import_refuses_hostile_entries(tmp_path, capsys, bad):
    hf, out = tmp_path / "hf", tmp_path / "out"
    hf.mkdir()
    entries, _ = make_hf(hf, np.random.default_rng(1))
    (tmp_path / "evil.npy").write_bytes(b"")
    entries.append({**entries[0], "source": bad})
    (hf / "dataset_map.json").write_text(json.dumps(entries))
    with pytest.raises(DatasetError, match="entry 2"):
        prepare.prepare_hf(hf, out)
    assert main(["prepare", "--hf", str(hf), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "entry 2" in err and bad in err and len(err.strip().splitlines()) == 1
    assert not (out / D.MAP_NAME).exists()


def test_hf_import_names_missing_files(tmp_path):
    hf = tmp_path / "hf"
    hf.mkdir()
    entries, _ = make_hf(hf, np.random.default_rng(2))
    (hf / entries[1]["target"]).unlink()
    with pytest.raises(DatasetError, match="gt_S1_bcting1_cam3"):
        prepare.prepare_hf(hf, tmp_path / "out")
    with pytest.raises(DatasetError, match="differ"):
        prepare.prepare_hf(hf, hf)


def test_sequences_without_orientations_are_skipped(totalcapture_dir, tmp_path, monkeypatch):
    real = tc.load_gt

    def no_orientations(root, sequence):
        gt = real(root, sequence)
        return tc.GroundTruth(gt.sequence, gt.positions, None) if sequence == VAL else gt

    monkeypatch.setattr(tc, "load_gt", no_orientations)
    cfg = prepare.PrepareConfig(strides=(1,), mirror=False, sequences=(SEQ, VAL), cameras=(8,))
    summary = prepare.prepare_totalcapture(totalcapture_dir, tmp_path, cfg)
    assert summary.skipped == [VAL] and summary.entries == {"train": 1, "test": 0}


def test_unknown_validation_sequence_is_an_error(totalcapture_dir, tmp_path, capsys):
    rc = main(["prepare", "--totalcapture", str(totalcapture_dir), "--out", str(tmp_path),
               "--val", "S2_freestlye2"])
    assert rc == 2 and "S2_freestlye2" in capsys.readouterr().err
