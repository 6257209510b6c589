"""Torch-free forward pass of :class:`engine.model.MotionTransformer` in NumPy (float32).

Used where torch is not available (inside Blender). It mirrors ``engine/model.py`` operation
by operation -- input standardisation, projection, rotary encoding with float64 tables,
banded causal attention with the validity mask and the same key/value cache, pre-LayerNorm
blocks with exact (erf) GELU, split heads with the identity residual and the root scale and
offset -- so both backends give the same numbers to float32 rounding
(``tests/engine/test_numpy_model.py`` checks 1e-4 against torch).

:meth:`NumpyMotionTransformer.step_frame` runs the same network one frame at a time (live
use, ``engine.inference.StreamingPredictor``) on a ring key/value cache (:class:`FrameCache`),
with as few NumPy calls as the operations allow: for one frame the cost is the calls.

Weights come as a state dict of NumPy arrays with the torch parameter names (e.g. from
``safetensors.numpy.load_file`` on weights written by ``engine.checkpoint.export_weights``),
the architecture from the ``ModelConfig`` dict stored in the file's metadata.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from . import model_config
from .guide import output_matrices
from .rotations import matrix_to_rotation_6d
from .errors import CheckpointError
from .features import FEATURE_VERSION

IDENTITY_6D = np.array(model_config.IDENTITY_6D, dtype=np.float32)
ROOT_SCALE = np.array(model_config.ROOT_SCALE, dtype=np.float32)
ROOT_OFFSET = np.array(model_config.ROOT_OFFSET, dtype=np.float32)
JOINT_SCALE = np.float32(model_config.JOINT_SCALE)
NUM_SLOTS = 22
LN_EPS = 1e-5  # torch.nn.LayerNorm default

# Cephes (S. L. Moshier, public domain) rational approximations of erf / erfc, double
# precision; the same ones SciPy compiles. erf(x) = x T(x^2) / U(x^2) for |x| <= 1,
# erfc(x) = exp(-x^2) P(x) / Q(x) for 1 < x < 8, exp(-x^2) R(x) / S(x) for x >= 8.
_ERF_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3,
          7.00332514112805075473e3, 5.55923013010394962768e4)
_ERF_U = (1.0, 3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
          2.26290000613890934246e4, 4.92673942608635921086e4)
_ERFC_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
           4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2,
           9.34528527171957607540e2, 1.02755188689515710272e3, 5.57535335369399327526e2)
_ERFC_Q = (1.0, 1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2,
           9.75708501743205489753e2, 1.82390916687909736289e3, 2.24633760818710981792e3,
           1.65666309194161350182e3, 5.57535340817727675546e2)
_ERFC_R = (5.64189583547755073984e-1, 1.27536670759978104416e0, 5.01905042251180477414e0,
           6.16021097993053585195e0, 7.40974269950448939160e0, 2.97886665372100240670e0)
_ERFC_S = (1.0, 2.26052863220117276590e0, 9.39603524938001434673e0, 1.20489539808096656605e1,
           1.70814450747565897222e1, 9.60896809063285878198e0, 3.36907645100081516050e0)


def _poly(x: np.ndarray, coefs: tuple[float, ...]) -> np.ndarray:
    """Horner evaluation, coefficients from the highest power down."""
    out = np.full_like(x, coefs[0])
    for c in coefs[1:]:
        out = out * x + c
    return out


def erf(x: np.ndarray) -> np.ndarray:
    """Error function, elementwise, float64 (absolute error ~1e-16; numpy has none)."""
    x = np.asarray(x, dtype=np.float64)
    ax = np.abs(x)
    z = x * x
    small = x * _poly(z, _ERF_T) / _poly(z, _ERF_U)
    a = np.maximum(ax, 1.0)  # keep the unused branch finite
    with np.errstate(under="ignore"):
        e = np.exp(-a * a)
    mid = e * _poly(a, _ERFC_P) / _poly(a, _ERFC_Q)
    far = e * _poly(a, _ERFC_R) / _poly(a, _ERFC_S)
    erfc_abs = np.where(a < 8.0, mid, far)
    return np.where(ax <= 1.0, small, np.sign(x) * (1.0 - erfc_abs))


# GELU x * Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2, with Phi linear between the points of
# a table of erf: absolute error < 2e-8 (below float32 resolution), in a dozen array
# operations whatever the size (the single-frame path pays per NumPy call). Per table
# interval k: Phi = _GELU_A[k] + s * _GELU_B[k], s = x / sqrt 2 / step + points before 0.
_GELU_STEP = 1.0 / 2048               # in x / sqrt 2; erf is +-1 to 2e-8 beyond +-4
_GELU_LAST = 16383                    # intervals: 16384 on [-4, 4]


def _gelu_table() -> tuple[np.ndarray, np.ndarray]:
    phi = 0.5 + 0.5 * erf(np.linspace(-4.0, 4.0, _GELU_LAST + 2))
    phi[0], phi[-1] = 0.0, 1.0  # off by 8e-9: the table's ends give GELU(x) = 0 and = x
    slope = np.diff(phi)
    return phi[:-1] - np.arange(_GELU_LAST + 1) * slope, slope


_GELU_A, _GELU_B = _gelu_table()


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU x * Phi(x) (as ``torch.nn.GELU()``, to float32 rounding), float32 in,
    float32 out; Phi from the erf table above."""
    s = np.multiply(x, 1.0 / (math.sqrt(2.0) * _GELU_STEP), dtype=np.float64)
    s += 4.0 / _GELU_STEP
    np.maximum(s, 0.0, out=s)  # the table's ends hold beyond it (ufuncs: np.clip is slower)
    np.minimum(s, _GELU_LAST + 1.0, out=s)
    k = s.astype(np.intp)
    phi = _GELU_B.take(k, mode="clip")  # clip: the top end (and NaN) stay in the table
    phi *= s
    phi += _GELU_A.take(k, mode="clip")
    phi *= x
    return phi.astype(np.float32)


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + LN_EPS) * w + b


def rope_tables(n: int, head_dim: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin (n, head_dim/2) for positions 0..n-1, computed in float64, returned float32."""
    inv = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    ang = np.arange(n, dtype=np.float64)[:, None] * inv[None]
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """x (B, H, S, D) rotated pairwise (first half / second half) by position."""
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    return np.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


def attention_mask(valid_q: np.ndarray, valid_k: np.ndarray, window: int) -> np.ndarray:
    """(B, 1, Sq, Sk) bool, as ``engine.model.attention_mask``."""
    sq, sk = valid_q.shape[1], valid_k.shape[1]
    qi = np.arange(sq)[:, None] + (sk - sq)
    kj = np.arange(sk)[None, :]
    band = (kj <= qi) & (qi - kj < window)
    allowed = (band[None] & valid_k[:, None, :]) | (kj == qi)[None]
    return allowed[:, None]


class NumpyMotionTransformer:
    """MotionTransformer inference in NumPy. Call it like the torch model (inference mode).

    state: torch parameter name -> array (float32 after loading); config: the ModelConfig
    dict (needs ``n_layers``, ``n_heads``, ``window``, ``rope_base``).
    """

    def __init__(self, state: dict[str, np.ndarray], config: dict):
        try:
            self.n_layers = int(config["n_layers"])
            self.n_heads = int(config["n_heads"])
            self.window = int(config["window"])
            self.rope_base = float(config["rope_base"])
            # checkpoints from before the geometric prior have no such field
            self.geometric_prior = bool(config.get("geometric_prior", False))
            cfg = model_config.ModelConfig.from_dict(config)  # the checks' one home
            self.joint_head = cfg.joint_head
            self.frame_branch, self.frame_blocks = cfg.frame_branch, cfg.frame_blocks
            self.frame_mix = float(cfg.frame_mix)
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"the model config lacks a valid field: {err}") from err
        self.config = dict(config)
        self.p = {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}
        missing = [k for k in self._required_keys() if k not in self.p]
        if missing:
            raise CheckpointError(f"the weights miss {len(missing)} tensors, e.g. {missing[0]!r}")
        self.d_model = self.p["input_proj.weight"].shape[0]
        if self.d_model % self.n_heads:
            raise CheckpointError("the weights' width is not divisible by n_heads")
        self._frame_weights: dict | None = None  # step_frame's arrays, made on first use

    def _required_keys(self) -> list[str]:
        keys = ["input_mean", "input_std", "input_proj.weight", "input_proj.bias",
                "ln_f.weight", "ln_f.bias"]
        for h in ("root_head", "body_head") + (("joint_head",) if self.joint_head else ()):
            keys += [f"{h}.{i}.{t}" for i in (0, 2) for t in ("weight", "bias")]
        for i in range(self.n_layers):
            for name in ("ln1", "attn.qkv", "attn.proj", "ln2", "mlp.0", "mlp.2"):
                keys += [f"blocks.{i}.{name}.weight", f"blocks.{i}.{name}.bias"]
        if self.frame_branch:
            names = ["frame_branch.inp", "frame_branch.out"] + [
                f"frame_branch.blocks.{i}.{j}" for i in range(self.frame_blocks) for j in (0, 1, 4)]
            keys += [f"{n}.{t}" for n in names for t in ("weight", "bias")]
        return keys

    def _frame_branch(self, x: np.ndarray) -> np.ndarray:
        """The per-frame branch (``engine.model.FrameBranch``): standardised features
        (..., 450) -> joints 1..20 (..., 20, 3), metres."""
        h = self._linear(x, "frame_branch.inp")
        for i in range(self.frame_blocks):
            b = f"frame_branch.blocks.{i}"
            a = layer_norm(h, self.p[f"{b}.0.weight"], self.p[f"{b}.0.bias"])
            h = h + self._linear(gelu(self._linear(a, f"{b}.1")), f"{b}.4")
        return self._linear(h, "frame_branch.out").reshape(*x.shape[:-1], NUM_SLOTS - 2, 3)

    @property
    def receptive_field(self) -> int:
        return self.n_layers * (self.window - 1) + 1

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.p[f"{name}.weight"].T + self.p[f"{name}.bias"]

    def _attention(self, x, i, mask, cos, sin, past_kv):
        B, S, C = x.shape
        H = self.n_heads
        qkv = self._linear(x, f"blocks.{i}.attn.qkv")
        q, k, v = (t.reshape(B, S, H, C // H).transpose(0, 2, 1, 3)
                   for t in np.split(qkv, 3, axis=-1))
        if past_kv is not None:
            k = np.concatenate([past_kv[0], k], axis=2)
            v = np.concatenate([past_kv[1], v], axis=2)
        P = k.shape[2] - S
        qr = apply_rope(q, cos[P:P + S], sin[P:P + S])
        kr = apply_rope(k, cos[:P + S], sin[:P + S])
        scores = qr @ kr.transpose(0, 1, 3, 2) / np.float32(math.sqrt(C // H))  # (B, H, S, P+S)
        scores = np.where(mask, scores, -np.inf)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        att = scores / scores.sum(axis=-1, keepdims=True)
        y = (att @ v).transpose(0, 2, 1, 3).reshape(B, S, C)
        return self._linear(y, f"blocks.{i}.attn.proj"), (k, v)

    def __call__(self, feats: np.ndarray, valid: np.ndarray | None = None,
                 past: list | None = None, return_cache: bool = False):
        """feats (B, S, 25, 18), valid (B, S) bool -> (B, S, 22, 6) float32.

        ``past``/``return_cache`` as in ``engine.model.MotionTransformer.forward``: per layer
        (k, v, valid) of up to window-1 earlier frames; with ``return_cache`` the result is
        ``(out, cache)``.
        """
        feats = np.asarray(feats, dtype=np.float32)
        B, S = feats.shape[:2]
        valid = np.ones((B, S), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
        x = (feats.reshape(B, S, -1) - self.p["input_mean"]) / self.p["input_std"]
        x = x * valid[..., None]
        frame = self._frame_branch(x) if self.frame_branch else None
        x = self._linear(x, "input_proj")
        past_valid = past[0][2] if past else valid[:, :0]
        valid_k = np.concatenate([past_valid, valid], axis=1)
        mask = attention_mask(valid, valid_k, self.window)
        cos, sin = rope_tables(valid_k.shape[1], self.d_model // self.n_heads, self.rope_base)
        cache = []
        keep = self.window - 1
        for i in range(self.n_layers):
            b = f"blocks.{i}"
            a, (k, v) = self._attention(
                layer_norm(x, self.p[f"{b}.ln1.weight"], self.p[f"{b}.ln1.bias"]),
                i, mask, cos, sin, past[i][:2] if past else None)
            x = x + a
            h = layer_norm(x, self.p[f"{b}.ln2.weight"], self.p[f"{b}.ln2.bias"])
            x = x + self._linear(gelu(self._linear(h, f"{b}.mlp.0")), f"{b}.mlp.2")
            cache.append((k[:, :, -keep:], v[:, :, -keep:], valid_k[:, -keep:]))
        x = layer_norm(x, self.p["ln_f.weight"], self.p["ln_f.bias"])
        root = self._linear(gelu(self._linear(x, "root_head.0")), "root_head.2").reshape(B, S, 2, 6)
        body = self._linear(gelu(self._linear(x, "body_head.0")), "body_head.2")
        body = body.reshape(B, S, NUM_SLOTS - 2, 6) + IDENTITY_6D
        trans = root[:, :, :1] * ROOT_SCALE + ROOT_OFFSET
        rot6d = np.concatenate([root[:, :, 1:] + IDENTITY_6D, body], axis=2)
        if self.geometric_prior or self.joint_head:  # as the module (engine.guide)
            residual = None
            if self.joint_head:
                joint = self._linear(gelu(self._linear(x, "joint_head.0")), "joint_head.2")
                residual = joint.reshape(B, S, NUM_SLOTS - 2, 3) * JOINT_SCALE
            mix = 0.0 if frame is None else \
                np.float32(self.frame_mix) * valid[..., None, None].astype(np.float32)
            mats, _ = output_matrices(
                rot6d.astype(np.float32),
                feats[..., 0:3].astype(np.float32) if self.geometric_prior else None,
                int(self.config.get("prior_version", 1)), residual, frame, mix)
            rot6d = matrix_to_rotation_6d(mats)
        out = np.concatenate([trans, rot6d], axis=2).astype(np.float32)
        return (out, cache) if return_cache else out

    # -- one frame at a time ---------------------------------------------------------------
    def new_frame_cache(self) -> "FrameCache":
        """An empty cache for :meth:`step_frame` (a new sequence)."""
        return FrameCache(self.n_layers, self.n_heads, self.window, self.d_model // self.n_heads)

    def step_frame(self, feats: np.ndarray, valid: bool, cache: "FrameCache",
                   matrices: bool = False):
        """One frame: feats (25, 18), valid -> (22, 6) float32; adds the frame to ``cache``.
        With ``matrices``: ((22, 6), rotations (21, 3, 3) float32 that slots 1..21 encode, or
        None without the geometric prior), so the caller need not decode them again.

        The same operations as :meth:`__call__` on that frame with the cache of the frames
        before it (outputs equal to float32 rounding), arranged for the cost of one frame,
        which is the number of NumPy calls rather than arithmetic: weights prepared once
        (head layers fused), keys rotated once at their absolute frame index into the ring of
        :class:`FrameCache`, attention straight on the ring with an additive mask, no
        per-frame tables.
        """
        w = self._frame_weights or self._prepare_frame_weights()
        n_heads, window = self.n_heads, self.window
        c = self.d_model
        d = c // n_heads
        t = cache.t
        slot = t % window
        x = (np.asarray(feats, dtype=np.float32).reshape(-1) - w["mean"]) / w["std"]
        if not valid:  # as x * valid: a frame without a detection enters as zeros
            x = np.zeros_like(x)
        frame = None
        if self.frame_branch and valid:  # without a detection its share is 0
            h = _matvec(w["fb_in_w"], x) + w["fb_in_b"]
            for up_w, up_b, down_w, down_b in w["fb_blocks"]:
                h = h + (_matvec(down_w, gelu(_matvec(up_w, _standardize_1d(h)) + up_b)) + down_b)
            frame = (_matvec(w["fb_out_w"], h) + w["fb_out_b"]).reshape(NUM_SLOTS - 2, 3)
        x = _matvec(w["in_w"], x) + w["in_b"]
        ang = t * w["inv_freq"]                                   # (d/2,) float64
        rope = np.empty((2, 2, d // 2), dtype=np.float32)         # [cos, cos], [-sin, sin]
        rope[0] = np.cos(ang)
        sin = np.sin(ang)
        rope[1, 0], rope[1, 1] = -sin, sin
        bias = cache.bias
        bias[slot] = 0.0  # a frame always sees itself
        for i, (qkv_w, qkv_b, proj_w, proj_b, up_w, up_b, down_w, down_b) \
                in enumerate(w["blocks"]):
            qkv = _matvec(qkv_w, _standardize_1d(x)) + qkv_b               # (3C,), q scaled
            qk = qkv[:2 * c].reshape(2 * n_heads, 2, d // 2)           # q and k heads, halves
            qk = qk * rope[0] + qk[:, ::-1] * rope[1]                   # RoPE at frame t
            cache.k[i, :, slot] = qk[n_heads:].reshape(n_heads, d)
            cache.v[i, :, slot] = qkv[2 * c:].reshape(n_heads, d)
            q = qk[:n_heads].reshape(n_heads, d, 1)
            scores = np.matmul(cache.k[i], q)[..., 0] + bias            # (H, window)
            att = np.exp(scores - scores.max(axis=-1, keepdims=True))
            att /= att.sum(axis=-1, keepdims=True)
            y = np.matmul(att[:, None], cache.v[i]).reshape(c)          # (H, 1, D) -> (C,)
            x = x + (_matvec(proj_w, y) + proj_b)
            h = gelu(_matvec(up_w, _standardize_1d(x)) + up_b)
            x = x + (_matvec(down_w, h) + down_b)
        if not valid:
            bias[slot] = -np.inf  # not a key for later frames
        cache.t = t + 1
        hidden = gelu(_matvec(w["head_w"], _standardize_1d(x)) + w["head_b"])
        root = _matvec(w["root_w"], hidden[:c]) + w["root_b"]          # (12,)
        body = _matvec(w["body_w"], hidden[c:2 * c]) + w["body_b"]    # (120,)
        out = np.empty((NUM_SLOTS, 6), dtype=np.float32)
        out[0] = root[:6] * ROOT_SCALE + ROOT_OFFSET
        out[1] = root[6:] + IDENTITY_6D
        out[2:] = body.reshape(NUM_SLOTS - 2, 6) + IDENTITY_6D
        mats = None
        if self.geometric_prior or self.joint_head:
            x3 = np.asarray(feats, dtype=np.float32).reshape(-1, 18)[:, 0:3]
            residual = None
            if self.joint_head:
                joint = _matvec(w["joint_w"], hidden[2 * c:]) + w["joint_b"]     # (60,)
                residual = joint.reshape(NUM_SLOTS - 2, 3) * JOINT_SCALE
            mats, _ = output_matrices(out[1:], x3 if self.geometric_prior else None,
                                      int(self.config.get("prior_version", 1)), residual,
                                      frame, np.float32(self.frame_mix))
            out[1:] = matrix_to_rotation_6d(mats)
        return (out, mats) if matrices else out

    def _prepare_frame_weights(self) -> dict:
        """The arrays of :meth:`step_frame`: contiguous float32, matrices as row blocks
        (:func:`_row_blocks`), the two heads' first layers stacked into one (2C, C) matrix.

        Each LayerNorm's weight and bias are folded into the linear layer after it
        (W diag(g) and W b + bias, in float64), and the attention scale 1/sqrt(D) into the
        query rows of ``qkv`` (RoPE is linear): the frame path standardises, then multiplies.
        """
        p = self.p
        c = self.d_model
        d = c // self.n_heads

        def arr(name):
            return np.ascontiguousarray(p[name], dtype=np.float32)

        def folded(ln: str, lin: str | tuple, row_scale: np.ndarray | None = None):
            """(row blocks of W diag(g), W b + bias) for LayerNorm ``ln`` then linear ``lin``
            (``lin`` may be a (weight, bias) pair of arrays); rows times ``row_scale``."""
            w_, b_ = (p[f"{lin}.weight"], p[f"{lin}.bias"]) if isinstance(lin, str) else lin
            w_, b_ = w_.astype(np.float64), b_.astype(np.float64)
            bias = w_ @ p[f"{ln}.bias"].astype(np.float64) + b_
            w_ = w_ * p[f"{ln}.weight"].astype(np.float64)[None, :]
            if row_scale is not None:
                w_, bias = w_ * row_scale[:, None], bias * row_scale
            return _row_blocks(w_.astype(np.float32)), bias.astype(np.float32)

        q_scale = np.ones(3 * c)
        q_scale[:c] = 1.0 / math.sqrt(d)
        blocks = []
        for i in range(self.n_layers):
            b = f"blocks.{i}."
            blocks.append((*folded(b + "ln1", b + "attn.qkv", q_scale),
                           _row_blocks(p[b + "attn.proj.weight"]), arr(b + "attn.proj.bias"),
                           *folded(b + "ln2", b + "mlp.0"),
                           _row_blocks(p[b + "mlp.2.weight"]), arr(b + "mlp.2.bias")))
        heads = ("root_head", "body_head") + (("joint_head",) if self.joint_head else ())
        head_w, head_b = folded("ln_f", (np.concatenate([p[f"{h}.0.weight"] for h in heads]),
                                         np.concatenate([p[f"{h}.0.bias"] for h in heads])))
        self._frame_weights = {
            "mean": arr("input_mean"), "std": arr("input_std"),
            "in_w": _row_blocks(p["input_proj.weight"]), "in_b": arr("input_proj.bias"),
            "blocks": blocks, "head_w": head_w, "head_b": head_b,
            "root_w": _row_blocks(p["root_head.2.weight"]), "root_b": arr("root_head.2.bias"),
            "body_w": _row_blocks(p["body_head.2.weight"]), "body_b": arr("body_head.2.bias"),
            **({"joint_w": _row_blocks(p["joint_head.2.weight"]),
                "joint_b": arr("joint_head.2.bias")} if self.joint_head else {}),
            "inv_freq": 1.0 / (self.rope_base ** (np.arange(0, d, 2, dtype=np.float64) / d)),
        }
        if self.frame_branch:
            fb = "frame_branch."
            self._frame_weights.update({
                "fb_in_w": _row_blocks(p[fb + "inp.weight"]), "fb_in_b": arr(fb + "inp.bias"),
                "fb_blocks": [(*folded(f"{fb}blocks.{i}.0", f"{fb}blocks.{i}.1"),
                               _row_blocks(p[f"{fb}blocks.{i}.4.weight"]),
                               arr(f"{fb}blocks.{i}.4.bias")) for i in range(self.frame_blocks)],
                "fb_out_w": _row_blocks(p[fb + "out.weight"]), "fb_out_b": arr(fb + "out.bias")})
        return self._frame_weights


class FrameCache:
    """Key/value cache of :meth:`NumpyMotionTransformer.step_frame`: per layer the keys
    (rotated at their absolute frame index) and values of the last ``window`` frames in a ring
    (frame t in slot t % window), each (n_layers, n_heads, window, head_dim); per slot an
    additive attention mask ``bias`` (window,): 0 for a frame with a detection, -inf for one
    without or not seen yet; ``t`` = frames seen. Updated in place."""

    def __init__(self, n_layers: int, n_heads: int, window: int, head_dim: int):
        self.t = 0
        self.k = np.zeros((n_layers, n_heads, window, head_dim), dtype=np.float32)
        self.v = np.zeros_like(self.k)
        self.bias = np.full(window, -np.inf, dtype=np.float32)


#: Most elements of one BLAS matrix-vector product in :meth:`step_frame`: OpenBLAS runs a
#: product of at least 9216 on two threads, and on a busy machine a frame then waits for the
#: second one (measured on the 2-core box during a training run: 310 us wall for 37 us CPU).
BLAS_SERIAL_ELEMENTS = 8192


def _row_blocks(w: np.ndarray) -> np.ndarray:
    """w (N, M) -> the same array as (N / n, n, M) row blocks (a view), n the largest divisor
    of N with n * M <= BLAS_SERIAL_ELEMENTS (at least 1)."""
    n_rows, m = w.shape
    n = max([k for k in range(1, n_rows + 1) if n_rows % k == 0 and k * m <= BLAS_SERIAL_ELEMENTS],
            default=1)
    return np.ascontiguousarray(w, dtype=np.float32).reshape(n_rows // n, n, m)


def _matvec(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """w (N / n, n, M) row blocks (:func:`_row_blocks`) @ x (M,) -> (N,): one NumPy call, a
    small BLAS product per block, all on the calling thread."""
    return np.matmul(w, x).reshape(-1)


def _standardize_1d(x: np.ndarray) -> np.ndarray:
    """:func:`layer_norm` of one vector x (C,) without its weight and bias (folded into the
    next layer), in few NumPy calls (Python float scalars: NumPy scalar arithmetic costs
    microseconds)."""
    n = x.shape[0]
    d = x - np.float32(float(np.add.reduce(x)) / n)
    d *= np.float32(1.0 / math.sqrt(float(np.dot(d, d)) / n + LN_EPS))
    return d


def load_numpy_model(path: str | Path) -> tuple[NumpyMotionTransformer, dict]:
    """Weights (.safetensors as written by ``engine.checkpoint.export_weights``: the ModelConfig
    JSON under metadata key ``model_config``, a JSON ``meta`` dict) -> (model, meta dict).
    Raises CheckpointError for anything unusable (and for another feature version)."""
    from safetensors import SafetensorError, safe_open
    from safetensors.numpy import load_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(
            f"{path.name}: the NumPy backend reads .safetensors weights only "
            "(export them with engine.checkpoint.export_weights, or use the torch backend)")
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = dict(f.metadata() or {})
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path.name} is not a readable safetensors file: {err}") from err
    if "model_config" not in meta:
        raise CheckpointError(f"{path.name} is not a Blaze2Cap weights file (no model config)")
    try:
        config = json.loads(meta["model_config"])
        info = json.loads(meta.get("meta", "{}"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path.name} has corrupt metadata: {err}") from err
    fv = info.get("feature_version", FEATURE_VERSION) if isinstance(info, dict) else None
    if fv != FEATURE_VERSION:
        raise CheckpointError(f"{path.name} was made for feature version {fv}, "
                              f"this Blaze2Cap computes version {FEATURE_VERSION}")
    bad = [k for k, v in state.items() if v.dtype.kind == "f" and not np.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path.name} holds non-finite parameters ({', '.join(bad[:5])})")
    return NumpyMotionTransformer(state, config), info
