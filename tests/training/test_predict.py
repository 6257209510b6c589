import pickle

import numpy as np
import pytest
import torch

from engine.checkpoint import export_weights
from engine.model import ModelConfig, MotionTransformer
from training.cli import main


def landmarks(n: int, seed: int = 0) -> np.ndarray:
    lm = np.random.default_rng(seed).uniform(0.2, 0.8, size=(n, 33, 10)).astype(np.float32)
    lm[:, :, 4] = lm[:, :, 9] = 1
    return lm


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    export_weights(MotionTransformer(ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64)), path)
    return path


def test_file_mode_writes_the_prediction(tmp_path, weights, capsys):
    lm = landmarks(40)
    lm[5:8] = 0
    lm[12, 3, 0] = np.nan  # a NaN makes that frame invalid, not the whole file
    np.save(tmp_path / "clip.npy", lm)
    out = tmp_path / "res" / "clip.npz"
    assert main(["predict", str(tmp_path / "clip.npy"), "--out", str(out), "--checkpoint",
                 str(weights), "--aspect", "9/16", "--fps", "25"]) == 0
    with np.load(out, allow_pickle=False) as z:
        assert z["joints"].shape == (40, 21, 3) and z["global_quats"].shape == (40, 21, 4)
        assert z["local_6d"].shape == (40, 22, 6) and z["root_translation"].shape == (40, 3)
        assert z["valid"].tolist() == [i not in (5, 6, 7, 12) for i in range(40)]
        assert float(z["aspect"]) == pytest.approx(9 / 16) and float(z["fps"]) == 25
        assert int(z["coverage_gaps"]) == 2 and np.isfinite(z["joints"]).all()
    assert "40 frames" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["clip.npz"]  # no temp files left


def test_folder_mode_and_numpy_backend(tmp_path, weights):
    src = tmp_path / "in"
    src.mkdir()
    for i, n in enumerate((10, 3)):
        np.save(src / f"take{i}.npy", landmarks(n, seed=i))
    (src / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    for backend in ("torch", "numpy"):
        assert main(["predict", str(src), "--out", str(out), "--checkpoint", str(weights),
                     "--backend", backend]) == 0
        assert sorted(p.name for p in out.iterdir()) == ["take0.npz", "take1.npz"]
        with np.load(out / "take1.npz") as z:
            assert z["joints"].shape == (3, 21, 3)


def test_clear_errors(tmp_path, weights, capsys):
    def err(*argv) -> str:
        assert main(["predict", *argv, "--checkpoint", str(weights)]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines and lines[0].startswith("blaze2cap predict: error:")
        return lines[0]

    out = str(tmp_path / "o.npz")
    assert "not found" in err(str(tmp_path / "missing.npy"), "--out", out)
    (tmp_path / "a.txt").write_text("x")
    assert "not a .npy" in err(str(tmp_path / "a.txt"), "--out", out)
    np.save(tmp_path / "bad.npy", np.zeros((5, 33, 3), np.float32))
    assert "shape" in err(str(tmp_path / "bad.npy"), "--out", out)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert "refused" in err(str(tmp_path / "obj.npy"), "--out", out)
    (tmp_path / "pick.npy").write_bytes(pickle.dumps([1, 2, 3]))
    assert "pickle" in err(str(tmp_path / "pick.npy"), "--out", out)
    np.save(tmp_path / "empty.npy", np.zeros((0, 33, 10), np.float32))
    assert "no frames" in err(str(tmp_path / "empty.npy"), "--out", out)
    np.save(tmp_path / "ok.npy", landmarks(4))
    assert ".npz" in err(str(tmp_path / "ok.npy"), "--out", str(tmp_path / "o.txt"))
    assert not (tmp_path / "o.npz").exists()
    # a bad file in a folder is reported, the others are still written
    d = tmp_path / "mix"
    d.mkdir()
    np.save(d / "good.npy", landmarks(4))
    np.save(d / "wrong.npy", np.zeros((2, 3)))
    assert main(["predict", str(d), "--out", str(tmp_path / "mo"), "--checkpoint", str(weights)]) == 2
    assert "wrong.npy" in capsys.readouterr().err
    assert (tmp_path / "mo" / "good.npz").is_file()
    with pytest.raises(SystemExit):
        main(["predict", str(tmp_path / "ok.npy"), "--out", out, "--aspect", "16/0"])
