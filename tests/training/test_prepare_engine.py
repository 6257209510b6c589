"""prepare --engine: data-engine clips become weighted training entries (no anny needed: the
clips here are written by hand in the engine's format from real ground truth)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine import data as D
from engine import kinematics as kin
from engine.errors import DatasetError
from engine.skeleton import EVAL_BLAZEPOSE_INDICES, EVAL_JOINT_INDICES
from training import prepare
from training import totalcapture as tc
from training.cli import main

K = 40
W, H, FX = 640, 360, 500.0


CLIPS = (("clip_000000", "S1_walking1"), ("clip_000001", "S2_freestyle2"))


def _write_engine(root, tc_dir, clips=CLIPS):
    """Clips in the engine's format: GT of a TC sequence seen by TC camera 4 (scaled to 640
    px), landmarks whose 2D sits on the projected GT joints (so every frame is clean)."""
    from dataengine.engine import MANIFEST_NAME, write_clip

    cam = tc.load_cameras(tc_dir)[4]
    lines = []
    for name, seq in clips:
        gt = tc.load_gt(tc_dir, seq)
        pos = tc.world_to_camera(gt.positions[:K], cam)
        glob = tc.rotations_to_camera(tc.gt_rotations_world(gt)[:K], cam)
        uv = np.stack([FX * pos[..., 0] / pos[..., 2] + W / 2,
                       FX * pos[..., 1] / pos[..., 2] + H / 2], -1)
        lm = np.full((K, 33, 10), 0.9, dtype=np.float32)
        lm[:, list(EVAL_BLAZEPOSE_INDICES), 5] = uv[:, list(EVAL_JOINT_INDICES), 0] / W
        lm[:, list(EVAL_BLAZEPOSE_INDICES), 6] = uv[:, list(EVAL_JOINT_INDICES), 1] / H
        entry = {"clip": len(lines), "name": name, "sequence": seq, "fps": 60.0, "frames": K,
                 "camera": {"kind": "tc", "tc_camera": 4}}
        write_clip(root, {"entry": entry, "arrays": {
            "landmarks": lm, "positions": pos.astype(np.float32),
            "rotations": glob.astype(np.float32),
            "offsets": tc.load_skeleton_offsets(tc_dir)[seq],
            "camera": np.array([FX, FX, W / 2, H / 2, W, H])}})
        lines.append(entry)
    (root / MANIFEST_NAME).write_text("".join(json.dumps(e) + "\n" for e in lines))
    return root


@pytest.fixture(scope="module")
def mixed(totalcapture_dir, tmp_path_factory):
    eng = _write_engine(tmp_path_factory.mktemp("engine"), totalcapture_dir)
    out = tmp_path_factory.mktemp("ds_engine")
    rc = main(["prepare", "--totalcapture", str(totalcapture_dir), "--out", str(out),
               "--sequences", "S1_freestyle1,S2_freestyle2", "--cameras", "4", "--strides", "1,2",
               "--engine", str(eng), "--engine-weight", "0.5"])
    assert rc == 0
    return out, eng


def test_engine_entries_are_weighted_training_entries_of_non_validation_motion(mixed):
    out, _ = mixed
    entries = D.load_dataset_map(out)
    eng = [e for e in entries if e["source_format"] == "dataengine"]
    # clip 1 moves like the validation sequence S2_freestyle2: left out
    assert {e["engine_clip"] for e in eng} == {"clip_000000"}
    # strides 1, 2 (offsets 0, 1) and mirrors, as for the real training files
    assert sorted((e["stride"], e["offset"], e["mirror"]) for e in eng) == sorted(
        (s, o, m) for s in (1, 2) for o in range(s) for m in (False, True))
    assert all(e["weight"] == 0.5 and e["split_train"] and not e["split_test"] for e in eng)
    assert all("weight" not in e for e in entries if e["source_format"] != "dataengine")


def test_engine_target_decodes_to_the_clip_ground_truth(mixed):
    from dataengine.engine import read_clip

    out, eng_dir = mixed
    e = next(e for e in D.load_dataset_map(out)
             if e["source_format"] == "dataengine" and e["stride"] == 1 and not e["mirror"])
    seq = D.load_sequence(out, e)
    clip = read_clip(eng_dir / "clips" / "clip_000000.npz")
    root, glob = kin.slots_to_rotations(seq["target"].astype(np.float64))
    np.testing.assert_allclose(glob, clip["rotations"], atol=2e-5)
    np.testing.assert_allclose(root[:, 3:6], clip["positions"][:, 0], atol=1e-5)
    np.testing.assert_allclose(seq["offsets"], clip["offsets"], atol=1e-6)
    assert (seq["flags"] == D.ALL_FLAGS).all()           # 2D on the GT: every frame clean
    assert seq["aspect"] == pytest.approx(W / H) and seq["focal"] == pytest.approx(FX / W)


def test_window_weights_carry_the_entry_weight(mixed):
    out, _ = mixed
    ds = D.WindowDataset(out, "train", window=16, min_valid_frames=4)
    arr = ds.arrays()
    for i, e in enumerate(ds.entries):
        w = np.asarray(arr["weight"][ds.starts[i]:ds.starts[i + 1]])
        want = 0.5 if e["source_format"] == "dataengine" else 1.0
        assert set(np.unique(w)) <= {0.0, want} and (w == want).any()
    # windows of engine entries exist although their frames weigh 0.5 (< 1 frame each)
    eng_ids = {i for i, e in enumerate(ds.entries) if e["source_format"] == "dataengine"}
    assert eng_ids & set(ds.windows[:, 0].tolist())


def test_bad_entry_weight_and_bad_engine_folder_are_refused(mixed, totalcapture_dir, tmp_path):
    with pytest.raises(DatasetError, match="weight"):
        D.entry_weight({"source": "x", "weight": -1})
    with pytest.raises(DatasetError, match="weight"):
        D.entry_weight({"source": "x", "weight": "heavy"})
    assert D.entry_weight({"source": "x"}) == 1.0
    cfg = prepare.PrepareConfig(sequences=("S1_freestyle1",), cameras=(4,), strides=(1,),
                                engine=tmp_path / "empty")
    with pytest.raises(DatasetError, match="no finished data-engine clips"):
        prepare.prepare_totalcapture(totalcapture_dir, tmp_path / "ds", cfg)


def test_engine_share_samples_the_prepared_windows_by_their_source(mixed):
    """``train.engine_share`` reads each window's source from the prepared dataset."""
    from engine.train import ShareSampler, item_domains

    out, _ = mixed
    ds = D.WindowDataset(out, "train", window=16, hop=8)
    dom = item_domains(ds)
    engine_entries = {i for i, e in enumerate(ds.entries) if e["source_format"] == "dataengine"}
    assert {int(e) in engine_entries for e in ds.windows[:, 0]} == {True, False}
    assert ((dom == 1) == np.isin(ds.windows[:, 0], list(engine_entries))).all()
    s = ShareSampler(ds, 1, 0, seed=0, share=0.2)
    s.set_epoch(0)
    picked = np.array(list(s))
    share = np.isin(ds.windows[picked, 0], list(engine_entries)).mean()
    assert share == pytest.approx(0.2, abs=0.02)
