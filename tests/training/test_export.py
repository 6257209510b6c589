import pytest
import torch

from engine.checkpoint import export_weights, load_model
from engine.model import ModelConfig, MotionTransformer
from training.cli import main


def test_export_round_trip_and_bad_suffix(tmp_path, capsys):
    torch.manual_seed(0)
    model = MotionTransformer(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64)).eval()
    src = tmp_path / "a.safetensors"
    export_weights(model, src, {"step": 7})
    out = tmp_path / "b.safetensors"
    assert main(["export", str(src), "--out", str(out), "--note", "test"]) == 0
    again, meta = load_model(out)
    x = torch.randn(1, 5, 25, 18)
    assert torch.equal(again(x), model(x)) and meta["note"] == "test" and meta["step"] == 7
    assert main(["export", str(src), "--out", str(tmp_path / "c.pt")]) == 2
    assert "must end in .safetensors" in capsys.readouterr().err


def _tiny_weights(tmp_path):
    """A small random model exported as tmp_path/a.safetensors (no smoothing stored)."""
    torch.manual_seed(0)
    model = MotionTransformer(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64)).eval()
    src = tmp_path / "a.safetensors"
    export_weights(model, src)
    return src


def test_recommended_smoothing_travels_with_the_weights(tmp_path):
    from engine.inference import InferenceConfig, Predictor
    src = _tiny_weights(tmp_path)
    out = tmp_path / "b.safetensors"
    assert main(["export", str(src), "--out", str(out), "--smoothing", "1.5,0.3"]) == 0
    assert Predictor.from_checkpoint(src).config.smoothing is None
    sm = Predictor.from_checkpoint(out).config.smoothing
    assert (sm.min_cutoff, sm.beta) == (1.5, 0.3)
    assert Predictor.from_checkpoint(out, config=InferenceConfig()).config.smoothing is None


def test_per_slot_smoothing_travels_with_the_weights_and_bad_text_is_one_line(tmp_path, capsys):
    from engine.inference import format_smoothing, parse_smoothing, Predictor
    from engine.skeleton import SLOT_NAMES
    cfg = parse_smoothing("4,0.1,Hips=2.5,Shoulder=10,LeftForeArm=2")
    assert (cfg.min_cutoff, cfg.beta) == (4.0, 0.1)
    names = {SLOT_NAMES[i]: c for i, c in cfg.vector_cutoffs}
    assert names == {"Hips": 2.5, "RightShoulder": 10.0, "LeftShoulder": 10.0,
                     "LeftForeArm": 2.0}
    assert parse_smoothing(format_smoothing(cfg)) == cfg
    for bad in ("4", "4,x", "4,0.1,Elbow=3", "4,0.1,Hips", "4,0.1,Hips=0", "-1,0.1"):
        with pytest.raises(ValueError, match="MIN_CUTOFF,BETA"):
            parse_smoothing(bad)
    src = _tiny_weights(tmp_path)
    out = tmp_path / "b.safetensors"
    assert main(["export", str(src), "--out", str(out), "--smoothing", "4,0.1,Hips=2.5"]) == 0
    sm = Predictor.from_checkpoint(out).config.smoothing
    assert sm.vector_cutoffs == ((SLOT_NAMES.index("Hips"), 2.5),) and sm.min_cutoff == 4.0
    assert main(["export", str(src), "--out", str(out), "--smoothing", "4,0.1,Elbow=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown output slot 'Elbow'" in err and "\n" not in err


def test_invalid_per_slot_smoothing_in_the_metadata_is_a_checkpoint_error():
    from engine.errors import CheckpointError
    from engine.inference import recommended_config
    for slots in ({"Elbow": 3.0}, {"Hips": -1.0}, ["Hips"], {"Hips": "fast"}):
        with pytest.raises(CheckpointError, match="smoothing setting is invalid"):
            recommended_config({"smoothing": {"min_cutoff": 4, "beta": 0.1,
                                              "slot_min_cutoff": slots}})
    ok = recommended_config({"smoothing": {"min_cutoff": 4, "beta": 0.1,
                                           "slot_min_cutoff": {"Hips": 2.5}}})
    assert ok.smoothing.vector_cutoffs == ((1, 2.5),)
