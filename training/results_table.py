"""The README results table, as Markdown, from the JSON of ``blaze2cap evaluate --json``.

    python -m training.results_table results.json [--out table.md] [--subsets all,tracked]
                                                  [--per-sequence]

One table per subset (methods x metrics, pooled over frames), optionally followed by MPJPE /
PA-MPJPE per sequence. Writes to stdout, or atomically to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.checkpoint import atomic_write_bytes

LABELS = {
    "model": "Blaze2Cap model",
    "blazepose": "BlazePose world landmarks (naive)",
    "blazepose_one_euro": "BlazePose + causal One Euro",
    "blazepose_ray": "BlazePose, ray-corrected axes",
    "ground_truth": "ground truth (reference)",
}
COLUMNS = (("mpjpe_mm", "MPJPE (mm)", 1), ("pa_mpjpe_mm", "PA-MPJPE (mm)", 1),
           ("mare_rad", "MARE (rad)", 3), ("accel_mm", "Accel (mm/frame²)", 2),
           ("jitter_mm", "Jitter (mm/frame²)", 2))
SUBSET_TEXT = {"all": "all frames with a detection and aligned ground truth",
               "in_view": "frames whose 12 evaluated joints are inside the image",
               "tracked": "in view and BlazePose on the subject"}


def _cell(v, digits: int) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def method_table(group: dict) -> list[str]:
    """Markdown rows of one group result ({"frames", "methods"})."""
    lines = ["| Method | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    for m, vals in group["methods"].items():
        name = f"**{LABELS.get(m, m)}**" if m == "model" else LABELS.get(m, m)
        lines.append(f"| {name} | " + " | ".join(_cell(vals.get(k), d) for k, _, d in COLUMNS) + " |")
    return lines


def sequence_table(groups: dict, methods: tuple[str, ...]) -> list[str]:
    lines = ["| Sequence | Frames | " + " | ".join(LABELS.get(m, m) for m in methods) + " |",
             "|---|---:|" + "---:|" * len(methods)]
    for name, g in groups.items():
        cells = []
        for m in methods:
            v = g["methods"].get(m, {})
            cells.append(f"{_cell(v.get('mpjpe_mm'), 1)} / {_cell(v.get('pa_mpjpe_mm'), 1)}")
        lines.append(f"| {name} | {g['frames']} | " + " | ".join(cells) + " |")
    return lines


def render(results: dict, subsets: tuple[str, ...] = ("all", "tracked"),
           per_sequence: bool = False) -> str:
    """Markdown text of the chosen subsets of an evaluation result."""
    out = [f"Split `{results.get('split', '?')}`: {len(results.get('entries', []))} entries "
           f"(sequence x camera); metrics pooled over frames. MPJPE / PA-MPJPE on 12 joints "
           f"(shoulders, elbows, wrists, hips, knees, ankles), root = hip midpoint, camera frame."]
    for s in subsets:
        if s not in results["subsets"]:
            raise KeyError(f"subset {s!r} is not in the results")
        sub = results["subsets"][s]
        out += ["", f"**Subset `{s}`** ({SUBSET_TEXT.get(s, s)}; {sub['overall']['frames']} frames)",
                ""]
        out += method_table(sub["overall"])
        if per_sequence:
            methods = tuple(m for m in ("model", "blazepose", "blazepose_one_euro", "blazepose_ray")
                            if m in sub["overall"]["methods"])
            out += ["", "MPJPE / PA-MPJPE (mm) per sequence:", ""]
            out += sequence_table(sub["per_sequence"], methods)
    bf = results.get("baseline_filter")
    if bf:
        out += ["", f"One Euro of the smoothed baseline: min_cutoff {bf['min_cutoff']} Hz, "
                    f"beta {bf['beta']} 1/m, d_cutoff {bf['d_cutoff']} Hz."]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.results_table",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="JSON written by blaze2cap evaluate --json")
    parser.add_argument("--out", type=Path, default=None, help="Markdown file (default: stdout)")
    parser.add_argument("--subsets", default="all,tracked",
                        help="comma-separated subsets: all, in_view, tracked (default: all,tracked)")
    parser.add_argument("--per-sequence", action="store_true", help="add per-sequence tables")
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.results.read_text(encoding="utf-8"))
        text = render(results, tuple(s.strip() for s in args.subsets.split(",") if s.strip()),
                      args.per_sequence)
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        print(f"results_table: error: cannot use {args.results}: {err}", file=sys.stderr)
        return 2
    if args.out is None:
        sys.stdout.write(text)
    else:
        data = text.encode("utf-8")
        atomic_write_bytes(args.out, lambda f: f.write(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
