"""Checkpoints and weights: safetensors shipped, weights-only loading, hostile pickles refused
without running, truncated / foreign / incompatible files named. Rows ``ckpt-*``."""
from __future__ import annotations

import ast
import json
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import torch

import engine.inference
from engine.checkpoint import export_weights, load_model
from engine.inference import DEFAULT_WEIGHTS, Predictor
from robustness_cases import CASES, REPO
from robustness_helpers import (FilePayload, cli_error, hostile_checkpoint, run_cli, tiny_dataset,
                                tiny_model, train_args)

PRODUCT = ("engine", "training", "capture", "blaze2cap_addon", "scripts")


def landmarks_file(folder: Path) -> Path:
    lm = np.zeros((6, 33, 10), np.float32)
    lm[:, :, 5:7] = np.random.default_rng(0).uniform(0.3, 0.7, (6, 33, 2))
    lm[:, :, 3] = lm[:, :, 8] = 0.9
    np.save(folder / "lm.npy", lm)
    return folder / "lm.npy"


def predict_error(capsys, tmp_path, ckpt: Path, backend: str = "auto") -> str:
    line = cli_error(capsys, "predict", landmarks_file(tmp_path), "--out", tmp_path / "o.npz",
                     "--checkpoint", ckpt, "--backend", backend)
    assert not (tmp_path / "o.npz").exists()
    return line


def test_shipped_weights_are_safetensors_and_never_unpickled(tiny_weights, monkeypatch):
    assert CASES["ckpt-safetensors"].code is None
    assert DEFAULT_WEIGHTS.name == "default.safetensors"
    assert 'engine = ["weights/*.safetensors"' in (REPO / "pyproject.toml").read_text()
    shipped = DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.is_file() else tiny_weights
    header_len = struct.unpack("<Q", shipped.read_bytes()[:8])[0]  # safetensors: JSON header
    header = json.loads(shipped.read_bytes()[8:8 + header_len])
    assert header["__metadata__"]["format"] == "blaze2cap-weights"

    def no_unpickling(*args, **kwargs):
        raise AssertionError("weights must load without unpickling")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    monkeypatch.setattr(engine.inference, "DEFAULT_WEIGHTS", shipped)
    for backend in ("torch", "numpy"):
        pred = Predictor.from_checkpoint(None, backend=backend).predict(
            np.zeros((3, 33, 10), np.float32))
        assert pred.joints.shape == (3, 21, 3)


def _calls(tree: ast.AST, module: str, func: str):
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == func and isinstance(node.func.value, ast.Name)
                and node.func.value.id == module):
            yield node


def test_every_torch_load_is_weights_only():
    assert CASES["ckpt-weights-only"].code is None
    loads = 0
    for folder in PRODUCT:
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            where = path.relative_to(REPO)
            for call in _calls(tree, "torch", "load"):
                loads += 1
                kw = {k.arg: k.value for k in call.keywords}
                assert isinstance(kw.get("weights_only"), ast.Constant) and \
                    kw["weights_only"].value is True, f"{where}:{call.lineno}"
            for func in ("load", "loads", "Unpickler"):
                assert not list(_calls(tree, "pickle", func)), f"{where} unpickles"
            for call in _calls(tree, "np", "load"):
                kw = {k.arg: k.value for k in call.keywords}
                assert "allow_pickle" not in kw or kw["allow_pickle"].value is False, \
                    f"{where}:{call.lineno}"
    assert loads >= 1  # the scan sees engine.checkpoint's load


def test_hostile_pickle_is_refused_and_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = hostile_checkpoint(tmp_path / "evil.pt", marker)
    assert not marker.exists()
    for backend in ("auto", "torch"):
        assert predict_error(capsys, tmp_path, evil, backend) == \
            CASES["ckpt-hostile"].cli_line("predict", ckpt=evil)
    # the same payload as a run's last.pt, resumed
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(evil, run / "last.pt")
    assert cli_error(capsys, *train_args(tiny_dataset(tmp_path / "ds"), run), "--resume") == \
        CASES["ckpt-hostile-resume"].cli_line("train", ckpt=run / "last.pt")
    # a pickle named .safetensors
    fake = tmp_path / "evil.safetensors"
    fake.write_bytes(pickle.dumps(FilePayload(marker)))
    assert predict_error(capsys, tmp_path, fake) == \
        CASES["ckpt-pickle-safetensors"].cli_line("predict", ckpt=fake)
    assert not marker.exists()
    pickle.loads(pickle.dumps(FilePayload(marker)))  # the payload is real when trusted
    assert marker.exists()


def test_truncated_foreign_and_incompatible_checkpoints(tmp_path, capsys, tiny_weights):
    run = tmp_path / "run"
    train = train_args(tiny_dataset(tmp_path / "ds"), run)
    code, _, _ = run_cli(capsys, *train, "--max-steps", "1")
    assert code == 0 and (run / "last.pt").is_file()
    good = (run / "last.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good[:len(good) // 2])
    assert predict_error(capsys, tmp_path, cut) == \
        CASES["ckpt-truncated"].cli_line("predict", ckpt=cut)
    cut_st = tmp_path / "cut.safetensors"
    cut_st.write_bytes(tiny_weights.read_bytes()[:tiny_weights.stat().st_size // 2])
    assert predict_error(capsys, tmp_path, cut_st) == \
        CASES["ckpt-truncated-safetensors"].cli_line("predict", ckpt=cut_st)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(3)}, foreign)
    assert predict_error(capsys, tmp_path, foreign) == \
        CASES["ckpt-foreign"].cli_line("predict", ckpt=foreign)
    # resuming with another model config names what differs
    last = run / "last.pt"
    assert cli_error(capsys, *train, "--max-steps", "2", "--resume",
                     "--set", "model.d_model=64") == \
        CASES["ckpt-incompatible"].cli_line("train", ckpt=last)
    assert (run / "last.pt").read_bytes() == good  # the refused resume changed nothing
    # fine-tuning from weights of another architecture: refused before anything is written
    fresh = train_args(tmp_path / "ds", tmp_path / "ft")
    assert cli_error(capsys, *fresh, "--max-steps", "2", "--init", str(last),
                     "--set", "model.d_model=64") == \
        CASES["ckpt-init-incompatible"].cli_line("train", ckpt=last)
    assert not (tmp_path / "ft").exists()
    # weights made for another feature version
    old = tmp_path / "old.safetensors"
    export_weights(tiny_model(), old, meta={"feature_version": 1})
    assert predict_error(capsys, tmp_path, old) == \
        CASES["ckpt-feature-version"].cli_line("predict", ckpt=old)
    assert load_model(last)[0].cfg.d_model == 32  # the good file still loads
