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


def test_recommended_smoothing_travels_with_the_weights(tmp_path):
    from engine.inference import InferenceConfig, Predictor
    torch.manual_seed(0)
    model = MotionTransformer(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64)).eval()
    src = tmp_path / "a.safetensors"
    export_weights(model, src)
    out = tmp_path / "b.safetensors"
    assert main(["export", str(src), "--out", str(out), "--smoothing", "1.5,0.3"]) == 0
    assert Predictor.from_checkpoint(src).config.smoothing is None
    sm = Predictor.from_checkpoint(out).config.smoothing
    assert (sm.min_cutoff, sm.beta) == (1.5, 0.3)
    assert Predictor.from_checkpoint(out, config=InferenceConfig()).config.smoothing is None
