"""The ``blaze2cap`` command line: one console script, one module per subcommand.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``; modules are
imported only when their command runs, so ``blaze2cap --help`` stays fast. Errors derived
from ``engine.errors.Blaze2CapError`` (and missing files) print one line and exit 2; use
``--debug`` for the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from engine.errors import Blaze2CapError

COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("training.prepare", "build a windowed dataset from TotalCapture or a HF folder"),
    "train": ("training.train_cmd", "train a MotionTransformer"),
    "evaluate": ("training.evaluate", "MPJPE / PA-MPJPE / MARE / acceleration error vs baselines"),
    "predict": ("training.predict", "landmarks (.npy) -> rotations and joints (.npz)"),
    "visualize": ("training.visualize", "mp4 of predicted vs ground-truth skeletons"),
    "extract": ("training.extract", "run BlazePose over a video -> (F, 33, 10) landmarks"),
    "animate": ("training.animate", "video -> animated armature (.blend / .bvh / .fbx / preview)"),
    "live": ("training.live", "BlazePose + streaming engine on a camera or video"),
    "export": ("training.export", "a training checkpoint -> safetensors weights"),
    "crossval": ("training.crossval", "leave-one-sequence-out: real data alone vs real + data engine"),
    "synth": ("training.synth", "data engine: BlazePose on rendered bodies moving with GT motion"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blaze2cap", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        p.set_defaults(_lazy=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Parse the command name first, then let its module add its own arguments.
    # Global options come before the command name; the first other token is the command.
    head = 0
    while head < len(argv) and argv[head] == "--debug":
        head += 1
    command = argv[head] if head < len(argv) else None
    if command not in COMMANDS:
        parser.parse_args(argv)  # prints help / usage (or the error) and exits
        return 0
    pre = argparse.Namespace(command=command, _module=COMMANDS[command][0], debug=head > 0)
    module = importlib.import_module(pre._module)
    full = argparse.ArgumentParser(prog=f"blaze2cap {pre.command}",
                                   description=COMMANDS[pre.command][1])
    full.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    module.add_arguments(full)
    args = full.parse_args(argv[head + 1:])
    args.debug = args.debug or pre.debug
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(module.run(args) or 0)
    except (Blaze2CapError, OSError) as err:  # user input / environment: one line
        if args.debug:
            raise
        print(f"blaze2cap {pre.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"blaze2cap {pre.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
