"""Bad datasets through ``blaze2cap train`` and the seed import ``blaze2cap prepare --hf``.
Rows ``dataset-*`` of the table."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from engine import data as D
from robustness_cases import CASES
from robustness_helpers import cli_error, run_cli, tiny_dataset, train_args


def _symlink_out(root, entries):
    (root.parent / "secret.npy").write_bytes(b"not yours")
    (root / "link.npy").symlink_to(root.parent / "secret.npy")
    entries[0]["target"] = "link.npy"


MUTATIONS = {
    "dataset-absolute": lambda root, e: e[0].update(source="/etc/passwd"),
    "dataset-windows-absolute": lambda root, e: e[0].update(target="C:\\x.npy"),
    "dataset-dotdot": lambda root, e: e[0].update(source="../outside.npy"),
    "dataset-symlink": _symlink_out,
    "dataset-missing": lambda root, e: (root / e[0]["target"]).unlink(),
    "dataset-shape": lambda root, e: D.save_npy_atomic(root / e[0]["source"],
                                                       np.zeros((24, 33, 3), np.float32)),
    "dataset-length": lambda root, e: D.save_npy_atomic(root / e[0]["target"],
                                                        np.zeros((20, 22, 6), np.float32)),
}


@pytest.mark.parametrize("key", [*MUTATIONS, "dataset-json"])
def test_bad_dataset_gives_one_sentence(key, tmp_path, capsys):
    root = tiny_dataset(tmp_path / "ds")
    if key == "dataset-json":
        (root / D.MAP_NAME).write_text("[{")
    else:
        entries = json.loads((root / D.MAP_NAME).read_text())
        MUTATIONS[key](root, entries)
        D.write_json_atomic(root / D.MAP_NAME, entries)
    run = tmp_path / "run"
    assert cli_error(capsys, *train_args(root, run), "--max-steps", "1") == \
        CASES[key].cli_line("train", root=root)
    assert not (run / "last.pt").exists()


def seed_folder(root, lengths: dict[str, tuple[int, int]]) -> list[dict]:
    """A folder in the seed's Hugging Face layout: per name, (landmark, target) frames."""
    rng = np.random.default_rng(0)
    entries = []
    for name, (n_x, n_y) in lengths.items():
        x = rng.uniform(0.1, 0.9, size=(n_x, 25, 7)).astype(np.float32)
        x[:, :, 6] = 1
        y = np.zeros((n_y, 22, 6), np.float32)
        y[:, 1:] = (1, 0, 0, 0, 1, 0)
        src = f"blaze_augmented/S1/{name}/cam3/blaze_S1_{name}_cam3_seg0_s1_o0.npy"
        tgt = src.replace("blaze", "gt")
        for rel, arr in ((src, x), (tgt, y)):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            np.save(root / rel, arr)
        entries.append({"source": src, "target": tgt, "subject": "S1",
                        "split_train": True, "split_test": False})
    (root / D.MAP_NAME).write_text(json.dumps(entries))
    return entries


def test_seed_import_refuses_unsafe_entries_and_trims_lengths(tmp_path, capsys, caplog):
    hf, out = tmp_path / "hf", tmp_path / "out"
    entries = seed_folder(hf, {"acting1": (12, 13), "walking1": (10, 10)})
    with caplog.at_level(logging.WARNING):
        code, printed, _ = run_cli(capsys, "prepare", "--hf", hf, "--out", out)
    assert code == 0 and CASES["dataset-seed-trim"].code == 0
    assert f"entry 0 ({entries[0]['source']}): 12 landmark frames but 13 target frames; " \
           "trimmed to 12" in caplog.text
    assert "trimmed: 1 entries had landmark/target length mismatches" in printed
    seq = D.load_sequence(out, D.load_dataset_map(out)[0])
    assert seq["landmarks"].shape[0] == seq["target"].shape[0] == 12
    # an entry pointing outside the folder: refused, nothing written
    (tmp_path / "evil.npy").write_bytes(b"")
    (hf / D.MAP_NAME).write_text(json.dumps(entries + [{**entries[0],
                                                        "source": "../evil.npy"}]))
    out2 = tmp_path / "out2"
    assert cli_error(capsys, "prepare", "--hf", hf, "--out", out2) == \
        CASES["dataset-seed-hostile"].cli_line("prepare")
    assert not (out2 / D.MAP_NAME).exists()
