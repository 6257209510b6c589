"""The robustness table: every bad input we tried and what the user gets.

One :class:`Case` per row of ``docs/robustness.md``. The tests in this folder run each case
and compare what the user gets with its row (error messages exactly, with the paths filled
in), and ``test_robustness_table.py`` checks that the table in ``docs/robustness.md`` is
``render()`` of these cases and that every test named in it exists, so the table cannot
drift from the behaviour. After changing a case, regenerate the table with

    .venv/bin/python tests/robustness/robustness_cases.py --write

Message templates use ``{video}``, ``{name}`` (file name), ``{file}``, ``{ckpt}`` and
``{root}`` (dataset folder); the table shows them in capitals.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "robustness.md"
BEGIN, END = "<!-- robustness-table:begin -->", "<!-- robustness-table:end -->"

VIDEOS = "tests/robustness/test_bad_videos.py"
ARRAYS = "tests/robustness/test_bad_arrays.py"
DATASETS = "tests/robustness/test_bad_datasets.py"
CHECKPOINTS = "tests/robustness/test_bad_checkpoints.py"
WRITES = "tests/robustness/test_atomic_writes.py"
PROPERTIES = "tests/robustness/test_properties.py"
TRAIN = "tests/engine/test_train.py"
CKPT = "tests/engine/test_checkpoint.py"


@dataclass(frozen=True)
class Case:
    key: str
    group: str
    tried: str                 # the bad input, in words
    command: str               # how it is fed
    code: int | None           # exit code of the command (None: not a command-line input)
    cli: str                   # code 2: the error after "blaze2cap CMD: error: "; else what happens
    blender: str = ""          # the Animate operator's error (or what happens); "" = not tried
    tests: tuple[str, ...] = ()

    def cli_line(self, command: str, **paths) -> str:
        """The exact stderr line of a failing command, paths filled in."""
        assert self.code == 2, self.key
        return f"blaze2cap {command}: error: " + self.cli.format(**_strs(paths))

    def message(self, **paths) -> str:
        """The error sentence with paths filled in (CLI without its prefix)."""
        return self.cli.format(**_strs(paths))

    def blender_message(self, **paths) -> str:
        return self.blender.format(**_strs(paths))


def _strs(paths: dict) -> dict:
    return {k: str(v) for k, v in paths.items()}


_V = "`blaze2cap extract VIDEO`"
_A = "`blaze2cap predict FILE --out OUT.npz`"
_T = "`blaze2cap train --data ROOT`"
_P = "`blaze2cap predict ... --checkpoint CKPT`"
_ANIMATE = " Same sentence from `blaze2cap animate VIDEO` (exit 2)."

CASES_LIST: list[Case] = [
    # -- videos ----------------------------------------------------------------------------
    Case("video-missing", "Videos", "a path that does not exist", _V, 2,
         "video file not found: {video}", "video not found: {video}",
         (f"{VIDEOS}::test_bad_video_gives_one_sentence",)),
    Case("video-folder", "Videos", "a folder instead of a file", _V, 2,
         "{video} is a folder, not a video file", "video not found: {video}",
         (f"{VIDEOS}::test_bad_video_gives_one_sentence",)),
    Case("video-empty", "Videos", "a zero-byte file", _V, 2,
         "video file is empty (0 bytes): {video}", "video file is empty (0 bytes): {video}",
         (f"{VIDEOS}::test_bad_video_gives_one_sentence",)),
    Case("video-text", "Videos", "a text file named .mp4", _V, 2,
         "{video} is a text file, not a video", "{video} is a text file, not a video",
         (f"{VIDEOS}::test_bad_video_gives_one_sentence",)),
    Case("video-noise", "Videos", "random bytes named .mp4 (corrupt)", _V, 2,
         "{video} is not a video file OpenCV can read (no known video container format)",
         "{video} is not a video file OpenCV can read (no known video container format)",
         (f"{VIDEOS}::test_bad_video_gives_one_sentence",)),
    Case("video-header", "Videos", "truncated after the container header (no whole frame)", _V,
         2, "no frame of {video} could be decoded: the file is truncated or corrupt, or its "
            "codec 'VP90' is not supported by OpenCV's FFmpeg",
         "no frame of {video} could be decoded: the file is truncated or corrupt, or its "
         "codec 'VP90' is not supported by OpenCV's FFmpeg",
         (f"{VIDEOS}::test_bad_video_gives_one_sentence",)),
    Case("video-no-index", "Videos", "MP4 truncated before its index (moov box at the end)", _V,
         2, "cannot open {video}: it looks like MP4/MOV but its track information is missing, "
            "so the file is truncated or corrupt",
         "cannot open {video}: it looks like MP4/MOV but its track information is missing, "
         "so the file is truncated or corrupt",
         (f"{VIDEOS}::test_bad_video_gives_one_sentence",)),
    Case("video-codec", "Videos", "unsupported codec (AVI with FourCC QQQQ)", _V, 2,
         "cannot open {video}: the AVI file is truncated or corrupt, or its codec 'QQQQ' is "
         "not supported by OpenCV's FFmpeg",
         "cannot open {video}: the AVI file is truncated or corrupt, or its codec 'QQQQ' is "
         "not supported by OpenCV's FFmpeg",
         (f"{VIDEOS}::test_bad_video_gives_one_sentence",)),
    Case("video-no-person", "Videos", "no person at all (5 black frames)", _V, 2,
         "no person was detected in any of the 5 frames of {name}, so no landmarks were "
         "written",
         "no person was detected in any of the 5 frames of {name}, so no landmarks were "
         "written",
         (f"{VIDEOS}::test_bad_video_gives_one_sentence",)),
    Case("video-tiny", "Videos", "tiny resolution (32 x 18, 4 frames)", _V, 2,
         "no person was detected in any of the 4 frames of {name}, so no landmarks were "
         "written",
         "no person was detected in any of the 4 frames of {name}, so no landmarks were "
         "written",
         (f"{VIDEOS}::test_bad_video_gives_one_sentence",)),
    Case("video-range", "Videos", "a start frame past the end (`--start 500` of 4 frames)",
         _V, 2, "start frame 500 is past the end of {name} (4 frames)",
         "start frame 500 is past the end of {name} (4 frames)",
         (f"{VIDEOS}::test_bad_video_gives_one_sentence",)),
    Case("video-model-missing", "Videos",
         "BlazePose's heavy model deleted from mediapipe's folder (or replaced by other bytes)",
         _V, 2, "the BlazePose heavy model is not installed (pose_landmark_heavy.tflite): run "
                "`python -m capture.models install heavy` once (make install does)",
         "the BlazePose heavy model is not installed (pose_landmark_heavy.tflite): run "
         "`python -m capture.models install heavy` once (make install does)",
         (f"{VIDEOS}::test_missing_pose_model_gives_one_sentence",)),
    Case("video-midway", "Videos", "truncated in the middle (5 of 230 frames left)", _V, 0,
         "exit 0: landmarks of the frames that decode (5); warning `NAME ended after 5 frames "
         "although it reports 230: the file may be truncated`", "",
         (f"{VIDEOS}::test_truncated_midway_gives_the_decodable_frames",)),
    Case("video-reenter", "Videos", "the person leaves and re-enters (4 frames, 4 black, 4)",
         _V, 0, "exit 0: one row per frame, zero rows where nobody is visible, track restart "
                "flag on return; prints `12 frames, N with a person`",
         "animates all 12 frames (gaps bridged); reports `Blaze2Cap: animated reenter "
         "(12 frames, a person in N)`",
         (f"{VIDEOS}::test_person_leaves_and_reenters",
          f"{VIDEOS}::test_blender_animates_a_video_with_gaps")),
    Case("video-two-people", "Videos", "two people (the Sports2D demo)", _V, 0,
         "exit 0: BlazePose follows one person per frame (documented in capture.blazepose: "
         "crop to one person when it matters)", "",
         (f"{VIDEOS}::test_two_people_give_one_pose_per_frame",)),
    Case("video-portrait-4k", "Videos", "4K portrait (2160 x 3840, 3 frames)", _V, 0,
         "exit 0: frames downscaled to 720 x 1280 for BlazePose (aspect kept); sidecar aspect "
         "0.5625", "",
         (f"{VIDEOS}::test_4k_portrait_is_downscaled_with_its_aspect",)),
    Case("video-vfr", "Videos", "variable frame rate (6 frames at 30 fps, 6 at 10 fps)", _V, 0,
         "exit 0: every frame, in order, at the container's average 15 fps; warning `NAME has "
         "a variable frame rate (...): frames are used in order at its average 15 fps, so "
         "the timing of the motion is approximate`", "",
         (f"{VIDEOS}::test_variable_frame_rate_uses_the_average_and_warns",)),
    Case("video-fps", "Videos", "a container claiming 2194 fps (or none)", _V, 0,
         "exit 0: 30 fps assumed, warning `NAME: the video reports an implausible 2194.29 "
         "fps, so 30 fps is assumed`; sidecar `fps_is_default: true`", "",
         (f"{VIDEOS}::test_absurd_frame_rate_falls_back_to_30",)),
    # -- gaps ------------------------------------------------------------------------------
    Case("gaps-bridged", "Gaps", "frames without a person (start, short gap, long gap, end)",
         _A, 0, "exit 0: rest pose before the first detection, slerp over gaps up to 0.5 s, "
                "last pose held over longer gaps and at the end; prints `N frames, P% "
                "detected, G gap(s) bridged (I interpolated, H held, R rest pose)` and "
                "stores `coverage_*` in the .npz", "",
         (f"{ARRAYS}::test_gaps_are_bridged_as_documented_and_reported",)),
    Case("gaps-never-a-pose", "Gaps", "all-zero, NaN or huge frames given to the model", _A, 0,
         "exit 0: such frames are masked (valid False, zero features) and never change the "
         "output of the other frames", "",
         (f"{ARRAYS}::test_the_model_never_sees_a_missing_frame_as_a_pose",)),
    # -- arrays ----------------------------------------------------------------------------
    Case("array-shape", "Arrays", "wrong shape (5, 33)", _A, 2,
         "{name}: landmarks must have shape (frames, 33, 10), got (5, 33)", "",
         (f"{ARRAYS}::test_bad_array_gives_one_sentence",)),
    Case("array-dtype", "Arrays", "wrong dtype (strings; bool and complex alike)", _A, 2,
         "{name}: landmarks must be numeric, got dtype <U1", "",
         (f"{ARRAYS}::test_bad_array_gives_one_sentence",)),
    Case("array-objects", "Arrays", "a .npy of Python objects", _A, 2,
         "{name} holds Python objects (a pickle); refused", "",
         (f"{ARRAYS}::test_bad_array_gives_one_sentence",)),
    Case("array-pickle", "Arrays", "a pickle named .npy", _A, 2,
         "{name} is a Python pickle, not a .npy array; refused", "",
         (f"{ARRAYS}::test_bad_array_gives_one_sentence",)),
    Case("array-text", "Arrays", "a text file named .npy", _A, 2,
         "{name} is not a .npy array (it has no NumPy header)", "",
         (f"{ARRAYS}::test_bad_array_gives_one_sentence",)),
    Case("array-empty", "Arrays", "zero frames (0, 33, 10)", _A, 2,
         "{name} holds no frames", "",
         (f"{ARRAYS}::test_bad_array_gives_one_sentence",)),
    Case("array-aspect", "Arrays", "implausible `--aspect 1000`", _A, 2,
         "the aspect ratio (video width / height) must be between 0.01 and 100, got 1000.0",
         "", (f"{ARRAYS}::test_bad_array_gives_one_sentence",)),
    Case("array-focal", "Arrays", "implausible `--focal 0`", _A, 2,
         "the focal length (over the long image side) must be between 0.05 and 50, got 0.0",
         "", (f"{ARRAYS}::test_bad_array_gives_one_sentence",)),
    Case("array-fps", "Arrays", "`--fps 0` (or nan)", _A, 2,
         "fps must be a positive number, got 0.0", "",
         (f"{ARRAYS}::test_bad_array_gives_one_sentence",)),
    Case("array-nan", "Arrays", "NaN / inf values in some frames", _A, 0,
         "exit 0: those frames are invalid and bridged like frames without a person", "",
         (f"{ARRAYS}::test_nan_inf_and_huge_values_are_missing_frames",)),
    Case("array-huge", "Arrays", "huge values (1e9, 3e38, 1e300 as float64)", _A, 0,
         "exit 0: a frame with any value beyond 100 is invalid (no real landmark comes near); "
         "all-invalid input gives the rest pose with 0% detected", "",
         (f"{ARRAYS}::test_nan_inf_and_huge_values_are_missing_frames",)),
    Case("array-single", "Arrays", "a single frame", _A, 0,
         "exit 0: a one-frame prediction (`1 frame, 100.0% detected`)", "",
         (f"{ARRAYS}::test_single_frame_and_other_dtypes",)),
    Case("array-other-dtypes", "Arrays", "int64, uint8, float16, float64 arrays", _A, 0,
         "exit 0: converted to float32, same result as float32", "",
         (f"{ARRAYS}::test_single_frame_and_other_dtypes",)),
    Case("array-property", "Arrays",
         "random shapes, dtypes and values (NaN, inf, huge, zeros, wrong dims) [hypothesis]",
         "`compute_features`, `Predictor.predict`", None,
         "finite outputs of the right shapes and unit quaternions, or an `InputError` "
         "subclass", "",
         (f"{PROPERTIES}::test_features_give_finite_output_or_input_error",
          f"{PROPERTIES}::test_predict_gives_finite_unit_output_or_input_error")),
    # -- datasets --------------------------------------------------------------------------
    Case("dataset-absolute", "Datasets", "map entry with an absolute path", _T, 2,
         "dataset_map.json entry 0 (/etc/passwd) source: absolute path '/etc/passwd' is not "
         "allowed", "", (f"{DATASETS}::test_bad_dataset_gives_one_sentence",)),
    Case("dataset-windows-absolute", "Datasets", "map entry with a Windows drive path", _T, 2,
         "dataset_map.json entry 0 (src/a.npy) target: absolute path 'C:\\\\x.npy' is not "
         "allowed", "", (f"{DATASETS}::test_bad_dataset_gives_one_sentence",)),
    Case("dataset-dotdot", "Datasets", "map entry containing `..`", _T, 2,
         "dataset_map.json entry 0 (../outside.npy) source: path '../outside.npy' contains "
         "'..'", "", (f"{DATASETS}::test_bad_dataset_gives_one_sentence",)),
    Case("dataset-symlink", "Datasets", "map entry that resolves outside the root (symlink)",
         _T, 2, "dataset_map.json entry 0 (src/a.npy) target: path 'link.npy' resolves "
                "outside {root}", "", (f"{DATASETS}::test_bad_dataset_gives_one_sentence",)),
    Case("dataset-missing", "Datasets", "a listed file is missing", _T, 2,
         "1 file(s) listed in {root}/dataset_map.json are missing: entry 0 (src/a.npy) "
         "target tgt/a.npy", "", (f"{DATASETS}::test_bad_dataset_gives_one_sentence",)),
    Case("dataset-shape", "Datasets", "a landmark file of the wrong shape", _T, 2,
         "{root}/src/a.npy must have shape (frames, 33, 10), got (24, 33, 3)", "",
         (f"{DATASETS}::test_bad_dataset_gives_one_sentence",)),
    Case("dataset-length", "Datasets",
         "prepared dataset: landmark and target lengths differ (a damaged dataset)", _T, 2,
         "{root}/src/a.npy has 24 frames but {root}/tgt/a.npy has 20", "",
         (f"{DATASETS}::test_bad_dataset_gives_one_sentence",)),
    Case("dataset-json", "Datasets", "dataset_map.json is not JSON", _T, 2,
         "{root}/dataset_map.json is not valid JSON (Expecting property name enclosed in "
         "double quotes: line 1 column 3 (char 2))", "",
         (f"{DATASETS}::test_bad_dataset_gives_one_sentence",)),
    Case("dataset-seed-hostile", "Datasets", "seed (HF) map entry with `..`",
         "`blaze2cap prepare --hf ROOT`", 2,
         "dataset_map.json entry 2 (../evil.npy) source: path '../evil.npy' contains '..'", "",
         (f"{DATASETS}::test_seed_import_refuses_unsafe_entries_and_trims_lengths",)),
    Case("dataset-seed-trim", "Datasets", "seed (HF) landmark / target lengths differ",
         "`blaze2cap prepare --hf ROOT`", 0,
         "exit 0: trimmed to the shorter, as the seed did; warning `entry 0 (...): 12 landmark "
         "frames but 13 target frames; trimmed to 12` and `trimmed: 1 entries had "
         "landmark/target length mismatches`", "",
         (f"{DATASETS}::test_seed_import_refuses_unsafe_entries_and_trims_lengths",)),
    # -- checkpoints -----------------------------------------------------------------------
    Case("ckpt-safetensors", "Checkpoints", "shipped weights", "`engine.inference`", None,
         "`engine/weights/default.safetensors`: safetensors, loaded without unpickling "
         "anything", "",
         (f"{CHECKPOINTS}::test_shipped_weights_are_safetensors_and_never_unpickled",)),
    Case("ckpt-weights-only", "Checkpoints", "any `torch.load` in the code", "source scan",
         None, "every call passes `weights_only=True`", "",
         (f"{CHECKPOINTS}::test_every_torch_load_is_weights_only",)),
    Case("ckpt-hostile", "Checkpoints", "a pickle payload that would create a file (.pt)", _P, 2,
         "refusing to load {ckpt}: it holds Python objects other than tensors and plain data, "
         "which could run code (it asks for io.open)",
         "refusing to load {ckpt}: it holds Python objects other than tensors and plain data, "
         "which could run code (it asks for io.open)",
         (f"{CHECKPOINTS}::test_hostile_pickle_is_refused_and_runs_nothing",
          f"{CKPT}::test_hostile_pickle_refused_and_runs_nothing")),
    Case("ckpt-hostile-resume", "Checkpoints", "the same payload as a run's last.pt",
         "`blaze2cap train --resume`", 2,
         "refusing to load {ckpt}: it holds Python objects other than tensors and plain data, "
         "which could run code (it asks for io.open)", "",
         (f"{CHECKPOINTS}::test_hostile_pickle_is_refused_and_runs_nothing",)),
    Case("ckpt-pickle-safetensors", "Checkpoints", "a pickle named .safetensors", _P, 2,
         "cannot read weights {ckpt}: the file is truncated or corrupt (Error while "
         "deserializing header: HeaderTooLarge)", "",
         (f"{CHECKPOINTS}::test_hostile_pickle_is_refused_and_runs_nothing",)),
    Case("ckpt-truncated", "Checkpoints", "a training checkpoint cut in half", _P, 2,
         "cannot read checkpoint {ckpt}: the file is truncated or corrupt (PytorchStreamReader "
         "failed reading zip archive: failed finding central directory)", "",
         (f"{CHECKPOINTS}::test_truncated_foreign_and_incompatible_checkpoints",)),
    Case("ckpt-truncated-safetensors", "Checkpoints", "safetensors weights cut in half", _P, 2,
         "cannot read weights {ckpt}: the file is truncated or corrupt (Error while "
         "deserializing header: MetadataIncompleteBuffer)", "",
         (f"{CHECKPOINTS}::test_truncated_foreign_and_incompatible_checkpoints",)),
    Case("ckpt-foreign", "Checkpoints", "somebody else's .pt", _P, 2,
         "{ckpt} is not a Blaze2Cap training checkpoint", "",
         (f"{CHECKPOINTS}::test_truncated_foreign_and_incompatible_checkpoints",)),
    Case("ckpt-incompatible", "Checkpoints", "resume with another model config",
         "`blaze2cap train --resume --set model.d_model=64`", 2,
         "{ckpt} is incompatible with this configuration: d_model (checkpoint 32, now 64)", "",
         (f"{CHECKPOINTS}::test_truncated_foreign_and_incompatible_checkpoints",)),
    Case("ckpt-init-incompatible", "Checkpoints", "fine-tuning from weights of another model",
         "`blaze2cap train --init CKPT --set model.d_model=64`", 2,
         "cannot start from {ckpt}: its model differs from this recipe's: d_model (checkpoint "
         "32, now 64)", "",
         (f"{CHECKPOINTS}::test_truncated_foreign_and_incompatible_checkpoints",)),
    Case("ckpt-feature-version", "Checkpoints", "weights made for other features", _P, 2,
         "{ckpt} was made for feature version 1, this Blaze2Cap computes version 2", "",
         (f"{CHECKPOINTS}::test_truncated_foreign_and_incompatible_checkpoints",)),
    Case("ckpt-blender", "Checkpoints", "a hostile checkpoint chosen in the add-on",
         "Animate button", None, "",
         "refusing to load {ckpt}: it holds Python objects other than tensors and plain data, "
         "which could run code (it asks for io.open)",
         (f"{VIDEOS}::test_blender_refuses_a_hostile_checkpoint",)),
    # -- outputs and runs ------------------------------------------------------------------
    Case("write-interrupted", "Runs",
         "a writer that fails half-way (every output: checkpoint, weights, dataset arrays and "
         "map, landmarks + sidecar, prediction, a video written by path)", "any command", None,
         "the final name keeps its old content (or stays absent); no temporary file is left",
         "", (f"{WRITES}::test_a_writer_failing_half_way_leaves_the_old_file",
              f"{WRITES}::test_writers_that_need_a_path_commit_or_leave_nothing")),
    Case("write-sigkill", "Runs", "SIGKILL while a file is being written", "any command", None,
         "the final name keeps its old content; only a hidden `.NAME.*.tmp` may remain", "",
         (f"{WRITES}::test_sigkill_mid_write_never_leaves_a_partial_file",)),
    Case("write-umask", "Runs", "umask 022 / 077", "any command", None,
         "output files get 0644 / 0600 like any new file (mkstemp gave 0600 whatever the "
         "umask)", "",
         (f"{WRITES}::test_output_permissions_follow_the_umask",)),
    Case("run-sigkill", "Runs", "training killed with SIGKILL mid-epoch",
         "`blaze2cap train --resume`", 0,
         "exit 0: resumes from last.pt with the same optimizer, scheduler, scaler and RNG "
         "states; the loss curve equals an uninterrupted run", "",
         (f"{TRAIN}::test_resume_after_sigkill_continues_the_curve",)),
    Case("run-nonfinite", "Runs", "a non-finite loss", "`blaze2cap train`", 0,
         "exit 0: the step is skipped and counted (`nonfinite_skipped` in metrics.csv, "
         "`skipped N steps with non-finite losses`)", "",
         (f"{TRAIN}::test_non_finite_loss_is_skipped_and_counted",)),
    Case("run-nonfinite-repeated", "Runs", "non-finite losses in a row", "`blaze2cap train`", 2,
         "N non-finite losses in a row (limit L): lower the learning rate or check the data",
         "", (f"{TRAIN}::test_repeated_non_finite_losses_stop_the_run",)),
    Case("run-nan-model", "Runs", "a model with NaN parameters", "save / export", None,
         "never written: `model parameters became non-finite (...); nothing was saved` "
         "(training), `refusing to save a model: non-finite values in ...` (save / export)", "",
         (f"{TRAIN}::test_nan_model_is_never_saved",
          f"{CKPT}::test_non_finite_model_is_never_saved")),
]

CASES: dict[str, Case] = {c.key: c for c in CASES_LIST}
assert len(CASES) == len(CASES_LIST), "duplicate case keys"

GROUPS = {
    "Videos": "Videos given to `blaze2cap extract VIDEO`. The Blender column is what the "
              "Animate button reports (the scene is left unchanged) and what `blaze2cap "
              "animate VIDEO` prints after `blaze2cap animate: error:` (exit 2).",
    "Gaps": "Frames without a person (`engine.inference`, see its module docstring).",
    "Arrays": "Landmark arrays given to `blaze2cap predict` (and `Predictor.predict`).",
    "Datasets": "Datasets: `blaze2cap train --data ROOT` (the same checks run in "
                "`engine.data.load_dataset_map` / `load_sequence`).",
    "Checkpoints": "Checkpoints and weights.",
    "Runs": "Output files and training runs.",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _placeholders(text: str) -> str:
    return text.format(video="VIDEO", name="NAME", file="FILE", ckpt="CKPT", root="ROOT")


def _outcome(case: Case) -> str:
    if case.code == 2:
        return f"exit 2: `{_placeholders(case.cli)}`"
    return _placeholders(case.cli) if case.cli else "—"


def _blender(case: Case) -> str:
    if not case.blender:
        return "—"
    text = _placeholders(case.blender)
    return f"`{text}`" if case.code == 2 or case.key == "ckpt-blender" else text


def render() -> str:
    """The markdown table (one section per group), as it appears in docs/robustness.md."""
    lines = []
    for group, intro in GROUPS.items():
        lines += [f"### {group}", "", intro, "",
                  "| Bad input | Fed to | What the user gets | Blender | Test |",
                  "|---|---|---|---|---|"]
        for c in (c for c in CASES_LIST if c.group == group):
            tests = "<br>".join(f"`{t.removeprefix('tests/')}`" for t in c.tests)
            lines.append(f"| {_cell(c.tried)} | {_cell(c.command)} | {_cell(_outcome(c))} | "
                         f"{_cell(_blender(c))} | {tests} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def replace_table(doc: str) -> str:
    """``doc`` with the text between the BEGIN and END markers replaced by :func:`render`."""
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{render()}{END}{tail}"


if __name__ == "__main__":
    if "--write" in sys.argv:
        DOC.write_text(replace_table(DOC.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"wrote {DOC}")
    else:
        print(render(), end="")
