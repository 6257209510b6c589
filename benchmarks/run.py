"""Blaze2Cap speed and memory benchmark (``make bench``): one table, also written as JSON.

    .venv/bin/python benchmarks/run.py [--json benchmarks/results.json] [--markdown F.md]
                                       [--runs 5] [--threads 1] [--weights W] [--quick]
                                       [--only SECTION ...]   (e.g. --only streaming)

Figures (each the median of several runs; the table says how many):

* engine batch throughput, CPU, frames/s: ``Predictor.predict`` on a 10,000-frame synthetic
  landmark sequence (features, network, the weights' output smoothing, gap bridging, conversion: landmarks in,
  Prediction out), with all cores as `predict` uses them;
* streaming latency per frame, p50 and p99, ms: ``StreamingPredictor.push`` frame by frame
  (after a window of context), wall time and CPU time of the thread;
* extract-only and end-to-end animate speed, frames/s, on the same real video
  (``capture.samples.sample_video("sports2d")``), runs interleaved, in this process (imports
  done before the clocks start), and their ratio, with BlazePose's default heavy model; and
  extract-only with the full model (``--model full``, Live's);
* seconds to key 10,000 frames x 22 bones into Blender (``blaze2cap_addon.scene.write_action``);
* peak memory (max RSS) of ``blaze2cap predict`` and of ``blaze2cap animate --landmarks`` on
  216,000 frames (an hour at 60 fps) of synthetic landmarks, each in its own process (read
  with ``resource.getrusage(RUSAGE_CHILDREN)`` in a wrapper process);
* training samples/s (``engine.train``, the default model and recipe, 64-frame windows) on
  the CPU, and on CUDA when there is one.

The network is the shipped weights when present, else a randomly initialised model of the
default size (the same computation). ``--quick`` shrinks every size to check the script
(``tests/benchmarks/test_run.py``), not the machine. Timings on a loaded machine are noisy:
the load average before and after is part of the output.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_JSON = REPO / "benchmarks" / "results.json"


@dataclass(frozen=True)
class Sizes:
    batch_frames: int = 10_000       # engine throughput sequence
    stream_frames: int = 1_000       # streaming latency frames per run
    video_end: int | None = None     # frames of the sample video (None: all 230)
    video_runs: int = 3
    key_frames: int = 10_000         # keyframe writing
    rss_frames: int = 216_000        # peak-memory runs (an hour at 60 fps)
    rss_runs: int = 1
    train_batch: int = 64            # CPU training batch (windows of 64 frames)
    train_windows: int = 5           # measured windows of 2 steps (after one warm-up window)
    tiny_model: bool = False


QUICK = Sizes(batch_frames=600, stream_frames=100, video_end=12, video_runs=1,
              key_frames=500, rss_frames=3_000, train_batch=4, train_windows=2,
              tiny_model=True)


@dataclass
class Figure:
    key: str                         # stable name (JSON)
    label: str                       # table row
    value: float | None              # None: not measured on this machine
    unit: str
    runs: int
    values: list = field(default_factory=list)
    note: str = ""

    def cell(self) -> str:
        v = self.value
        if v is None:
            return "n/a"
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def median(xs) -> float:
    return float(np.median(np.asarray(xs, dtype=np.float64)))


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
#: The benchmark's sections, in order (``--only``).
SECTIONS = ("batch", "streaming", "keys", "video", "memory", "training")


def fill_landmarks(out: np.ndarray, seed: int = 0, gaps=((0, 2), (500, 520))) -> np.ndarray:
    """Smoothly moving synthetic BlazePose landmarks written into ``out`` (F, 33, 10) chunk by
    chunk (it may be a memory map), with no-detection gaps and a track restart after each."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.3, 0.7, size=(1, 33, 10))
    period = rng.uniform(20, 60, size=(1, 33, 10))
    n = len(out)
    for a in range(0, n, 8192):
        t = np.arange(a, min(a + 8192, n))[:, None, None]
        lm = base + 0.05 * np.sin(2 * np.pi * t / period)
        lm[:, :, 0:3] -= 0.5
        lm[:, :, 4] = lm[:, :, 9] = 1.0
        out[a:a + len(t)] = lm
    for s, e in gaps:
        if e < n:
            out[s:e] = 0
            out[e, :, 4] = out[e, :, 9] = 0
    return out


def write_landmark_file(path: Path, frames: int, fps: float = 60.0) -> Path:
    """A synthetic landmark .npy with the sidecar ``blaze2cap extract`` would write."""
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(frames, 33, 10))
    fill_landmarks(arr)
    detected = int((arr.reshape(frames, -1) != 0).any(axis=1).sum())
    arr.flush()
    del arr
    Path(str(path) + ".json").write_text(json.dumps({
        "source_video": "synthetic", "fps": fps, "width": 1920, "height": 1080,
        "aspect": 1920 / 1080, "frames": frames, "detected": detected, "start": 0}))
    return path


def make_weights(folder: Path, checkpoint: Path | None, tiny: bool) -> tuple[Path, str]:
    """(weights file, description): the given / shipped weights, else a random model."""
    from engine.inference import DEFAULT_WEIGHTS

    if checkpoint is not None:
        return checkpoint, f"{checkpoint.parent.name}/{checkpoint.name}"
    if DEFAULT_WEIGHTS.is_file() and not tiny:
        return DEFAULT_WEIGHTS, "shipped weights"
    import torch

    from engine.checkpoint import export_weights
    from engine.model import ModelConfig, MotionTransformer

    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64) if tiny else ModelConfig()
    path = folder / "random.safetensors"
    export_weights(MotionTransformer(cfg).eval(), path)
    return path, ("tiny random model" if tiny else "random model of the default size")


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------
def bench_batch(weights: Path, sizes: Sizes, runs: int) -> list[Figure]:
    from engine.inference import Predictor

    import torch

    predictor = Predictor.from_checkpoint(weights, backend="torch")
    lm = fill_landmarks(np.empty((sizes.batch_frames, 33, 10), np.float32))
    # A batch job uses the whole machine, as `blaze2cap predict` does (torch's default
    # threads); the other figures keep --threads.
    threads, cores = torch.get_num_threads(), os.cpu_count() or 1
    torch.set_num_threads(cores)
    try:
        predictor.predict(lm[:1000])  # warm-up
        fps = []
        for _ in range(runs):
            t = time.perf_counter()
            predictor.predict(lm, fps=30.0)
            fps.append(len(lm) / (time.perf_counter() - t))
    finally:
        torch.set_num_threads(threads)
    return [Figure("engine_batch_fps", f"Engine batch throughput, CPU ({len(lm):,} frames)",
                   median(fps), "frames/s", runs, fps,
                   f"{cores} torch threads, with the weights' output smoothing")]


def bench_streaming(weights: Path, sizes: Sizes, runs: int) -> list[Figure]:
    """``StreamingPredictor.push`` latency, wall and CPU time of the calling thread."""
    from engine.inference import Predictor, frame_network

    predictor = Predictor.from_checkpoint(weights, backend="torch")
    path = ("NumPy single-frame forward" if frame_network(predictor.backend) is not None
            else f"{predictor.backend.name} backend")
    stream_lm = fill_landmarks(np.empty((sizes.stream_frames + 64, 33, 10), np.float32), seed=1)
    p50, p99, cpu50, cpu99 = [], [], [], []
    for _ in range(runs):
        stream = predictor.stream(fps=30.0)
        for f in stream_lm[:64]:  # a window of context first (also: caches warm)
            stream.push(f)
        wall, cpu = [], []
        for f in stream_lm[64:]:
            t, c = time.perf_counter(), time.thread_time()
            stream.push(f)
            wall.append(1e3 * (time.perf_counter() - t))
            cpu.append(1e3 * (time.thread_time() - c))
        p50.append(float(np.percentile(wall, 50)))
        p99.append(float(np.percentile(wall, 99)))
        cpu50.append(float(np.percentile(cpu, 50)))
        cpu99.append(float(np.percentile(cpu, 99)))
    note = f"{sizes.stream_frames:,} frames a run, {path}; CPU time of the thread: "
    return [Figure("stream_p50_ms", "Streaming latency per frame, p50", median(p50), "ms",
                          runs, p50, note + f"p50 {median(cpu50):.2f} ms"),
                   Figure("stream_p99_ms", "Streaming latency per frame, p99", median(p99), "ms",
                          runs, p99, note + f"p99 {median(cpu99):.2f} ms")]


def bench_video(weights: Path, sizes: Sizes, folder: Path) -> list[Figure]:
    import bpy  # noqa: F401  (imported before the clocks start, like torch and mediapipe)

    from capture.blazepose import PoseConfig, extract_landmarks
    from capture.samples import sample_video
    from training.animate import animate

    video = sample_video("sports2d")
    full = PoseConfig(model="full")
    for config in (PoseConfig(), full):  # MediaPipe's first-run set-up of each model
        extract_landmarks(video, folder / "warm-up.npy", end=10, config=config)
    extract_fps, full_fps, animate_fps, frames = [], [], [], 0
    for i in range(sizes.video_runs):  # interleaved: all see the same machine load
        t = time.perf_counter()
        res = extract_landmarks(video, folder / f"x{i}.npy", end=sizes.video_end)
        extract_fps.append(res.frames / (time.perf_counter() - t))
        t = time.perf_counter()
        res = extract_landmarks(video, folder / f"f{i}.npy", end=sizes.video_end, config=full)
        full_fps.append(res.frames / (time.perf_counter() - t))
        t = time.perf_counter()
        summary = animate(video, checkpoint=weights, end=sizes.video_end)
        animate_fps.append(summary["frames"] / (time.perf_counter() - t))
        frames = summary["frames"]
    e, a = median(extract_fps), median(animate_fps)
    n = sizes.video_runs
    note = f"{video.name} (sports2d), {frames} frames"
    return [Figure("extract_fps", "Extract only (BlazePose heavy), real video", e, "frames/s", n,
                   extract_fps, note),
            Figure("extract_full_fps", "Extract only (BlazePose full), same video",
                   median(full_fps), "frames/s", n, full_fps, "extract --model full; Live's model"),
            Figure("animate_fps", "End-to-end animate, same video", a, "frames/s", n,
                   animate_fps, "BlazePose + engine + retarget + Blender keys"),
            Figure("animate_over_extract", "Animate / extract speed", a / e, "ratio", n,
                   [x / y for x, y in zip(animate_fps, extract_fps)], "target >= 0.85")]


def bench_keys(sizes: Sizes, runs: int) -> Figure:
    import bpy

    from blaze2cap_addon import scene
    from engine import retarget as rt

    rig = rt.build_rig()
    n = sizes.key_frames
    rng = np.random.default_rng(0)
    q = rng.normal(size=(n, rt.NUM_BONES, 4))
    anim = rt.BoneAnimation(local_quats=q / np.linalg.norm(q, axis=-1, keepdims=True),
                            root_location=rng.normal(size=(n, 3)),
                            world_joints=np.zeros((n, 21, 3)), world_rots=np.zeros((n, 21, 3, 3)),
                            placement=rt.Placement(np.eye(3), np.array([0.0, -1.0, 0.0]),
                                                   np.zeros(3)), rig=rig)
    secs = []
    for _ in range(runs):
        bpy.ops.wm.read_factory_settings(use_empty=True)
        obj = scene.build_armature(bpy.context, "bench", rig)
        t = time.perf_counter()
        scene.write_action(obj, anim, 1, "bench")
        secs.append(time.perf_counter() - t)
    return Figure("keys_s", f"Key {n:,} frames x 22 bones in Blender", median(secs), "s", runs,
                  secs, "scene.write_action (91 F-curves, bulk)")


_RSS_WRAPPER = """
import resource, subprocess, sys, time
t = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(code, kb / (1 << 20 if sys.platform == "darwin" else 1 << 10), time.perf_counter() - t)
"""


def peak_rss_mb(cmd: list[str], threads: int) -> tuple[float, float]:
    """(max RSS in MB, wall seconds) of ``cmd`` run in a wrapper process of its own."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", _RSS_WRAPPER, *cmd], capture_output=True,
                         text=True, cwd=REPO, env=env, check=True).stdout.split()
    code, mb, secs = int(out[0]), float(out[1]), float(out[2])
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed with exit code {code}")
    return mb, secs


def bench_rss(weights: Path, sizes: Sizes, folder: Path, threads: int) -> list[Figure]:
    from capture.samples import sample_video

    lm = write_landmark_file(folder / "long.npy", sizes.rss_frames)
    cli = [sys.executable, "-m", "training.cli"]
    jobs = {
        "predict": cli + ["predict", str(lm), "--out", str(folder / "long.npz"),
                          "--checkpoint", str(weights), "--fps", "60"],
        "animate": cli + ["animate", str(sample_video("sports2d")), "--landmarks", str(lm),
                          "--checkpoint", str(weights)],
    }
    figs = []
    for name, cmd in jobs.items():
        mbs, secs = zip(*(peak_rss_mb(cmd, threads) for _ in range(sizes.rss_runs)))
        figs.append(Figure(f"rss_{name}_mb",
                           f"Peak memory, {name}, {sizes.rss_frames:,} frames", median(mbs),
                           "MB", sizes.rss_runs, list(mbs),
                           f"own process, {median(secs):.0f} s wall; target < 1,536 MB"))
    return figs


class _Windows:
    """In-memory training windows shaped like ``engine.data.WindowDataset`` items."""

    def __init__(self, n: int, window: int = 64, seed: int = 0):
        from engine.kinematics import rotations_to_slots
        from engine.rotations import axis_angle_to_matrix

        rng = np.random.default_rng(seed)
        rots = axis_angle_to_matrix(rng.normal(scale=0.4, size=(window, 21, 3)))
        pos = np.cumsum(rng.normal(scale=0.005, size=(window, 3)), 0) + [0.0, 0.0, 4.0]
        target = rotations_to_slots(rots, pos)
        self.n = n
        self.features = rng.normal(size=(n, window, 25, 18)).astype(np.float32)
        self.target = np.broadcast_to(target, (n,) + target.shape)
        self.window = window

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        import torch

        w = self.window
        return {"features": torch.from_numpy(self.features[i]),
                "valid": torch.ones(w, dtype=torch.bool),
                "target": torch.from_numpy(np.array(self.target[i])),
                "weight": torch.ones(w), "offsets": torch.full((21, 3), 0.1),
                "has_root_rotation": torch.tensor(True)}


def bench_training(sizes: Sizes, folder: Path) -> list[Figure]:
    import csv

    import torch

    from engine.losses import LossConfig
    from engine.model import ModelConfig
    from engine.train import TrainConfig, train

    model_cfg = (ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64) if sizes.tiny_model
                 else ModelConfig())
    devices = [("cpu", sizes.train_batch)]
    if torch.cuda.is_available():
        devices.append(("cuda", 512))
    figs = []
    for device, batch in devices:
        steps = 2 * (sizes.train_windows + 1)
        data = _Windows(batch * (steps + 1))
        stats = (torch.zeros(450), torch.ones(450))
        out = folder / f"train-{device}"
        amp = device == "cuda"  # fp16 there; a CPU without bf16 units is fastest in fp32
        train(TrainConfig(batch_size=batch, max_steps=steps, log_every=2, eval_every=10**9,
                          warmup_steps=1, device=device, amp=amp), model_cfg, LossConfig(),
              None, out, train_set=data, stats=stats)
        with open(out / "metrics.csv", newline="") as f:
            rates = [float(r["samples_per_s"]) for r in csv.DictReader(f)][1:]  # after warm-up
        name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
        figs.append(Figure(f"train_{device}_samples_s", f"Training, {name}", median(rates),
                           "samples/s", len(rates), rates,
                           f"batch {batch} x 64 frames, {'fp16 AMP' if amp else 'fp32'}, "
                           "2 steps a run"))
    if not torch.cuda.is_available():
        figs.append(Figure("train_cuda_samples_s", "Training, CUDA", None, "samples/s",
                           0, [], "no CUDA device on this machine"))
    return figs


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------
def machine(threads: int, weights: str) -> dict:
    import importlib.metadata as md

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass

    def version(name: str) -> str:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return "-"
    import torch

    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "mediapipe": version("mediapipe"), "bpy": version("bpy"),
            "torch_threads": threads,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "weights": weights}


def render_table(figures: list[Figure], info: dict, markdown: bool = False) -> str:
    head = (f"Blaze2Cap benchmark, {info['date']}: {info['cpu']}, {info['cores']} cores, "
            f"torch {info['torch']} ({info['torch_threads']} thread; the batch row uses all cores), numpy {info['numpy']}, "
            f"bpy {info['bpy']}, mediapipe {info['mediapipe']}; {info['weights']}; load "
            f"average {info['load_before']:.2f} before, {info['load_after']:.2f} after")
    rows = [(f.label, f.cell(), f.unit, str(f.runs), f.note) for f in figures]
    cols = ("figure", "value", "unit", "runs", "notes")
    if markdown:
        lines = [head, "", "| " + " | ".join(cols) + " |", "|---|---:|---|---:|---|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + "\n"
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    fmt = "  ".join(f"{{:{'>' if i in (1, 3) else '<'}{w}}}" for i, w in enumerate(widths))
    lines = [head, "", fmt.format(*cols), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None,
                        help=f"where to write the JSON (default: {DEFAULT_JSON.relative_to(REPO)}"
                             ", not written with --only unless given)")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="also write the table as Markdown (for the README)")
    parser.add_argument("--runs", type=int, default=5, help="runs per fast figure (median)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: one core of a shared 2-core box)")
    parser.add_argument("--checkpoint", "--weights", type=Path, default=None,
                        help="weights, .safetensors or a torch .pt checkpoint (default: the "
                             "shipped ones, else a random default model)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, one run each: checks the script, not the machine")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=None, metavar="SECTION",
                        help=f"run only these sections ({', '.join(SECTIONS)}), e.g. "
                             "'--only streaming' (seconds instead of minutes)")
    args = parser.parse_args(argv)
    if args.json is None and args.only is None:
        args.json = DEFAULT_JSON
    sizes = QUICK if args.quick else Sizes()
    runs = 1 if args.quick else max(1, args.runs)

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from capture.video import quiet_native_logs

    quiet_native_logs()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="blaze2cap-bench-") as tmp:
        folder = Path(tmp)
        weights, described = make_weights(folder, args.checkpoint, sizes.tiny_model)
        steps: list[tuple[str, Callable[[], list[Figure]]]] = [
            ("batch", lambda: bench_batch(weights, sizes, runs)),
            ("streaming", lambda: bench_streaming(weights, sizes, runs)),
            ("keys", lambda: [bench_keys(sizes, runs)]),
            ("video", lambda: bench_video(weights, sizes, folder)),
            ("memory", lambda: bench_rss(weights, sizes, folder, args.threads)),
            ("training", lambda: bench_training(sizes, folder)),
        ]
        assert [name for name, _ in steps] == list(SECTIONS)
        for name, step in steps:
            if args.only is not None and name not in args.only:
                continue
            print(f"[bench] {name}...", file=sys.stderr, flush=True)
            figures += step()
    info = machine(args.threads, described) | {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_before": load_before,
        "load_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
        "quick": args.quick}
    table = render_table(figures, info)
    print(table, end="")
    from engine.atomic import atomic_write_bytes, write_json_atomic

    if args.json is not None:
        write_json_atomic(args.json, {"machine": info, "figures": [asdict(f) for f in figures],
                                      "table": table})
    if args.markdown is not None:
        text = render_table(figures, info, markdown=True).encode("utf-8")
        atomic_write_bytes(args.markdown, lambda f: f.write(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
