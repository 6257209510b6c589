import json

import numpy as np
import pytest
import torch

from engine.checkpoint import export_weights
from engine.inference import Predictor
from engine.kinematics import forward_kinematics, rotations_to_slots
from engine.model import ModelConfig, MotionTransformer
from engine.rotations import axis_angle_to_matrix
from engine.skeleton import DEFAULT_OFFSETS, EVAL_BLAZEPOSE_INDICES, EVAL_JOINT_INDICES
from training import evaluate as ev
from training import results_table
from training.cli import main

F = 60
GAP = (10, 13)            # no detection
UNALIGNED = (50, 55)      # flag bit 1 cleared
IN_VIEW_END, TRACKED_END = 40, 30


def make_entry(root, name, seed, scale=1.0, **extra):
    """Smooth random motion; BlazePose world landmarks = the ground-truth joints exactly."""
    rng = np.random.default_rng(seed)
    t = np.arange(F)[:, None, None] / 30.0
    aa = rng.normal(0, 0.4, (1, 21, 3)) + 0.3 * np.sin(2 * np.pi * t * rng.uniform(0.3, 1, (1, 21, 3)))
    glob = axis_angle_to_matrix(aa)
    offsets = DEFAULT_OFFSETS.astype(np.float64) * scale
    sway = 0.1 * np.sin(np.arange(F))[:, None] * np.array([1.0, 0.0, 0.5])
    root_pos = np.array([0.0, 0.0, 3.0]) + sway
    joints = forward_kinematics(glob, offsets)
    lm = np.zeros((F, 33, 10), np.float32)
    lm[:, list(EVAL_BLAZEPOSE_INDICES), 0:3] = joints[:, list(EVAL_JOINT_INDICES)]
    lm[:, :, 5:7] = 0.5
    lm[:, list(EVAL_BLAZEPOSE_INDICES), 5:7] = 0.5 + 0.2 * joints[:, list(EVAL_JOINT_INDICES), :2]
    lm[:, :, 3] = lm[:, :, 8] = 0.9
    lm[:, :, 4] = lm[:, :, 9] = 1
    lm[0, :, [4, 9]] = 0
    lm[GAP[0]:GAP[1]] = 0
    lm[GAP[1], :, [4, 9]] = 0
    flags = np.full(F, 1 | 8, np.uint8)
    flags[UNALIGNED[0]:UNALIGNED[1]] &= ~np.uint8(1)
    flags[:IN_VIEW_END] |= 2
    flags[:TRACKED_END] |= 4
    for sub in ("blaze", "gt", "flags"):
        (root / sub).mkdir(exist_ok=True)
    np.save(root / "blaze" / f"{name}.npy", lm)
    target = rotations_to_slots(glob.astype(np.float32), root_pos.astype(np.float32))
    np.save(root / "gt" / f"{name}.npy", target)
    np.save(root / "flags" / f"{name}.npy", flags)
    entry = {"source": f"blaze/{name}.npy", "target": f"gt/{name}.npy", "flags": f"flags/{name}.npy",
             "split_train": False, "split_test": True, "mirror": False, "stride": 1, "fps": 30.0,
             "aspect": 16 / 9, "focal": 0.67, "skeleton_offsets": offsets.tolist(),
             "has_root_rotation": True}
    entry.update(extra)
    return entry, target


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    specs = [("S9_walk_cam1", 0, 1.0, {"sequence": "S9_walk", "camera": 1}),
             ("S9_walk_cam2", 1, 1.1, {"sequence": "S9_walk", "camera": 2}),
             ("S9_jump_cam1", 2, 1.0, {"sequence": "S9_jump", "camera": 1}),
             ("S9_walk_cam1_m", 3, 1.0, {"sequence": "S9_walk", "camera": 1, "mirror": True}),
             ("S8_run_cam1", 4, 1.0, {"sequence": "S8_run", "camera": 1, "split_train": True,
                                      "split_test": False, "has_root_rotation": False})]
    entries, targets = [], {}
    for name, seed, scale, extra in specs:
        e, tgt = make_entry(root, name, seed, scale, **extra)
        entries.append(e)
        targets[name] = tgt
    (root / "dataset_map.json").write_text(json.dumps(entries))
    return root, targets


class OracleBackend:
    """Returns the ground-truth slots of the entries, in evaluation order."""

    name = "oracle"

    def __init__(self, targets):
        self.queue = list(targets)

    def step(self, feats, valid, cache):
        target, start = (self.queue.pop(0), 0) if cache is None else cache
        n = feats.shape[0]
        return target[start:start + n], (target, start + n)


def test_protocol_on_exact_predictions(dataset):
    root, targets = dataset
    order = ["S9_walk_cam1", "S9_walk_cam2", "S9_jump_cam1"]
    res = ev.evaluate_dataset(Predictor(OracleBackend([targets[n] for n in order])), root, "test")
    assert res["entries"] == order  # mirrored and train entries are left out
    s_all = res["subsets"]["all"]
    n_all = F - (GAP[1] - GAP[0]) - (UNALIGNED[1] - UNALIGNED[0])
    assert s_all["overall"]["frames"] == 3 * n_all
    assert res["subsets"]["in_view"]["overall"]["frames"] == 3 * (IN_VIEW_END - 3)
    assert res["subsets"]["tracked"]["overall"]["frames"] == 3 * (TRACKED_END - 3)
    walk1 = s_all["per_entry"]["S9_walk_cam1"]["methods"]
    # the model outputs the ground truth on the default body: every error is 0
    for k in ("mpjpe_mm", "pa_mpjpe_mm", "mare_rad", "accel_mm"):
        assert walk1["model"][k] == pytest.approx(0, abs=1e-3)
    # BlazePose's landmarks are the ground-truth joints: the naive baseline is exact too
    assert walk1["blazepose"]["mpjpe_mm"] == pytest.approx(0, abs=1e-3)
    gt_jitter = walk1["ground_truth"]["jitter_mm"]
    assert walk1["blazepose"]["jitter_mm"] == pytest.approx(gt_jitter, rel=1e-4)
    assert walk1["ground_truth"]["jitter_mm"] > 1
    # smoothing lags the motion: the filtered baseline is off, and smoother
    assert walk1["blazepose_one_euro"]["mpjpe_mm"] > 1
    assert walk1["blazepose_one_euro"]["jitter_mm"] < walk1["blazepose"]["jitter_mm"]
    # a 10% larger subject: the default-body model is off in MPJPE, not after Procrustes
    walk2 = s_all["per_entry"]["S9_walk_cam2"]["methods"]["model"]
    assert walk2["mpjpe_mm"] > 10 and walk2["pa_mpjpe_mm"] == pytest.approx(0, abs=1e-3)
    assert walk2["mare_rad"] == pytest.approx(0, abs=1e-4)
    # groups pool their entries' frames
    assert set(s_all["per_sequence"]) == {"S9_walk", "S9_jump"}
    assert s_all["per_sequence"]["S9_walk"]["frames"] == 2 * n_all
    assert set(s_all["per_camera"]) == {"1", "2"}
    pooled = (walk2["mpjpe_mm"] * n_all + 0.0) / (2 * n_all)
    walk = s_all["per_sequence"]["S9_walk"]["methods"]["model"]
    assert walk["mpjpe_mm"] == pytest.approx(pooled, abs=1e-3)
    assert res["coverage"]["S9_walk_cam1"]["gaps"] == 1


def test_unknown_root_rotation_counts_for_pa_mpjpe_and_jitter_only(dataset):
    root, targets = dataset
    res = ev.evaluate_dataset(Predictor(OracleBackend([targets["S8_run_cam1"]])), root, "train")
    assert res["entries"] == ["S8_run_cam1"]
    methods = res["subsets"]["all"]["overall"]["methods"]
    for m in ("model", "blazepose"):
        assert methods[m]["mpjpe_mm"] is None and methods[m]["accel_mm"] is None
        assert methods[m]["pa_mpjpe_mm"] == pytest.approx(0, abs=1e-3)
        assert methods[m]["jitter_mm"] > 0
    assert methods["model"]["mare_rad"] is None


def test_cli_json_and_results_table(dataset, tmp_path, capsys):
    root, _ = dataset
    torch.manual_seed(0)
    weights = tmp_path / "tiny.safetensors"
    export_weights(MotionTransformer(ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64)), weights)
    out = tmp_path / "res.json"
    assert main(["evaluate", "--checkpoint", str(weights), "--data", str(root), "--json", str(out),
                 "--subset", "tracked"]) == 0
    text = capsys.readouterr().out
    assert "subset tracked" in text and "BlazePose + One Euro" in text and "S9_jump" in text
    res = json.loads(out.read_text())
    model = res["subsets"]["all"]["overall"]["methods"]["model"]
    assert all(np.isfinite(model[k]) for k in ev.METRICS)
    assert res["subsets"]["all"]["overall"]["methods"]["blazepose"]["mare_rad"] is None
    md = tmp_path / "table.md"
    assert results_table.main([str(out), "--out", str(md), "--per-sequence"]) == 0
    table = md.read_text()
    assert "| **Blaze2Cap model** |" in table and "| S9_walk |" in table
    assert table.count("| Method |") == 2  # subsets all and tracked
    assert results_table.main([str(tmp_path / "missing.json")]) == 2
    # a folder without a dataset map is a one-line error
    assert main(["evaluate", "--checkpoint", str(weights), "--data", str(tmp_path)]) == 2
