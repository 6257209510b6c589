"""blaze2cap crossval: every fold holds out one whole motion, a finished fold is never redone,
the table comes from the folds' evaluations, and bad options fail with one line."""
import json
import os

import pytest

from training import crossval
from training.cli import main

SEQS = "S1_freestyle1,S2_freestyle1"


def _argv(tc, out, *extra):
    return ["crossval", "--totalcapture", str(tc), "--out", str(out), "--cameras", "1",
            "--sequences", SEQS, "--config", "tiny", "--max-steps", "2", *extra]


def test_two_folds_run_resume_and_table(totalcapture_dir, tmp_path, capsys):
    out = tmp_path / "cv"
    assert main(_argv(totalcapture_dir, out)) == 0
    summary = json.loads((out / "crossval.json").read_text())
    assert list(summary["folds"]) == ["S1_freestyle1", "S2_freestyle1"]
    for seq, row in summary["folds"].items():
        m = row["real"]
        assert m["frames"] > 100 and 0 < m["pa_mpjpe_mm"] < 1000 and 0 < m["mpjpe_mm"] < 2000
        res = json.loads((out / seq / "real" / "eval.json").read_text())
        # the held-out motion is the fold's only test sequence, on all (here: the one) cameras
        assert res["entries"] == [f"blaze_{seq}_cam1_seg0_s1_o0"]
        assert not (out / seq / "real" / "data").exists()  # deleted after evaluation
    assert summary["mean"]["real"]["mpjpe_mm"] == pytest.approx(
        sum(r["real"]["mpjpe_mm"] for r in summary["folds"].values()) / 2)
    table = (out / "crossval.md").read_text()
    assert "| S1_freestyle1 |" in table and "mean over folds" in table

    # a second run redoes nothing: every fold has its evaluation
    stamp = {s: (out / s / "real" / "eval.json").stat().st_mtime_ns for s in summary["folds"]}
    capsys.readouterr()
    assert main(_argv(totalcapture_dir, out)) == 0
    assert {s: (out / s / "real" / "eval.json").stat().st_mtime_ns for s in stamp} == stamp
    assert "blaze2cap train" not in capsys.readouterr().out

    # losing one fold's evaluation redoes that fold only (its run resumes from last.pt)
    (out / "S2_freestyle1" / "real" / "eval.json").unlink()
    assert main(_argv(totalcapture_dir, out, "--keep-data")) == 0
    assert (out / "S2_freestyle1" / "real" / "eval.json").is_file()
    assert (out / "S2_freestyle1" / "real" / "data").is_dir()
    assert (out / "S1_freestyle1" / "real" / "eval.json").stat().st_mtime_ns == stamp["S1_freestyle1"]


def test_summary_change_and_table_with_two_arms():
    m = lambda a, b: {"frames": 10, "mpjpe_mm": a, "pa_mpjpe_mm": b,  # noqa: E731
                      "naive_mpjpe_mm": 140.0, "naive_pa_mpjpe_mm": 80.0}
    s = crossval.summarize({"A": {"real": m(100.0, 60.0), "engine": m(80.0, 57.0)},
                            "B": {"real": m(50.0, 40.0), "engine": m(60.0, 40.0)}})
    assert s["folds"]["A"]["change_pct"]["mpjpe_mm"] == pytest.approx(-20.0)
    assert s["folds"]["B"]["change_pct"]["pa_mpjpe_mm"] == pytest.approx(0.0)
    assert s["mean"]["engine"]["mpjpe_mm"] == pytest.approx(70.0)
    assert s["mean"]["change_pct"]["mpjpe_mm"] == pytest.approx(100 * (70 - 75) / 75)
    table = crossval.format_table(s, ("real", "engine"))
    assert "| A | 10 | 140.0 / 80.0 | 100.0 / 60.0 | 80.0 / 57.0 | -20.0 % / -5.0 % |" in table


@pytest.mark.parametrize("extra, message", [
    (["--folds", "S3_walking1"], "no real BlazePose data for fold(s) S3_walking1"),
    (["--arms", "engine"], "the engine arm needs --engine DIR"),
    (["--arms", "both"], "--arms takes real and/or engine"),
    (["--cameras", "one"], "--cameras must be comma-separated numbers"),
])
def test_bad_options_fail_with_one_line(totalcapture_dir, tmp_path, capsys, extra, message):
    assert main(_argv(totalcapture_dir, tmp_path / "cv", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "cv" / "crossval.json").exists()


def test_engine_share_goes_to_the_engine_arm_only(totalcapture_dir, tmp_path, monkeypatch):
    calls = []

    def fake_cli(argv):
        calls.append(argv)
        if argv[0] == "evaluate":
            path = argv[argv.index("--json") + 1]
            os.makedirs(os.path.dirname(path), exist_ok=True)
            m = {"mpjpe_mm": 1.0, "pa_mpjpe_mm": 1.0}
            overall = {"frames": 10, "methods": {"model": m, "blazepose": m}}
            with open(path, "w") as f:
                json.dump({"subsets": {"tracked": {"overall": overall}}}, f)

    monkeypatch.setattr(crossval, "_cli", fake_cli)
    (tmp_path / "eng").mkdir()
    assert main(_argv(totalcapture_dir, tmp_path / "cv", "--folds", "S1_freestyle1",
                      "--engine", str(tmp_path / "eng"), "--set", "train.engine_share=0.25",
                      "--set", "train.lr=0.001")) == 0
    trains = {c[c.index("--out") + 1].split("/")[-2]: c for c in calls if c[0] == "train"}
    assert set(trains) == {"real", "engine"}
    assert "train.engine_share=0.25" in trains["engine"]
    assert "train.engine_share=0.25" not in trains["real"] and "train.lr=0.001" in trains["real"]
