"""``blaze2cap train`` in-process on a tiny prepared dataset, and its recipe handling."""
from __future__ import annotations

import argparse
import csv
import json
from dataclasses import asdict

import numpy as np
import pytest

from engine import data as D
from engine.checkpoint import load_checkpoint
from engine.errors import InputError
from engine.kinematics import rotations_to_slots
from engine.losses import LossConfig
from engine.model import ModelConfig
from engine.rotations import axis_angle_to_matrix
from engine.skeleton import BLAZEPOSE_INDEX
from engine.train import TrainConfig
from training import cli, train_cmd


def write_dataset(root, rng, frames=48):
    """A prepared dataset folder: one train and one test entry of plausible landmarks."""
    entries = []
    for name, split in (("a", "train"), ("b", "test")):
        lm = np.zeros((frames, 33, 10), dtype=np.float32)
        lm[:, :, 0:3] = rng.normal(scale=0.3, size=(frames, 33, 3))
        lm[:, :, 5:7] = 0.5 + rng.normal(scale=0.05, size=(frames, 33, 2))
        for joint, y in (("left_shoulder", 0.3), ("right_shoulder", 0.3), ("left_hip", 0.6),
                         ("right_hip", 0.6)):
            lm[:, BLAZEPOSE_INDEX[joint], 6] = y
        lm[:, :, 3] = lm[:, :, 8] = 0.9
        lm[1:, :, 4] = lm[1:, :, 9] = 1
        rots = axis_angle_to_matrix(rng.normal(scale=0.4, size=(frames, 21, 3)))
        target = rotations_to_slots(rots, rng.normal(scale=0.1, size=(frames, 3)) + [0, 0, 4])
        paths = {"source": f"src/{name}.npy", "target": f"tgt/{name}.npy"}
        D.save_npy_atomic(root / paths["source"], lm)
        D.save_npy_atomic(root / paths["target"], target)
        entries.append({**paths, "subject": "S1", "split_train": split == "train",
                        "split_test": split == "test", "aspect": 16 / 9, "fps": 60.0})
    D.write_json_atomic(root / D.MAP_NAME, entries)
    return root


@pytest.fixture()
def dataset(tmp_path):
    return write_dataset(tmp_path / "ds", np.random.default_rng(0))


def test_cli_trains_tiny_recipe_and_resumes(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    base = ["train", "--data", str(dataset), "--out", str(run), "--config", "tiny",
            "--device", "cpu", "--no-amp", "--set", "train.window=16", "--set", "eval_every=2",
            "--set", "log_every=1"]
    assert cli.main(base + ["--max-steps", "3", "--lr", "0.002"]) == 0
    out = capsys.readouterr().out
    assert f"run: {run}" in out and "step 3" in out and "val MPJPE" in out and " mm" in out
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["d_model"] == 32 and cfg["model"]["n_layers"] == 1
    assert cfg["train"]["lr"] == 0.002 and cfg["train"]["window"] == 16  # flags override file
    assert cfg["train"]["batch_size"] == 8 and cfg["train"]["amp"] is False
    assert load_checkpoint(run / "last.pt")["step"] == 3
    assert (run / "best.pt").exists() and (run / "curves.png").exists()

    # Resume without --config: the run's own config.json is the recipe.
    assert cli.main(["train", "--data", str(dataset), "--out", str(run), "--resume",
                     "--max-steps", "5"]) == 0
    assert "(resuming)" in capsys.readouterr().out
    with open(run / "metrics.csv", newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5]


def test_cli_errors_are_one_line(dataset, tmp_path, capsys):
    base = ["train", "--data", str(dataset), "--out", str(tmp_path / "r"), "--config", "tiny"]
    assert cli.main(base + ["--set", "train.no_such_key=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'train.no_such_key'" in err and len(err.strip().splitlines()) == 1
    assert cli.main(base + ["--set", "d_model=big"]) == 2
    assert "model.d_model must be int" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(dataset), "--out", str(tmp_path / "r"),
                     "--config", "nope"]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(tmp_path / "missing"), "--out",
                     str(tmp_path / "r"), "--config", "tiny"]) == 2
    assert "dataset_map.json" in capsys.readouterr().err


def test_recipe_files(tmp_path):
    default, _ = train_cmd.load_recipe("default")
    assert default["model"] == ModelConfig().to_dict()
    assert default["train"] == asdict(TrainConfig())   # the seed's defaults, written out
    assert default["loss"] == LossConfig().to_dict()
    assert default["train"]["batch_size"] == 512 and default["train"]["lr"] == 1e-4
    assert default["train"]["epochs"] == 100 and default["train"]["amp"] is True
    tiny, _ = train_cmd.load_recipe("tiny")
    assert tiny["model"] == {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64}
    assert tiny["train"]["batch_size"] == 8 and tiny["train"]["num_workers"] == 0

    custom = tmp_path / "mine.json"
    custom.write_text(json.dumps({"model": {"d_model": 64}, "train": {"lr": 1}}))
    sections, _ = train_cmd.load_recipe(str(custom))
    args = argparse.Namespace(max_steps=None, device=None, batch_size=None, lr=None, epochs=7,
                              num_workers=None, no_amp=False, overrides=["loss.w_fk=2.5"])
    train_cfg, model_cfg, loss_cfg = train_cmd.build_configs(sections, args)
    assert model_cfg.d_model == 64 and train_cfg.lr == 1.0 and train_cfg.epochs == 7
    assert loss_cfg.w_fk == 2.5 and isinstance(train_cfg.lr, float)
    assert train_cfg.init_from is None
    args.init = "engine/weights/default.safetensors"
    assert train_cmd.build_configs(sections, args)[0].init_from == args.init
    custom.write_text(json.dumps({"modle": {}}))
    with pytest.raises(InputError, match="unknown section"):
        train_cmd.load_recipe(str(custom))


@pytest.mark.parametrize("text, expected", [
    ("train.max_steps=null", ("train", "max_steps", None)),
    ("max_steps=10", ("train", "max_steps", 10)),
    ("device=cuda", ("train", "device", "cuda")),
    ("amp=false", ("train", "amp", False)),
    ("model.dropout=0", ("model", "dropout", 0.0)),
    ("fk_metric=mpjpe", ("loss", "fk_metric", "mpjpe")),
])
def test_set_values_are_typed(text, expected):
    assert train_cmd.parse_override(text) == expected


@pytest.mark.parametrize("text, message", [
    ("window=32", "ambiguous"),           # train.window and model.window
    ("lr", "KEY=VALUE"),
    ("epochs=1.5", "must be int"),
    ("amp=1", "must be bool"),
    ("optim.lr=1", "unknown config section"),
])
def test_bad_set_values_rejected(text, message):
    with pytest.raises(InputError, match=message):
        train_cmd.parse_override(text)
