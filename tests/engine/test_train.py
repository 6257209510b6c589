"""The training loop on synthetic data: overfitting, resume after a real SIGKILL, signals,
non-finite losses, DDP under torchrun (CPU, gloo), CUDA + fp16 AMP."""
from __future__ import annotations

import csv
import inspect
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from engine.checkpoint import load_checkpoint
from engine.errors import CheckpointError, InputError, TrainingError
from engine.kinematics import rotations_to_slots
from engine.losses import LossConfig
from engine.model import ModelConfig
from engine.rotations import axis_angle_to_matrix
from engine.train import (TrainConfig, TrainingRecipe, dataset_feature_stats, ema_decay_at,
                          lr_factor, train)

REPO = Path(__file__).resolve().parents[2]
TINY = ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64)
QUICK = dict(batch_size=4, num_workers=0, lr=3e-3, warmup_steps=2, amp=False, log_every=1)


def make_arrays(n: int = 16, s: int = 16, seed: int = 0) -> dict:
    """Random features; targets from smooth random rotations and root motion."""
    rng = np.random.default_rng(seed)
    aa = rng.normal(size=(n, 1, 21, 3)) * 0.4 + rng.normal(size=(n, s, 21, 3)) * 0.05
    rots = axis_angle_to_matrix(aa.astype(np.float32))
    pos = (np.cumsum(rng.normal(size=(n, s, 3)) * 0.005, axis=1)
           + rng.normal(size=(n, 1, 3)) * 0.3 + [0.0, 0.0, 4.0]).astype(np.float32)
    return {"features": rng.normal(size=(n, s, 25, 18)).astype(np.float32),
            "valid": np.ones((n, s), bool),
            "target": np.stack([rotations_to_slots(rots[i], pos[i]) for i in range(n)]),
            "weight": np.ones((n, s), np.float32),
            "offsets": rng.uniform(0.05, 0.3, (n, 21, 3)).astype(np.float32),
            "has_root_rotation": np.arange(n) % 4 != 3}


class SynthDataset(Dataset):
    """WindowDataset-like items from arrays. ``hook(call_index)`` runs before each item
    (to poison, slow down, signal or interrupt at a known point)."""

    def __init__(self, arrays: dict, hook=None):
        self.arrays, self.hook, self.calls = arrays, hook, 0

    def __len__(self) -> int:
        return len(self.arrays["features"])

    def __getitem__(self, i: int) -> dict:
        item = {k: torch.as_tensor(np.array(v[i])) for k, v in self.arrays.items()}
        if self.hook is not None:
            item = self.hook(self.calls, item)
        self.calls += 1
        return item


def read_metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def run_quick(out, hook=None, resume=False, default_stats=False, **over):
    """8 steps of 4 windows (4 steps per epoch), evaluated every 4. Input statistics are
    computed before the hooked dataset is touched, so hooks count training items only."""
    kw = {**QUICK, "epochs": 50, "max_steps": 8, "eval_every": 4, **over}
    stats = None if default_stats else dataset_feature_stats(SynthDataset(make_arrays()))
    return train(TrainConfig(**kw), TINY, LossConfig(), None, out, resume=resume,
                 train_set=SynthDataset(make_arrays(), hook),
                 val_set=SynthDataset(make_arrays(8, seed=5)), stats=stats)


def test_lr_schedule_warmup_then_cosine():
    f = [lr_factor(s, 10, 110, 0.1) for s in range(120)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(f[:10], f[1:10]))
    assert all(a >= b for a, b in zip(f[10:110], f[11:110]))
    assert f[110] == pytest.approx(0.1) and f[119] == pytest.approx(0.1)


def test_tiny_model_overfits_one_batch(tmp_path):
    cfg = TrainConfig(**{**QUICK, "warmup_steps": 0})
    # Random features make the geometric prior (engine.ik) random too; the loop is under test.
    recipe = TrainingRecipe(cfg, ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64,
                                             dropout=0.0, geometric_prior=False), LossConfig(),
                            tmp_path, SynthDataset(make_arrays(n=4)))
    recipe.setup()
    try:
        batch = next(iter(recipe.loader))
        first = recipe.train_step(batch)["total"]
        for _ in range(60):
            last = recipe.train_step(batch)["total"]
    finally:
        recipe.cleanup()
    assert first / last > 10, (first, last)


def test_run_writes_files_and_metrics(tmp_path):
    out = run_quick(tmp_path / "run", default_stats=True)
    run = tmp_path / "run"
    assert out["step"] == 8 and out["interrupted"] is None and out["nonfinite_steps"] == 0
    assert {"last.pt", "best.pt", "metrics.csv", "curves.png", "config.json"} <= {
        p.name for p in run.iterdir()}
    rows = read_metrics(run)
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    evaluated = [int(r["step"]) for r in rows if r["val_mpjpe_mm"]]
    assert evaluated == [4, 8]
    assert all(float(r["total"]) > 0 for r in rows)
    best = load_checkpoint(run / "best.pt")
    assert best["best_metric"] == pytest.approx(min(float(rows[i]["val_mpjpe_mm"]) for i in (3, 7)),
                                                rel=1e-4)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["d_model"] == 32 and cfg["train"]["batch_size"] == 4
    assert cfg["world_size"] == 1
    # Input normalisation was fitted on the train set and saved with the model.
    assert not torch.allclose(best["model"]["input_std"], torch.ones(450))
    with pytest.raises(InputError, match="already holds a training run"):
        run_quick(run)


def test_resume_refuses_missing_or_incompatible_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        run_quick(tmp_path / "none", resume=True)
    run_quick(tmp_path / "run", max_steps=4)
    with pytest.raises(CheckpointError, match=r"d_model \(checkpoint 32, now 48\)"):
        train(TrainConfig(**QUICK, max_steps=8), ModelConfig(d_model=48, n_layers=1, n_heads=2,
                                                             d_ff=64),
              LossConfig(), None, tmp_path / "run", resume=True,
              train_set=SynthDataset(make_arrays()))


_SCRIPT_HEADER = """
import sys, time
import numpy as np, torch
from torch.utils.data import Dataset
from engine.kinematics import rotations_to_slots
from engine.losses import LossConfig
from engine.model import ModelConfig
from engine.rotations import axis_angle_to_matrix
from engine.train import TrainConfig, train
torch.set_num_threads(1)
"""


def write_script(path: Path, body: str) -> Path:
    src = (_SCRIPT_HEADER + inspect.getsource(make_arrays) + inspect.getsource(SynthDataset)
           + textwrap.dedent(body))
    path.write_text(src)
    return path


KILL_RUN = """
out, sleep, resume = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "1"
def slow(i, item):
    time.sleep(sleep)
    return item
cfg = TrainConfig(batch_size=4, num_workers=0, lr=3e-3, warmup_steps=2, amp=False, log_every=1,
                  epochs=50, max_steps=12, eval_every=4)
res = train(cfg, ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64), LossConfig(), None,
            out, resume=resume, train_set=SynthDataset(make_arrays(), slow),
            val_set=SynthDataset(make_arrays(8, seed=5)))
print("DONE", res["step"])
"""


@pytest.mark.slow
def test_resume_after_sigkill_continues_the_curve(tmp_path):
    script = write_script(tmp_path / "run_train.py", KILL_RUN)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(script), str(run), "0.05", "0"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if (run / "last.pt").exists() and (run / "metrics.csv").exists():
                steps = [int(r["step"]) for r in read_metrics(run)]
                if steps and steps[-1] >= 5:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed: " + \
            proc.communicate()[1].decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    saved = load_checkpoint(run / "last.pt")["step"]
    logged = [int(r["step"]) for r in read_metrics(run)]
    assert saved in (4, 8) and logged[-1] >= 5

    done = subprocess.run([sys.executable, str(script), str(run), "0", "1"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DONE 12" in done.stdout
    rows = read_metrics(run)
    assert [int(r["step"]) for r in rows] == list(range(1, 13))  # none missing, none twice
    assert load_checkpoint(run / "last.pt")["step"] == 12

    # The same run without interruption: the resumed curve is the same curve.
    ref = run_quick(tmp_path / "ref", max_steps=12)
    assert ref["step"] == 12
    ref_rows = read_metrics(tmp_path / "ref")
    got = np.array([float(r["total"]) for r in rows])
    want = np.array([float(r["total"]) for r in ref_rows])
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_sigterm_saves_and_resume_continues(tmp_path):
    def term_at_step_3(i, item):
        if i == 10:  # third batch of 4
            os.kill(os.getpid(), signal.SIGTERM)
        return item

    run = tmp_path / "run"
    out = run_quick(run, hook=term_at_step_3)
    assert out["interrupted"] == "SIGTERM" and out["step"] == 3
    assert load_checkpoint(run / "last.pt")["step"] == 3
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handler restored
    out = run_quick(run, resume=True)
    assert out["step"] == 8 and out["interrupted"] is None
    assert [int(r["step"]) for r in read_metrics(run)] == list(range(1, 9))


def test_weight_average_is_validated_saved_and_resumed(tmp_path):
    ref = tmp_path / "ref"
    run_quick(ref, ema_decay=0.8)
    ckpt = load_checkpoint(ref / "last.pt")
    assert ckpt["ema_updates"] == 8
    live, avg = ckpt["live_model"], ckpt["model"]
    assert set(live) == set(avg)
    assert max(float((live[k] - avg[k]).abs().max()) for k in live) > 1e-4  # not a copy
    # The average is what inference loads, and validation reports both.
    from engine.checkpoint import load_model
    shipped = load_model(ref / "last.pt")[0].state_dict()
    assert all(torch.equal(shipped[k], avg[k]) for k in avg)
    rows = [r for r in read_metrics(ref) if r["val_mpjpe_mm"]]
    assert rows and all(r["val_live_mpjpe_mm"] and r["val_live_mpjpe_mm"] != r["val_mpjpe_mm"]
                        for r in rows)

    # Stopped at step 3 and resumed: the same average and the same live weights.
    def term_at_step_3(i, item):
        if i == 10:
            os.kill(os.getpid(), signal.SIGTERM)
        return item

    run = tmp_path / "run"
    assert run_quick(run, hook=term_at_step_3, ema_decay=0.8)["step"] == 3
    assert run_quick(run, resume=True, ema_decay=0.8)["step"] == 8
    again = load_checkpoint(run / "last.pt")
    for key in ("model", "live_model"):
        for k, v in ckpt[key].items():
            torch.testing.assert_close(again[key][k], v, rtol=1e-4, atol=1e-6)


def test_domain_vectors_train_and_export_as_the_real_video_model(tmp_path):
    """Windows carry their data source; a model with domain vectors learns one per source
    and the exported weights are the plain model for real video (domain 0)."""
    from dataclasses import replace

    from engine.checkpoint import _model_from, export_weights, load_model

    arrays = make_arrays()
    arrays["domain"] = np.arange(16) % 2
    cfg = replace(TINY, num_domains=2)
    kw = {**QUICK, "epochs": 50, "max_steps": 4, "eval_every": 4}
    train(TrainConfig(**kw), cfg, LossConfig(), None, tmp_path / "run",
          train_set=SynthDataset(arrays), val_set=SynthDataset(make_arrays(8, seed=5)))
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    model = _model_from(ckpt["model_config"], ckpt["model"], "last.pt", "cpu")
    emb = model.domain_embed.detach()
    assert emb.shape == (2, 32) and (emb[1] - emb[0]).abs().max() > 0  # both sources learnt
    export_weights(model, tmp_path / "w.safetensors")
    x, valid = torch.randn(1, 12, 25, 18), torch.ones(1, 12, dtype=torch.bool)
    for path in (tmp_path / "w.safetensors", tmp_path / "run" / "last.pt"):  # what inference gets
        plain, _ = load_model(path)
        assert plain.cfg.num_domains == 1 and "domain_embed" not in plain.state_dict()
        with torch.no_grad():
            torch.testing.assert_close(plain(x, valid), model(x, valid, domain=torch.tensor([0])))

    # A source the model has no vector for is refused before any step, in one line.
    arrays["domain"] = np.arange(16) % 3
    ds = SynthDataset(arrays)
    ds.domains = arrays["domain"]
    with pytest.raises(InputError, match="model.num_domains=3"):
        train(TrainConfig(**kw), cfg, LossConfig(), None, tmp_path / "bad", train_set=ds)


def test_joint_head_trains_exports_and_infers_like_the_module(tmp_path):
    """A model with a joint head trains with the joint loss, its head moves the output, and
    exported weights give the same output through load_model and the NumPy path; a joint
    loss without a head is refused before any step."""
    from dataclasses import replace

    from engine.checkpoint import export_weights, load_model
    from engine.numpy_model import load_numpy_model

    cfg = replace(TINY, joint_head=True)
    kw = {**QUICK, "epochs": 50, "max_steps": 4, "eval_every": 4}
    loss = LossConfig(w_joints=2.0)
    train(TrainConfig(**kw), cfg, loss, None, tmp_path / "run",
          train_set=SynthDataset(make_arrays()), val_set=SynthDataset(make_arrays(8, seed=5)))
    rows = read_metrics(tmp_path / "run")
    assert all(float(r["joints"]) > 0 for r in rows) and float(rows[-1]["val_joints"]) > 0
    model, _ = load_model(tmp_path / "run" / "last.pt")
    assert model.cfg.joint_head and model.joint_head[-1].bias.abs().min() > 1e-4  # learnt (init 0)
    export_weights(model, tmp_path / "w.safetensors")
    x, valid = torch.randn(1, 12, 25, 18), torch.ones(1, 12, dtype=torch.bool)
    with torch.no_grad():
        ref = model(x, valid).numpy()
    again, _ = load_model(tmp_path / "w.safetensors")
    with torch.no_grad():
        np.testing.assert_allclose(again(x, valid).numpy(), ref, atol=1e-6)
    npm, _ = load_numpy_model(tmp_path / "w.safetensors")
    np.testing.assert_allclose(npm(x.numpy(), valid.numpy()), ref, atol=1e-4)
    with pytest.raises(InputError, match="model.joint_head=true"):
        train(TrainConfig(**kw), TINY, loss, None, tmp_path / "bad",
              train_set=SynthDataset(make_arrays()))


def test_frame_branch_trains_by_its_own_loss_and_every_path_mixes_it_alike(tmp_path):
    """A per-frame branch learns from its joint loss; the exported weights give the module's
    evaluation-mode output (the mix) through load_model, the lean torch backend and both
    NumPy paths; a branch without its loss, or the loss without a branch, is refused before
    any step."""
    from dataclasses import replace

    from engine.checkpoint import export_weights, load_model
    from engine.inference import TorchBackend
    from engine.numpy_model import load_numpy_model

    cfg = replace(TINY, joint_head=True, frame_branch=16)
    kw = {**QUICK, "epochs": 50, "max_steps": 16, "eval_every": 16}
    loss = LossConfig(w_joints=2.0, w_frame=1.0)
    train(TrainConfig(**kw), cfg, loss, None, tmp_path / "run",
          train_set=SynthDataset(make_arrays()), val_set=SynthDataset(make_arrays(8, seed=5)))
    rows = read_metrics(tmp_path / "run")
    frame = [float(r["frame"]) for r in rows]
    assert np.mean(frame[-4:]) < 0.9 * np.mean(frame[:4]) and float(rows[-1]["val_frame"]) > 0
    model, _ = load_model(tmp_path / "run" / "last.pt")
    export_weights(model, tmp_path / "w.safetensors")
    x, valid = torch.randn(1, 12, 25, 18), torch.ones(1, 12, dtype=torch.bool)
    valid[0, 3] = False
    with torch.no_grad():
        ref = model(x, valid).numpy()
        plain = replace(cfg, frame_mix=0.0)
        without = type(model)(plain)
        without.load_state_dict(model.state_dict())
        assert np.abs(without.eval()(x, valid).numpy() - ref).max() > 1e-3  # the mix counts
    again, _ = load_model(tmp_path / "w.safetensors")
    with torch.no_grad():
        np.testing.assert_allclose(again(x, valid).numpy(), ref, atol=1e-6)
    lean, _ = TorchBackend(again).step(x[0].numpy(), valid[0].numpy(), None)
    np.testing.assert_allclose(lean, ref[0], atol=1e-5)
    npm, _ = load_numpy_model(tmp_path / "w.safetensors")
    np.testing.assert_allclose(npm(x.numpy(), valid.numpy()), ref, atol=1e-4)
    cache = npm.new_frame_cache()
    frames = np.stack([npm.step_frame(f, bool(v), cache) for f, v in zip(x[0].numpy(), valid[0].numpy())])
    np.testing.assert_allclose(frames, ref[0], atol=1e-4)
    with pytest.raises(InputError, match="loss.w_frame"):
        train(TrainConfig(**kw), cfg, LossConfig(w_joints=2.0), None, tmp_path / "bad",
              train_set=SynthDataset(make_arrays()))
    with pytest.raises(InputError, match="model.frame_branch"):
        train(TrainConfig(**kw), replace(TINY, joint_head=True), loss, None, tmp_path / "bad2",
              train_set=SynthDataset(make_arrays()))


def test_init_from_weights_fine_tunes_with_their_normalisation(tmp_path):
    """train.init_from starts from trained weights (a checkpoint's inference weights or the
    exported safetensors), input normalisation included; new domain vectors start at zero;
    another architecture is refused in one line."""
    from dataclasses import replace

    from engine.checkpoint import export_weights, load_model

    run_quick(tmp_path / "ref", max_steps=4)
    src, _ = load_model(tmp_path / "ref" / "last.pt")
    export_weights(src, tmp_path / "ref.safetensors")
    for path, model_cfg in ((tmp_path / "ref" / "last.pt", TINY),
                            (tmp_path / "ref.safetensors", replace(TINY, num_domains=2))):
        cfg = TrainConfig(**{**QUICK, "max_steps": 2, "init_from": str(path)})
        recipe = TrainingRecipe(cfg, model_cfg, LossConfig(), tmp_path / f"ft{path.suffix}",
                                SynthDataset(make_arrays(seed=9)))
        recipe.setup()
        try:
            state = recipe.raw_model.state_dict()
            for k, v in src.state_dict().items():
                torch.testing.assert_close(state[k], v)   # input_mean / input_std included
            if model_cfg.num_domains > 1:
                assert not state["domain_embed"].any()
        finally:
            recipe.cleanup()
    cfg = TrainConfig(**{**QUICK, "init_from": str(tmp_path / "ref" / "last.pt")})
    with pytest.raises(CheckpointError, match="its model differs.*d_model"):
        TrainingRecipe(cfg, replace(TINY, d_model=16), LossConfig(), tmp_path / "bad",
                       SynthDataset(make_arrays())).setup()
    cfg = TrainConfig(**{**QUICK, "init_from": str(tmp_path / "missing.pt")})
    with pytest.raises(CheckpointError, match="no weights file"):
        TrainingRecipe(cfg, TINY, LossConfig(), tmp_path / "bad2", SynthDataset(make_arrays())).setup()


def test_ema_decay_is_warmed_up_so_the_first_weights_fade():
    assert ema_decay_at(0.999, 1) == pytest.approx(2 / 11)
    assert ema_decay_at(0.999, 100_000) == 0.999
    decays = [ema_decay_at(0.999, n) for n in range(1, 3000)]
    assert all(a <= b for a, b in itertools.pairwise(decays))
    # What is left of the first copy after 3,000 updates (a plain 0.999 would keep 5 %).
    assert np.prod(decays) < 1e-20 and 0.999 ** 2999 > 0.04


def test_ema_decay_must_be_below_one():
    with pytest.raises(InputError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)


def test_keyboard_interrupt_saves_last_completed_step(tmp_path):
    def interrupt(i, item):
        if i == 9:  # while fetching the third batch: steps 1 and 2 are complete
            raise KeyboardInterrupt
        return item

    with pytest.raises(KeyboardInterrupt):
        run_quick(tmp_path / "run", hook=interrupt)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 2


def poison(calls):
    def hook(i, item):
        if i in calls:
            item["target"] = torch.full_like(item["target"], float("nan"))
        return item
    return hook


def test_non_finite_loss_is_skipped_and_counted(tmp_path):
    run = tmp_path / "run"
    out = run_quick(run, hook=poison(set(range(4, 8))))  # the second batch is NaN
    assert out["step"] == 8 and out["nonfinite_steps"] == 1
    rows = read_metrics(run)
    assert rows[1]["total"] == "" and rows[1]["nonfinite_skipped"] == "1"
    assert all(float(r["total"]) > 0 for i, r in enumerate(rows) if i != 1)
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["nonfinite_total"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_repeated_non_finite_losses_stop_the_run(tmp_path):
    with pytest.raises(TrainingError, match="non-finite losses in a row"):
        run_quick(tmp_path / "run", hook=poison(set(range(10_000))), max_nonfinite=3)
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")  # saved on exit: still finite
    assert ckpt["step"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_nan_model_is_never_saved(tmp_path):
    recipe = TrainingRecipe(TrainConfig(**QUICK), TINY, LossConfig(), tmp_path,
                            SynthDataset(make_arrays()))
    recipe.setup()
    try:
        with torch.no_grad():
            recipe.raw_model.input_proj.bias.fill_(float("nan"))
        with pytest.raises(TrainingError, match="non-finite"):
            recipe.save()
    finally:
        recipe.cleanup()
    assert not (tmp_path / "last.pt").exists()


DDP_RUN = """
import os, torch.distributed as dist
base = sys.argv[1]
out = os.path.join(base, "rank" + os.environ["RANK"])
cfg = TrainConfig(batch_size=4, num_workers=0, lr=3e-3, warmup_steps=1, amp=False, log_every=1,
                  epochs=50, max_steps=3, eval_every=2)
model_cfg = ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64)
res = train(cfg, model_cfg, LossConfig(), None, out, train_set=SynthDataset(make_arrays()),
            val_set=SynthDataset(make_arrays(8, seed=5)))
print("RESULT", os.environ["RANK"], res["world_size"], res["step"], res["epoch"],
      float(res["val"]["val_mpjpe_mm"]), flush=True)
"""


@pytest.mark.slow
def test_torchrun_two_cpu_processes_gloo(tmp_path):
    script = write_script(tmp_path / "ddp_train.py", DDP_RUN)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", str(script), str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    results = sorted(line.split()[1:] for line in done.stdout.splitlines()
                     if line.startswith("RESULT"))
    assert len(results) == 2
    # 16 windows over 2 ranks, 4 per batch: 2 steps per epoch; metrics averaged over ranks.
    assert results[0][1:] == results[1][1:] and results[0][1:4] == ["2", "3", "1"]
    assert not (tmp_path / "rank1").exists()  # only rank 0 writes
    rank0 = tmp_path / "rank0"
    assert [int(r["step"]) for r in read_metrics(rank0)] == [1, 2, 3]
    assert json.loads((rank0 / "config.json").read_text())["world_size"] == 2
    assert load_checkpoint(rank0 / "last.pt")["step"] == 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_amp_trains_and_resumes(tmp_path):
    run = tmp_path / "run"
    out = run_quick(run, device="cuda", amp=True, max_steps=6, eval_every=3)
    assert out["step"] == 6 and out["nonfinite_steps"] == 0
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["scaler"] and ckpt["scaler"]["scale"] > 0  # GradScaler was active
    assert all(v.device.type == "cpu" for v in ckpt["model"].values())
    rows = read_metrics(run)
    assert all(np.isfinite(float(r["total"])) for r in rows)
    out = run_quick(run, resume=True, device="cuda", amp=True, max_steps=8, eval_every=3)
    assert out["step"] == 8
    assert [int(r["step"]) for r in read_metrics(run)] == list(range(1, 9))


def _domain_set(n_real: int, n_other: int) -> SynthDataset:
    arrays = make_arrays(n_real + n_other)
    ds = SynthDataset(arrays)
    ds.domains = np.r_[np.zeros(n_real, np.int64), np.ones(n_other, np.int64)]
    return ds


def test_share_sampler_holds_every_real_window_once_and_the_share_of_the_others():
    from engine.train import ShareSampler

    ds = _domain_set(30, 200)
    s = ShareSampler(ds, 1, 0, seed=3, share=0.25)
    s.set_epoch(0)
    first = list(s)
    assert len(first) == len(s) == 40                    # 30 real / (1 - 0.25)
    assert sorted(i for i in first if i < 30) == list(range(30))
    others = [i for i in first if i >= 30]
    assert len(others) == 10 and len(set(others)) == 10  # without replacement
    assert first == list(ShareSampler(ds, 1, 0, seed=3, share=0.25))  # same epoch, same order
    s.set_epoch(1)
    assert set(list(s)) - set(range(30)) != set(others)  # other engine windows next epoch
    s.skip = 7                                            # resume inside the epoch
    assert list(s) == s.epoch_indices()[7:].tolist() and len(s) == 33
    # two ranks: disjoint halves of one epoch
    a, b = (ShareSampler(ds, 2, r, seed=3, share=0.25) for r in (0, 1))
    assert sorted(list(a) + list(b)) == sorted(a.epoch_indices().tolist())
    # more engine windows wanted than there are: drawn with replacement
    few = ShareSampler(_domain_set(30, 4), 1, 0, seed=3, share=0.5)
    assert len(few) == 60 and set(list(few)) - set(range(30)) <= set(range(30, 34))


def test_engine_share_is_validated_and_needs_both_sources(tmp_path):
    with pytest.raises(InputError, match="engine_share"):
        TrainConfig(engine_share=1.0)
    kw = {**QUICK, "epochs": 50, "max_steps": 2, "eval_every": 2, "engine_share": 0.3}
    real_only = _domain_set(16, 0)
    with pytest.raises(InputError, match="16 real and 0 engine"):
        train(TrainConfig(**kw), TINY, LossConfig(), None, tmp_path / "run", train_set=real_only)
    mixed = _domain_set(12, 20)
    train(TrainConfig(**kw), TINY, LossConfig(), None, tmp_path / "ok", train_set=mixed)
    assert load_checkpoint(tmp_path / "ok" / "last.pt")["step"] == 2
