"""Training checkpoints (``.pt``) and released weights (``.safetensors``).

* :func:`save_checkpoint` / :func:`load_checkpoint`: the full training state (model,
  optimizer, scheduler, scaler, counters, RNG states, configs as plain dicts). Written
  atomically; read with ``torch.load(weights_only=True)`` only, so a file can never run code.
  Every value must therefore be a tensor or plain Python data (no NumPy objects).
* :func:`export_weights`: model tensors only, as safetensors, with the ``ModelConfig`` and a
  ``meta`` dict as JSON strings in the file's metadata.
* :func:`load_model`: a ready :class:`~engine.model.MotionTransformer` (eval mode) from
  either kind of file.

Neither kind of file is ever written with non-finite model parameters.
"""
from __future__ import annotations

import json
import os
import pickle
import random
import re
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_write_bytes  # noqa: F401 (also used by train / evaluate)
from .errors import CheckpointError
from .features import FEATURE_VERSION
from .model import ModelConfig, MotionTransformer
from .skeleton import DEFAULT_OFFSETS


CHECKPOINT_FORMAT = "blaze2cap-checkpoint"
WEIGHTS_FORMAT = "blaze2cap-weights"
FORMAT_VERSION = 1

_PLAIN = (str, int, float, bool, type(None), torch.Tensor, torch.Size)


def _check_plain(obj: Any, where: str = "state") -> None:
    """Raise CheckpointError unless obj holds only what ``weights_only`` loading accepts."""
    if isinstance(obj, _PLAIN):
        return
    if isinstance(obj, (dict, OrderedDict)):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise CheckpointError(f"checkpoint key {k!r} in {where} is not a str or int")
            _check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    raise CheckpointError(
        f"cannot save {where}: {type(obj).__name__} is not a tensor or plain Python data")


def _nonfinite_names(tensors: dict[str, torch.Tensor]) -> list[str]:
    return [k for k, v in tensors.items()
            if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def _require_finite(tensors: dict[str, torch.Tensor], what: str) -> None:
    bad = _nonfinite_names(tensors)
    if bad:
        raise CheckpointError(f"refusing to save {what}: non-finite values in {', '.join(bad[:5])}")


# ---------------------------------------------------------------------------------------------
# RNG states as plain data
# ---------------------------------------------------------------------------------------------
def rng_state() -> dict:
    """Python, NumPy, torch and CUDA RNG states as tensors / plain data."""
    py = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned (CUDA states only where devices match)."""
    py = state["python"]
    random.setstate((int(py[0]), tuple(int(x) for x in py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# ---------------------------------------------------------------------------------------------
# Training checkpoints
# ---------------------------------------------------------------------------------------------
def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write a training checkpoint atomically.

    ``state`` must contain ``model`` (a state_dict) and ``model_config`` (``ModelConfig.to_dict``);
    usually also optimizer / scheduler / scaler state_dicts, ``step``, ``epoch``,
    ``best_metric``, ``rng`` (:func:`rng_state`), ``train_config``, ``loss_config``,
    ``feature_version`` and ``offsets`` (21 x 3 list, metres). Values must be tensors or plain
    Python data. Raises CheckpointError for non-finite model parameters or other values.
    """
    for key in ("model", "model_config"):
        if key not in state:
            raise CheckpointError(f"checkpoint state has no {key!r}")
    _require_finite(state["model"], "a model")
    full = {"format": CHECKPOINT_FORMAT, "format_version": FORMAT_VERSION,
            "feature_version": FEATURE_VERSION, **state}
    _check_plain(full)
    atomic_write_bytes(path, lambda f: torch.save(full, f))


def load_checkpoint(path: str | os.PathLike, model_cfg: ModelConfig | None = None) -> dict:
    """Read a training checkpoint (tensors on the CPU) without running any code from it.

    With ``model_cfg`` the checkpoint must have been made with that model config and the
    current feature version. Raises CheckpointError (missing, truncated, hostile,
    incompatible, not ours).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it holds Python objects other than tensors and plain "
            f"data, which could run code ({_unpickler_reason(err)})") from err
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile,
            UnicodeDecodeError, KeyError) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is truncated or "
                              f"corrupt ({_first_sentence(err)})") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a Blaze2Cap training checkpoint")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer Blaze2Cap "
                              f"(format {ckpt['format_version']} > {FORMAT_VERSION})")
    for key in ("model", "model_config"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint {path} has no {key!r}")
    if model_cfg is not None:
        check_compatible(ckpt, model_cfg, source=str(path))
    return ckpt


def _unpickler_reason(err: Exception) -> str:
    """What torch's weights-only unpickler refused, without its advice to allow it."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    if found:
        return f"it asks for {found.group(1)}"
    for line in str(err).splitlines():
        if "Unsupported" in line:
            return _first_sentence(line.strip().replace("WeightsUnpickler error: ", ""))
    return "not loadable with weights_only=True"


def _first_sentence(err: Exception | str, limit: int = 160) -> str:
    """The first line / sentence of a library's error message (some run to paragraphs)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text.split(". ")[0].rstrip(".")[:limit]


def config_differences(saved: dict, current: dict) -> list[str]:
    """Readable 'key (saved X, now Y)' items for each key whose value differs."""
    out = []
    for k in sorted(set(saved) | set(current)):
        a, b = saved.get(k, "<missing>"), current.get(k, "<missing>")
        if a != b:
            out.append(f"{k} (checkpoint {a}, now {b})")
    return out


def check_compatible(ckpt: dict, model_cfg: ModelConfig, source: str = "checkpoint") -> None:
    """Raise CheckpointError naming what differs between a checkpoint and this model config."""
    diffs = config_differences(ckpt["model_config"], model_cfg.to_dict())
    fv = ckpt.get("feature_version")
    if fv != FEATURE_VERSION:
        diffs.append(f"feature_version (checkpoint {fv}, now {FEATURE_VERSION})")
    if diffs:
        raise CheckpointError(f"{source} is incompatible with this configuration: "
                              + "; ".join(diffs))


def _model_from(cfg_dict: dict, tensors: dict, source: str, device) -> MotionTransformer:
    try:
        cfg = ModelConfig.from_dict(cfg_dict)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source} has an unusable model config: {err}") from err
    bad = _nonfinite_names(tensors)
    if bad:
        raise CheckpointError(f"{source} holds non-finite parameters ({', '.join(bad[:5])})")
    model = MotionTransformer(cfg)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        lines = str(err).strip().splitlines()
        raise CheckpointError(f"{source} does not match its model config: "
                              + " ".join(line.strip() for line in lines[:3])[:300]) from err
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------
# Released weights
# ---------------------------------------------------------------------------------------------
def export_weights(model: MotionTransformer, path: str | os.PathLike, meta: dict | None = None) -> None:
    """Write the model's tensors as safetensors (atomically).

    A model with domain vectors is written as the plain model for domain 0 (real video,
    ``MotionTransformer.fold_domain``). Metadata: ``format``, ``model_config`` (JSON of
    ``ModelConfig.to_dict``), ``meta`` (JSON of ``meta``, defaults: feature version and the
    default body's offsets). Raises CheckpointError for non-finite parameters.
    """
    from safetensors.torch import save as st_save

    model = model.fold_domain(0)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    _require_finite(tensors, "a model")
    meta = {"feature_version": FEATURE_VERSION, "offsets": DEFAULT_OFFSETS.tolist(), **(meta or {})}
    try:
        meta_json = json.dumps(meta)
    except TypeError as err:
        raise CheckpointError(f"weights metadata is not JSON serialisable: {err}") from err
    metadata = {"format": WEIGHTS_FORMAT, "format_version": str(FORMAT_VERSION),
                "model_config": json.dumps(model.cfg.to_dict()), "meta": meta_json}
    data = st_save(tensors, metadata=metadata)
    atomic_write_bytes(path, lambda f: f.write(data))


def _load_safetensors(path: Path, device) -> tuple[MotionTransformer, dict]:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"cannot read weights {path}: the file is truncated or corrupt "
                              f"({err})") from err
    if metadata.get("format") != WEIGHTS_FORMAT or "model_config" not in metadata:
        raise CheckpointError(f"{path} is not a Blaze2Cap weights file (no Blaze2Cap metadata)")
    try:
        cfg_dict = json.loads(metadata["model_config"])
        meta = json.loads(metadata.get("meta", "{}"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} has corrupt metadata: {err}") from err
    fv = meta.get("feature_version")
    if fv != FEATURE_VERSION:
        raise CheckpointError(f"{path} was made for feature version {fv}, "
                              f"this Blaze2Cap computes version {FEATURE_VERSION}")
    return _model_from(cfg_dict, tensors, str(path), device), meta


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"
               ) -> tuple[MotionTransformer, dict]:
    """A MotionTransformer in eval mode and its metadata, from a ``.pt`` training checkpoint
    or ``.safetensors`` weights. Raises CheckpointError for anything else. A checkpoint of a
    model with domain vectors gives the plain model for real video
    (``MotionTransformer.fold_domain(0)``): inference sees real video only."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no weights file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _load_safetensors(path, device)
    if suffix == ".pt":
        ckpt = load_checkpoint(path)
        if ckpt.get("feature_version") != FEATURE_VERSION:
            raise CheckpointError(f"{path} was made for feature version "
                                  f"{ckpt.get('feature_version')}, this Blaze2Cap computes "
                                  f"version {FEATURE_VERSION}")
        model = _model_from(ckpt["model_config"], ckpt["model"], str(path), device).fold_domain(0)
        meta = {k: ckpt[k] for k in ("step", "epoch", "best_metric", "feature_version", "offsets",
                                     "train_config", "loss_config") if k in ckpt}
        return model, meta
    raise CheckpointError(f"unsupported weights file {path.name}: expected a .pt training "
                          "checkpoint or .safetensors weights")
