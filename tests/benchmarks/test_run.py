"""``benchmarks/run.py --quick``: the table and the JSON hold every figure (structure only)."""
from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KEYS = ["engine_batch_fps", "stream_p50_ms", "stream_p99_ms", "keys_s", "extract_fps",
        "extract_full_fps", "animate_fps", "animate_over_extract", "rss_predict_mb",
        "rss_animate_mb", "train_cpu_samples_s", "train_cuda_samples_s"]


@pytest.mark.slow
def test_quick_benchmark_prints_one_table_and_writes_it_as_json(tmp_path):
    pytest.importorskip("bpy")
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    proc = subprocess.run([sys.executable, "benchmarks/run.py", "--quick", "--json", str(out),
                           "--markdown", str(md)], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    figures = {f["key"]: f for f in data["figures"]}
    assert list(figures) == KEYS
    for key, f in figures.items():
        if key == "train_cuda_samples_s" and f["value"] is None:
            assert f["runs"] == 0 and "no CUDA" in f["note"]
            continue
        assert math.isfinite(f["value"]) and f["value"] > 0 and f["runs"] >= 1, key
        assert f["value"] == pytest.approx(statistics.median(f["values"])), key
    ratio = figures["animate_over_extract"]["value"]
    assert ratio == pytest.approx(figures["animate_fps"]["value"]
                                  / figures["extract_fps"]["value"])
    machine = data["machine"]
    for key in ("cpu", "cores", "torch", "numpy", "bpy", "mediapipe", "torch_threads",
                "load_before", "load_after", "weights"):
        assert key in machine
    assert machine["quick"] is True
    # One table on stdout (as in the JSON), every figure a row, the machine in its header.
    assert proc.stdout == data["table"]
    lines = proc.stdout.splitlines()
    assert machine["cpu"] in lines[0] and f"torch {machine['torch']}" in lines[0]
    for f in data["figures"]:
        assert sum(line.startswith(f["label"]) for line in lines) == 1
    rows = [line for line in md.read_text().splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(KEYS)  # header + one row per figure
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "bench.md"]


def test_only_streaming_runs_that_section_and_leaves_the_results_file_alone(tmp_path):
    results = REPO / "benchmarks" / "results.json"
    before = results.read_bytes() if results.exists() else None
    proc = subprocess.run([sys.executable, "benchmarks/run.py", "--quick", "--only", "streaming"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("Streaming latency")]
    assert len(rows) == 2 and "NumPy single-frame forward" in rows[0]
    assert "throughput" not in proc.stdout and "Training" not in proc.stdout
    assert (results.read_bytes() if results.exists() else None) == before
