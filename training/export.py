"""``blaze2cap export CHECKPOINT --out WEIGHTS.safetensors``: a training checkpoint's model as
safetensors weights (no pickle; what the add-on and ``predict`` load), with the run's
provenance (training step, validation MPJPE, the recipe) in the metadata.

The shipped weights are made with::

    blaze2cap export runs/shipped/best.pt --out engine/weights/default.safetensors
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a training checkpoint (.pt) or weights")
    parser.add_argument("--out", type=Path, required=True, help="output .safetensors file")
    parser.add_argument("--note", default="", help="free text stored in the metadata")
    parser.add_argument("--smoothing", default=None, metavar="MIN_CUTOFF,BETA[,SLOT=HZ...]",
                        help="recommended causal One Euro smoothing stored with the weights "
                             "(predict, animate and evaluate use it by default), e.g. 4,0.1 "
                             "or 4,0.1,Hips=2.5,Shoulder=10 (slots with their own min cutoff)")


def run(args: argparse.Namespace) -> int:
    from engine.checkpoint import export_weights, load_model
    from engine.errors import CheckpointError
    from engine.inference import parse_smoothing, smoothing_meta

    if args.out.suffix.lower() != ".safetensors":
        raise CheckpointError(f"--out must end in .safetensors, got {args.out.name}")
    model, meta = load_model(args.checkpoint)
    keep = {k: meta[k] for k in ("step", "epoch", "best_metric", "configs") if k in meta}
    if args.note:
        keep["note"] = args.note
    if args.smoothing:
        try:
            keep["smoothing"] = smoothing_meta(parse_smoothing(args.smoothing))
        except ValueError as err:
            raise CheckpointError(f"--smoothing: {err}") from None
    export_weights(model, args.out, {"source": args.checkpoint.name, **keep})
    size = args.out.stat().st_size / 1e6
    print(f"wrote {args.out} ({model.num_parameters():,} parameters, {size:.1f} MB)")
    return 0
