"""Checkpoints: round trip, hostile / truncated / incompatible files, safetensors weights."""
from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch

from engine.checkpoint import (export_weights, load_checkpoint, load_model, rng_state,
                               save_checkpoint, set_rng_state)
from engine.errors import CheckpointError
from engine.model import ModelConfig, MotionTransformer

TINY = ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64)


def trained_state(cfg: ModelConfig = TINY) -> tuple[MotionTransformer, dict]:
    torch.manual_seed(0)
    model = MotionTransformer(cfg)
    model.set_input_normalization(torch.randn(450), torch.rand(450) + 0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    model(torch.randn(2, 5, 25, 18)).square().mean().backward()
    opt.step()
    sched.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(), "scaler": torch.amp.GradScaler("cpu", enabled=False).state_dict(),
             "step": 7, "epoch": 1, "best_metric": 123.5, "rng": rng_state(),
             "model_config": cfg.to_dict(), "train_config": {"lr": 1e-3}, "loss_config": {}}
    return model, state


def test_round_trip_restores_everything(tmp_path):
    model, state = trained_state()
    save_checkpoint(tmp_path / "last.pt", state)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left
    ckpt = load_checkpoint(tmp_path / "last.pt", TINY)
    assert ckpt["step"] == 7 and ckpt["epoch"] == 1 and ckpt["best_metric"] == 123.5
    fresh = MotionTransformer(TINY)
    fresh.load_state_dict(ckpt["model"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]), k
    opt = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    opt.load_state_dict(ckpt["optimizer"])
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"],
                       state["optimizer"]["state"][0]["exp_avg"])


def test_rng_states_round_trip(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    _, state = trained_state()
    state["rng"] = rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    save_checkpoint(tmp_path / "c.pt", state)
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


class _Payload:
    """Unpickling this creates a file: what a hostile checkpoint would do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_hostile_pickle_refused_and_runs_nothing(tmp_path, writer):
    marker = tmp_path / "pwned"
    _, state = trained_state()
    state["model_config"] = _Payload(marker)
    path = tmp_path / "evil.pt"
    if writer == "torch":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps({"format": "blaze2cap-checkpoint",
                                       "model": _Payload(marker)}, protocol=2))
    # The payload is real: an unrestricted load would create the file.
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_model(path)
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Payload(marker)))  # proof the payload works when trusted
    assert marker.exists()


def test_truncated_and_garbage_files_give_clear_errors(tmp_path):
    _, state = trained_state()
    good = tmp_path / "good.pt"
    save_checkpoint(good, state)
    data = good.read_bytes()
    for name, content in (("cut.pt", data[: len(data) // 2]), ("empty.pt", b""),
                          ("noise.pt", bytes(range(256)) * 10)):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match="truncated or corrupt|refusing"):
            load_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": torch.ones(3)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a Blaze2Cap training checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_incompatible_config_names_what_differs(tmp_path):
    _, state = trained_state()
    save_checkpoint(tmp_path / "c.pt", state)
    other = ModelConfig(d_model=64, n_layers=1, n_heads=2, d_ff=64, window=32)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "c.pt", other)
    msg = str(err.value)
    assert "d_model (checkpoint 32, now 64)" in msg and "window (checkpoint 64, now 32)" in msg
    assert "n_heads" not in msg
    state["feature_version"] = -1
    save_checkpoint(tmp_path / "old.pt", state)
    with pytest.raises(CheckpointError, match="feature_version"):
        load_checkpoint(tmp_path / "old.pt", TINY)


def test_non_finite_model_is_never_saved(tmp_path):
    model, state = trained_state()
    with torch.no_grad():
        model.input_proj.weight[0, 0] = float("nan")
    state["model"] = model.state_dict()
    with pytest.raises(CheckpointError, match="non-finite"):
        save_checkpoint(tmp_path / "nan.pt", state)
    with pytest.raises(CheckpointError, match="non-finite"):
        export_weights(model, tmp_path / "nan.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_numpy_objects_refused_at_save_time(tmp_path):
    _, state = trained_state()
    state["extra"] = np.zeros(3)
    with pytest.raises(CheckpointError, match="ndarray"):
        save_checkpoint(tmp_path / "c.pt", state)


def test_safetensors_export_and_pt_load_give_identical_outputs(tmp_path):
    model, state = trained_state()
    model.eval()
    feats, valid = torch.randn(2, 12, 25, 18), torch.rand(2, 12) > 0.2
    with torch.no_grad():
        ref = model(feats, valid)
    export_weights(model, tmp_path / "w.safetensors", {"run": "test", "step": 7})
    loaded, meta = load_model(tmp_path / "w.safetensors")
    assert meta["run"] == "test" and meta["step"] == 7 and "feature_version" in meta
    assert loaded.cfg == TINY and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(feats, valid), ref)
    save_checkpoint(tmp_path / "c.pt", state)
    from_pt, meta = load_model(tmp_path / "c.pt")
    assert meta["step"] == 7
    with torch.no_grad():
        assert torch.equal(from_pt(feats, valid), ref)


def test_load_model_refuses_other_files(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"1234")
    with pytest.raises(CheckpointError, match="unsupported weights file"):
        load_model(tmp_path / "w.bin")
    model, _ = trained_state()
    export_weights(model, tmp_path / "w.safetensors")
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(tmp_path / "cut.safetensors")
    from safetensors.torch import save_file
    save_file({"x": torch.ones(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match="not a Blaze2Cap weights file"):
        load_model(tmp_path / "foreign.safetensors")


@pytest.mark.parametrize("extra, dropped, field, bad, message", [
    ({}, "joint_head", "joint_head", "yes", "joint_head must be true or false"),
    ({"frame_branch": 8}, "frame_branch.out", "frame_mix", 2.0, "frame_mix must be in"),
])
def test_weights_whose_heads_are_missing_or_mistyped_are_refused(tmp_path, extra, dropped, field,
                                                                 bad, message):
    """A config that promises a joint head (or a per-frame branch) the tensors lack, or a
    joint_head that is not a boolean (a frame_mix outside [0, 1]), is refused in one line by
    the torch and the NumPy loaders."""
    import json

    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from engine.numpy_model import load_numpy_model

    m = MotionTransformer(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64,
                                      joint_head=True, **extra))
    export_weights(m, tmp_path / "w.safetensors")
    with safe_open(str(tmp_path / "w.safetensors"), framework="numpy") as f:
        meta = dict(f.metadata())
    state = load_file(str(tmp_path / "w.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith(dropped)},
              str(tmp_path / "headless.safetensors"), metadata=meta)
    cfg = json.loads(meta["model_config"])
    cfg[field] = bad
    save_file(state, str(tmp_path / "typed.safetensors"),
              metadata={**meta, "model_config": json.dumps(cfg)})
    for name, match in (("headless", dropped), ("typed", message)):
        path = tmp_path / f"{name}.safetensors"
        for loader in (load_model, load_numpy_model):
            with pytest.raises(CheckpointError, match=match) as err:
                loader(path)
            assert "\n" not in str(err.value)
    assert load_model(tmp_path / "w.safetensors")[0].cfg == m.cfg
