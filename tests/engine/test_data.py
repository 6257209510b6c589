"""engine.data: map safety, mirroring, anchor recomputation, windows and the feature cache."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from engine import data as D
from engine import kinematics as kin
from engine import rotations as rot
from engine.errors import DatasetError
from engine.features import compute_features
from engine.skeleton import BLAZEPOSE_INDEX, DEFAULT_OFFSETS, mirror_joint_permutation


def random_rotations(rng, shape):
    return rot.axis_angle_to_matrix(rng.normal(size=shape + (3,)))


def synthetic_landmarks(rng, n, missing=()):
    """(n, 33, 10) plausible landmarks: a torso in the image, a detection on every frame
    except ``missing``, anchors as MediaPipe writes them."""
    lm = np.zeros((n, 33, 10), dtype=np.float32)
    lm[:, :, 0:3] = rng.normal(scale=0.3, size=(n, 33, 3))
    lm[:, :, 5] = 0.5 + rng.normal(scale=0.05, size=(n, 33))
    lm[:, :, 6] = 0.5 + rng.normal(scale=0.05, size=(n, 33))
    for name, y in (("left_shoulder", 0.3), ("right_shoulder", 0.3), ("left_hip", 0.6), ("right_hip", 0.6)):
        lm[:, BLAZEPOSE_INDEX[name], 6] = y
    lm[:, :, 7] = rng.normal(scale=0.1, size=(n, 33))
    lm[:, :, 3] = lm[:, :, 8] = 0.9
    det = np.ones(n, dtype=bool)
    det[list(missing)] = False
    lm[~det] = 0
    anchor = np.zeros(n, dtype=np.float32)
    anchor[1:] = det[1:] & det[:-1]
    lm[:, :, 4] = lm[:, :, 9] = anchor[:, None]
    return lm


# ---------------------------------------------------------------------------------------------
def test_subsample_landmarks_recomputes_anchors():
    rng = np.random.default_rng(0)
    missing = (5, 6, 13, 20)
    lm = synthetic_landmarks(rng, 30, missing)
    det = (lm != 0).any(axis=(1, 2))
    for stride in (1, 2, 3):
        for off in range(stride):
            out = D.subsample_landmarks(lm, stride, off)
            idx = np.arange(off, 30, stride)
            assert out.shape == (len(idx), 33, 10)
            np.testing.assert_array_equal(out[:, :, [0, 1, 2, 5, 6, 7, 8]], lm[idx][:, :, [0, 1, 2, 5, 6, 7, 8]])
            for j, i in enumerate(idx):
                expected = j > 0 and det[i] and det[idx[j - 1]:i].all()
                assert (out[j, :, 4] == float(expected)).all(), (stride, off, i)
                assert (out[j, :, 9] == out[j, :, 4]).all()
                if not det[i]:
                    assert (out[j] == 0).all()
    # stride 1 keeps MediaPipe's anchors after the first frame
    np.testing.assert_array_equal(D.subsample_landmarks(lm, 1, 0)[1:], lm[1:])


def test_mirror_rotations_and_offsets_mirror_the_joints():
    rng = np.random.default_rng(1)
    glob = random_rotations(rng, (5, 21))
    offsets = DEFAULT_OFFSETS * rng.uniform(0.8, 1.2, size=(21, 1))
    joints = kin.forward_kinematics(glob, offsets)
    mj = kin.forward_kinematics(D.mirror_rotations(glob), D.mirror_offsets(offsets))
    expected = D.mirror_positions(joints)[:, mirror_joint_permutation()]
    np.testing.assert_allclose(mj, expected, atol=1e-9)
    assert np.allclose(np.linalg.det(D.mirror_rotations(glob)), 1.0)


def test_mirror_targets_equals_slots_of_mirrored_rotations():
    rng = np.random.default_rng(2)
    glob = random_rotations(rng, (6, 21))
    root = rng.normal(size=(6, 3))
    target = kin.rotations_to_slots(glob, root)
    expected = kin.rotations_to_slots(D.mirror_rotations(glob), D.mirror_positions(root))
    np.testing.assert_allclose(D.mirror_targets(target), expected, atol=1e-6)
    np.testing.assert_allclose(D.mirror_targets(D.mirror_targets(target)), target, atol=0)
    t = torch.from_numpy(target)
    np.testing.assert_allclose(D.mirror_targets(t).numpy(), expected, atol=1e-6)


# ---------------------------------------------------------------------------------------------
def write_ds(root, entries_spec, rng):
    """Tiny prepared dataset: entries_spec = [(name, n_frames, split, clean_mask or None)]."""
    entries = []
    for name, n, split, clean in entries_spec:
        lm = synthetic_landmarks(rng, n, missing=(3,) if n > 10 else ())
        glob = random_rotations(rng, (n, 21))
        target = kin.rotations_to_slots(glob, rng.normal(size=(n, 3)))
        flags = np.full(n, D.ALL_FLAGS, dtype=np.uint8)
        if clean is not None:
            flags[~clean] = D.FLAG_ALIGNED
        paths = {k: f"{k}/{name}.npy" for k in ("source", "target", "flags")}
        for k, arr in zip(("source", "target", "flags"), (lm, target, flags)):
            D.save_npy_atomic(root / paths[k], arr)
        entries.append({**paths, "subject": "S9", "split_train": split == "train",
                        "split_test": split == "test", "aspect": 16 / 9, "fps": 60.0,
                        "skeleton_offsets": None, "has_root_rotation": True})
    D.write_json_atomic(root / D.MAP_NAME, entries)
    return entries


@pytest.fixture()
def tiny_ds(tmp_path):
    rng = np.random.default_rng(3)
    clean = np.ones(100, dtype=bool)
    clean[40:50] = False
    write_ds(tmp_path, [("long", 100, "train", clean), ("short", 30, "train", None),
                        ("dirty", 80, "train", np.zeros(80, dtype=bool)),
                        ("val", 70, "test", None)], rng)
    return tmp_path


def test_window_dataset_shapes_masks_padding(tiny_ds):
    ds = D.WindowDataset(tiny_ds, "train", window=64, min_valid_frames=16)
    # long (100): starts 0, 32 and a padded tail window at 64; short (30): one padded
    # window; dirty: no clean frame, every window dropped.
    assert [tuple(w) for w in ds.windows] == [(0, 0), (0, 32), (0, 64), (1, 0)]
    item = ds[2]
    assert item["features"].shape == (64, 25, 18) and item["features"].dtype == torch.float32
    assert item["valid"].shape == (64,) and item["valid"].dtype == torch.bool
    assert item["target"].shape == (64, 22, 6) and item["weight"].shape == (64,)
    assert item["offsets"].shape == (21, 3) and item["has_root_rotation"].dtype == torch.bool
    # frames 64..99 real, 100..127 padding
    assert not item["valid"][36:].any() and (item["weight"][36:] == 0).all()
    assert (item["features"][36:] == 0).all()
    np.testing.assert_allclose(item["target"][36:, 1:], np.broadcast_to([1, 0, 0, 0, 1, 0], (28, 21, 6)))
    np.testing.assert_allclose(item["offsets"], DEFAULT_OFFSETS)
    # features of a window = features over the whole entry (not recomputed per window)
    lm = np.load(tiny_ds / "source/long.npy")
    full, valid, _ = compute_features(lm, 16 / 9)
    win = ds[1]
    np.testing.assert_array_equal(win["features"].numpy(), full[32:96])
    # weight = valid and clean
    expected_w = (valid & ~np.isin(np.arange(100), np.arange(40, 50))).astype(np.float32)
    np.testing.assert_array_equal(win["weight"].numpy(), expected_w[32:96])
    assert not valid[3]  # the missing detection is not weighted
    short = ds[3]
    assert short["valid"][:30].sum() == 29 and not short["valid"][30:].any()  # frame 3 missing


def test_window_dataset_test_split_hop_and_min_valid(tiny_ds):
    # val: 70 frames, frame 3 undetected; test hop = window; tail window 64..69 (6 frames)
    ds = D.WindowDataset(tiny_ds, "test", window=32)
    assert ds.hop == 32
    assert [tuple(w) for w in ds.windows] == [(0, 0), (0, 32)]
    assert len(D.WindowDataset(tiny_ds, "test", window=32, min_valid_frames=6)) == 3
    assert len(D.WindowDataset(tiny_ds, "test", window=32, min_valid_frames=7)) == 2
    assert len(D.WindowDataset(tiny_ds, "test", window=32, min_valid_frames=32)) == 1


def test_cache_is_reused_and_invalidated(tiny_ds, monkeypatch):
    D.WindowDataset(tiny_ds, "train")
    caches = list((tiny_ds / "cache").glob("train-*"))
    assert len(caches) == 1

    def boom(*a, **k):
        raise AssertionError("features recomputed")

    monkeypatch.setattr(D, "compute_features", boom)
    ds = D.WindowDataset(tiny_ds, "train")  # served from the cache
    assert ds.cache_path == caches[0]
    monkeypatch.undo()
    # a changed map gets a new cache; the stale one is removed
    entries = json.loads((tiny_ds / D.MAP_NAME).read_text())
    entries[1]["split_train"] = False
    D.write_json_atomic(tiny_ds / D.MAP_NAME, entries)
    ds2 = D.WindowDataset(tiny_ds, "train")
    assert ds2.cache_path != caches[0] and not caches[0].exists()
    assert len(pickle.dumps(ds2)) < 10_000  # workers reopen the memory maps


def test_feature_stats_over_weighted_frames(tiny_ds):
    ds = D.WindowDataset(tiny_ds, "train")
    mean, std = D.feature_stats(ds)
    feats = []
    for e in ds.entries:
        seq = D.load_sequence(tiny_ds, e)
        f, v, _ = compute_features(seq["landmarks"], seq["aspect"])
        w = D.frame_weights(v, seq["flags"]) > 0
        feats.append(f[w].reshape(-1, 450))
    x = np.concatenate(feats).astype(np.float64)
    assert mean.shape == (450,) and std.shape == (450,)
    np.testing.assert_allclose(mean.numpy(), x.mean(0), atol=1e-5)
    np.testing.assert_allclose(std.numpy(), x.std(0), atol=1e-4)


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside.npy", "a/../../b.npy", "C:\\x.npy",
                                 "a\\..\\..\\b.npy"])
def test_map_refuses_unsafe_paths(tmp_path, bad):
    rng = np.random.default_rng(4)
    entries = write_ds(tmp_path, [("a", 10, "train", None)], rng)
    entries.append({**entries[0], "source": bad})
    D.write_json_atomic(tmp_path / D.MAP_NAME, entries)
    with pytest.raises(DatasetError, match="entry 1"):
        D.load_dataset_map(tmp_path)


def test_map_refuses_symlink_outside_and_names_missing_files(tmp_path):
    rng = np.random.default_rng(5)
    root = tmp_path / "ds"
    entries = write_ds(root, [("a", 10, "train", None)], rng)
    (tmp_path / "secret.npy").write_bytes(b"x")
    (root / "link.npy").symlink_to(tmp_path / "secret.npy")
    D.write_json_atomic(root / D.MAP_NAME, entries + [{**entries[0], "target": "link.npy"}])
    with pytest.raises(DatasetError, match="outside"):
        D.load_dataset_map(root)
    D.write_json_atomic(root / D.MAP_NAME, entries + [{**entries[0], "target": "gone/missing.npy"}])
    with pytest.raises(DatasetError, match="gone/missing.npy"):
        D.load_dataset_map(root)


def test_load_sequence_checks_shapes(tmp_path):
    rng = np.random.default_rng(6)
    entries = write_ds(tmp_path, [("a", 10, "train", None)], rng)
    seq = D.load_sequence(tmp_path, entries[0])
    assert seq["landmarks"].shape == (10, 33, 10) and seq["target"].shape == (10, 22, 6)
    assert seq["offsets"].dtype == np.float32 and seq["has_root_rotation"] is True
    D.save_npy_atomic(tmp_path / entries[0]["target"], np.zeros((9, 22, 6), np.float32))
    with pytest.raises(DatasetError, match="frames"):
        D.load_sequence(tmp_path, entries[0])


def test_entry_domain_from_source_or_key(tiny_ds):
    assert D.entry_domain({"source_format": "blaze2cap"}) == 0
    assert D.entry_domain({"source_format": "dataengine"}) == 1
    assert D.entry_domain({"source_format": "blaze2cap", "synthetic": True}) == 2
    assert D.entry_domain({"domain": "engine"}) == 1 and D.entry_domain({"domain": 2}) == 2
    for bad in ("video", 3, True, 1.0):
        with pytest.raises(D.DatasetError, match="domain of"):
            D.entry_domain({"domain": bad, "source": "x.npy"})
    entries = json.loads((tiny_ds / D.MAP_NAME).read_text())
    entries[1]["source_format"] = "dataengine"
    D.write_json_atomic(tiny_ds / D.MAP_NAME, entries)
    ds = D.WindowDataset(tiny_ds, "train", window=64, min_valid_frames=16)
    assert [int(ds[i]["domain"]) for i in range(len(ds))] == [0, 0, 0, 1]
