"""``blaze2cap train``: train a MotionTransformer on a prepared dataset folder.

Configuration comes from a recipe, ``training/configs/NAME.json`` (``--config NAME``) or any
JSON file (``--config PATH.json``), with sections ``model`` (``engine.model.ModelConfig``),
``train`` (``engine.train.TrainConfig``) and ``loss`` (``engine.losses.LossConfig``); missing
keys keep their defaults. The flags below override the recipe, and ``--set key=value``
overrides anything (``train.lr=3e-4``, ``model.d_model=128``, or a bare key that names one
field). With ``--resume`` and no ``--config``, the run's own ``config.json`` is the recipe.
Under ``torchrun --nproc_per_node N`` the run uses DDP.
"""
from __future__ import annotations

import argparse
import json
import os
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

from engine.errors import InputError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
SECTIONS = ("model", "train", "loss")


def _classes() -> dict[str, type]:
    from engine.losses import LossConfig
    from engine.model import ModelConfig
    from engine.train import TrainConfig
    return {"model": ModelConfig, "train": TrainConfig, "loss": LossConfig}


def available_recipes() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path,
                        help="prepared dataset folder (from 'blaze2cap prepare')")
    parser.add_argument("--out", required=True, type=Path, help="run folder for checkpoints and logs")
    parser.add_argument("--config", default=None,
                        help=f"recipe name ({', '.join(available_recipes())}) or a .json file "
                             "(default: 'default', or the run's config.json with --resume)")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where to train")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    parser.add_argument("--init", metavar="WEIGHTS",
                        help="fine-tune: start from these weights (.pt checkpoint or "
                             ".safetensors, e.g. engine/weights/default.safetensors)")
    parser.add_argument("--batch-size", type=int, help="windows per step (per process)")
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--epochs", type=int, help="passes over the training split")
    parser.add_argument("--num-workers", type=int, help="DataLoader worker processes")
    parser.add_argument("--no-amp", action="store_true", help="train in float32 (no mixed precision)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. train.eval_every=500 or "
                             "model.d_model=128 (repeatable)")


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise InputError(f"recipe {path} is not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise InputError(f"recipe {path} must hold a JSON object with model/train/loss sections")
    return data


def load_recipe(name_or_path: str) -> tuple[dict[str, dict], str]:
    """{section: {key: value}} of a named recipe or a JSON file, and where it came from."""
    path = Path(name_or_path)
    if path.suffix.lower() != ".json":
        path = CONFIG_DIR / f"{name_or_path}.json"
        if not path.is_file():
            raise InputError(f"unknown recipe {name_or_path!r} (available: "
                             f"{', '.join(available_recipes())}, or a path to a .json file)")
    elif not path.is_file():
        raise InputError(f"recipe file {path} does not exist")
    data = _read_json(path)
    return sections_from(data, str(path)), str(path)


def sections_from(data: dict, source: str, extra_ok: tuple[str, ...] = ("description",)) -> dict:
    unknown = sorted(set(data) - set(SECTIONS) - set(extra_ok))
    if unknown:
        raise InputError(f"{source}: unknown section(s) {', '.join(unknown)} "
                         f"(expected {', '.join(SECTIONS)})")
    out = {}
    for s in SECTIONS:
        sec = data.get(s, {})
        if not isinstance(sec, dict):
            raise InputError(f"{source}: section {s!r} must be a JSON object")
        out[s] = dict(sec)
    return out


def _coerce(section: str, key: str, value: Any) -> Any:
    """``value`` as the type of field ``key`` of ``section``'s config (InputError if not)."""
    cls = _classes()[section]
    hint = typing.get_type_hints(cls)[key]
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    where = f"{section}.{key}"
    if value is None:
        if type(None) in allowed:
            return None
        raise InputError(f"{where} cannot be null")
    for t in allowed:
        if t is bool and isinstance(value, bool):
            return value
        if t is int and not isinstance(value, bool):
            if isinstance(value, int):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if t is str and isinstance(value, str):
            return value
    names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
    raise InputError(f"{where} must be {names}, got {value!r}")


def _resolve_key(key: str) -> tuple[str, str]:
    classes = _classes()
    if "." in key:
        section, name = key.split(".", 1)
        if section not in classes:
            raise InputError(f"unknown config section {section!r} in {key!r} "
                             f"(expected {', '.join(SECTIONS)})")
        if name not in {f.name for f in fields(classes[section])}:
            known = ", ".join(f.name for f in fields(classes[section]))
            raise InputError(f"unknown config key {key!r} (known {section} keys: {known})")
        return section, name
    owners = [s for s in SECTIONS if key in {f.name for f in fields(classes[s])}]
    if not owners:
        raise InputError(f"unknown config key {key!r} (use section.key; sections: "
                         f"{', '.join(SECTIONS)})")
    if len(owners) > 1:
        raise InputError(f"config key {key!r} is ambiguous: use "
                         + " or ".join(f"{s}.{key}" for s in owners))
    return owners[0], key


def parse_override(text: str) -> tuple[str, str, Any]:
    """'section.key=value' or 'key=value' -> (section, key, typed value). JSON values
    (numbers, true/false, null, quoted strings); anything else is taken as a string."""
    if "=" not in text:
        raise InputError(f"--set expects KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    section, name = _resolve_key(key.strip())
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return section, name, _coerce(section, name, value)


def build_configs(sections: dict[str, dict], args: argparse.Namespace):
    """(TrainConfig, ModelConfig, LossConfig) from recipe sections, flags and --set."""
    from engine.train import config_from_dict

    merged = {s: dict(sections.get(s, {})) for s in SECTIONS}
    for s in SECTIONS:  # recipe values: known keys, right types
        for k in list(merged[s]):
            section, name = _resolve_key(f"{s}.{k}")
            merged[s][k] = _coerce(section, name, merged[s][k])
    flags = {"max_steps": args.max_steps, "device": args.device, "batch_size": args.batch_size,
             "lr": args.lr, "epochs": args.epochs, "num_workers": args.num_workers,
             "init_from": getattr(args, "init", None)}
    merged["train"].update({k: v for k, v in flags.items() if v is not None})
    if args.no_amp:
        merged["train"]["amp"] = False
    for text in args.overrides:
        section, name, value = parse_override(text)
        merged[section][name] = value
    classes = _classes()
    return tuple(config_from_dict(classes[s], merged[s], s) for s in ("train", "model", "loss"))


def _fmt(v: Any, unit: str = "") -> str:
    return "n/a" if v is None else f"{v:.4g}{unit}"


def run(args: argparse.Namespace) -> int:
    from engine.train import CONFIG, train

    own_config = args.out / CONFIG
    if args.config is None and args.resume and own_config.is_file():
        data = _read_json(own_config)  # the run's resolved configs (plus run facts)
        sections, source = {s: data.get(s, {}) for s in SECTIONS}, str(own_config)
    else:
        sections, source = load_recipe(args.config or "default")
    train_cfg, model_cfg, loss_cfg = build_configs(sections, args)
    is_main = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 reports
    if is_main:
        print(f"blaze2cap train: recipe {source}, data {args.data}, run {args.out}"
              + (" (resuming)" if args.resume else ""))
    result = train(train_cfg, model_cfg, loss_cfg, args.data, args.out, resume=args.resume)
    if not is_main:
        return 0
    train_m, val_m = result["train"], result["val"]
    print(f"run: {result['out_dir']} (last.pt, best.pt, metrics.csv, curves.png, config.json)")
    print(f"step {result['step']}, epoch {result['epoch']}: train loss "
          f"{_fmt(train_m.get('total'))}, val loss {_fmt(val_m.get('val_total'))}, "
          f"val MPJPE {_fmt(val_m.get('val_mpjpe_mm'), ' mm')} "
          f"(best {_fmt(result['best_val_mpjpe_mm'], ' mm')})")
    if result["nonfinite_steps"]:
        print(f"skipped {result['nonfinite_steps']} steps with non-finite losses")
    if result["interrupted"]:
        print(f"stopped early ({result['interrupted']}): continue with --resume")
        return 130 if result["interrupted"] == "SIGINT" else 143
    return 0
