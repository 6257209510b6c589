"""MotionTransformer: causal temporal Transformer, BlazePose features -> 22 x 6D per frame.

Input  (B, S, 25, 18) features (``engine.features``) and (B, S) validity.
Output (B, S, 22, 6): slot 0 root translation, slot 1 root rotation (6D), slots 2..21 local
joint rotations (6D); see ``engine.skeleton``.

Design:
* flatten + project to ``d_model``; inputs are standardised by buffers fitted on the training
  data (saved with the weights);
* rotary positional encoding (RoPE) inside attention: attention depends only on the distance
  between frames, so a frame's output is the same whether it is computed in a training
  window, a long sequence processed in chunks, or one frame at a time (``engine.inference``);
* causal, banded self-attention: frame t attends to frames t-window+1 .. t that are valid
  (frames without a detection are masked out as keys); a frame with no valid key attends to
  itself only;
* optional domain vectors (``num_domains > 1``): a learnt (d_model,) vector per data source
  (real video, data-engine renders, synthetic noise) added after the input projection, so
  that the model can keep what differs between the sources apart from what they share;
  inference uses domain 0 (real video), which ``fold_domain`` bakes into the input bias;
* split-head decoder: root head -> (B, S, 2, 6), body head -> (B, S, 20, 6); rotation slots
  are predicted as residuals of the identity so an untrained model outputs the rest pose;
* optional joint head (``joint_head``): (B, S, 20, 3) joint positions as a residual on the
  joints of the model's own rotations on the default body; the rotations are then turned to
  point every bone at them (``engine.guide``). It starts at zero: no change;
* optional per-frame branch (``frame_branch``, needs the joint head): an MLP from one frame's
  standardised features to the 20 joints (metres, camera frame, Hips at 0), sharing nothing
  with the Transformer and trained by its own joint loss (``engine.losses``, "frame"). In
  evaluation mode (inference, validation) the joints that guide the rotations are
  ``(1 - frame_mix) * head + frame_mix * branch`` on frames with a detection; in training mode
  the head's alone, so that the two are trained apart and their errors stay independent (an
  ensemble of a temporal and a per-frame estimate: on the held-out sequence the per-frame MLP
  alone reaches 48 mm PA-MPJPE, the Transformer's head 52, their mean 46;
  ``scripts/position_probe.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import rotations as rot
from .guide import output_matrices
from .model_config import IDENTITY_6D, JOINT_SCALE, ROOT_OFFSET, ROOT_SCALE, ModelConfig
from .skeleton import NUM_SLOTS

__all__ = ["ModelConfig", "MotionTransformer", "IDENTITY_6D", "ROOT_SCALE", "ROOT_OFFSET",
           "dropout", "Dropout"]

_WORD_LEVELS = 65536  # the CPU dropout mask draws 16 random bits per element


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout, as ``F.dropout``, with a mask that is cheap to draw on the CPU.

    On the CPU ``F.dropout`` draws one Bernoulli number per element from the Mersenne
    Twister at about 20 ns each: 0.3 s of the 0.55 s forward pass of a training step (batch
    64 x 64 frames, 2 cores). Here each element takes 16 bits of a 64-bit random word
    (``random_`` costs the same per word as per float), so the mask costs a quarter of the
    draws. The drop probability is ``round(p * 65536) / 65536`` (within 8e-6 of ``p``) and
    the kept values are scaled to keep the expectation exact. Other devices use
    ``F.dropout``. x: any shape; returns the same shape and dtype.
    """
    if not training or p <= 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, True)
    dropped = round(p * _WORD_LEVELS)
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2 ** 63), None)
    bits = words.view(torch.int16)[:n].view(x.shape)
    keep = bits >= (dropped - _WORD_LEVELS // 2)     # int16 spans -32768 .. 32767
    return torch.where(keep, x * (_WORD_LEVELS / (_WORD_LEVELS - dropped)), x.new_zeros(()))


class Dropout(nn.Module):
    """``nn.Dropout`` through :func:`dropout` (same behaviour, cheaper mask on the CPU)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def rope_tables(n: int, head_dim: int, base: float, device=None, dtype=torch.float32):
    """cos, sin tables (n, head_dim/2) for positions 0..n-1 (computed in float64)."""
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64, device=device) / head_dim))
    ang = torch.arange(n, dtype=torch.float64, device=device)[:, None] * inv[None]
    return ang.cos().to(dtype), ang.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, S, D) rotated pairwise (first half / second half) by position."""
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def attention_mask(valid_q: torch.Tensor, valid_k: torch.Tensor, window: int) -> torch.Tensor:
    """Boolean mask (B, 1, Sq, Sk): True where query i may attend to key j.

    Keys are the ``Sk - Sq`` cached past frames followed by the Sq current frames.
    Allowed: j <= i, i - j < window, key valid; a query always sees itself.
    """
    sq, sk = valid_q.shape[1], valid_k.shape[1]
    past = sk - sq
    qi = torch.arange(sq, device=valid_q.device)[:, None] + past
    kj = torch.arange(sk, device=valid_q.device)[None, :]
    band = (kj <= qi) & (qi - kj < window)
    allowed = band[None] & valid_k[:, None, :]
    allowed = allowed | (kj == qi)[None]
    return allowed[:, None]


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        assert cfg.d_model % cfg.n_heads == 0
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, x, mask, cos, sin, past_kv=None):
        """x (B, S, C); past_kv: (k, v) of cached frames, each (B, H, P, D) (k before RoPE).
        Returns y (B, S, C) and the (k, v) of past + current frames (k before RoPE)."""
        B, S, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, S, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))
        if past_kv is not None:
            k = torch.cat([past_kv[0], k], dim=2)
            v = torch.cat([past_kv[1], v], dim=2)
        P = k.shape[2] - S
        qr = apply_rope(q, cos[P:P + S], sin[P:P + S])
        kr = apply_rope(k, cos[:P + S], sin[:P + S])
        p = self.dropout if self.training else 0.0
        if p > 0 and x.device.type == "cpu":
            # SDPA's math path with the cheaper CPU dropout mask (see ``dropout``).
            scores = (qr @ kr.transpose(-1, -2)) * (qr.shape[-1] ** -0.5)
            att = scores.masked_fill(~mask, float("-inf")).softmax(-1)
            y = dropout(att, p, True) @ v
        else:
            y = F.scaled_dot_product_attention(qr, kr, v, attn_mask=mask, dropout_p=p)
        y = y.transpose(1, 2).contiguous().view(B, S, C)
        return self.proj(y), (k, v)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(),
                                 nn.Linear(cfg.d_ff, cfg.d_model), Dropout(cfg.dropout))
        self.drop = Dropout(cfg.dropout)

    def forward(self, x, mask, cos, sin, past_kv=None):
        a, kv = self.attn(self.ln1(x), mask, cos, sin, past_kv)
        x = x + self.drop(a)
        return x + self.mlp(self.ln2(x)), kv


class FrameBranch(nn.Module):
    """Per-frame MLP: standardised features (..., 450) -> joints 1..20 (..., 20, 3), metres,
    camera frame, Hips at 0. ``width`` wide, ``blocks`` pre-LayerNorm residual blocks."""

    def __init__(self, n_in: int, width: int, blocks: int, p: float):
        super().__init__()
        self.inp = nn.Linear(n_in, width)
        self.blocks = nn.ModuleList(nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), Dropout(p),
            nn.Linear(width, width)) for _ in range(blocks))
        self.out = nn.Linear(width, (NUM_SLOTS - 2) * 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h).view(*x.shape[:-1], NUM_SLOTS - 2, 3)


class MotionTransformer(nn.Module):
    """Causal temporal Transformer; see the module docstring for shapes."""

    def __init__(self, cfg: ModelConfig = ModelConfig()):
        super().__init__()
        self.cfg = cfg
        n_in = cfg.num_keypoints * cfg.num_features
        self.register_buffer("input_mean", torch.zeros(n_in))
        self.register_buffer("input_std", torch.ones(n_in))
        self.input_proj = nn.Linear(n_in, cfg.d_model)
        self.input_drop = Dropout(cfg.dropout)
        if cfg.num_domains > 1:  # zero: every source starts where a model without them is
            self.domain_embed = nn.Parameter(torch.zeros(cfg.num_domains, cfg.d_model))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.root_head = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model), nn.GELU(),
                                       nn.Linear(cfg.d_model, 2 * 6))
        self.body_head = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model), nn.GELU(),
                                       nn.Linear(cfg.d_model, (NUM_SLOTS - 2) * 6))
        heads = [self.root_head, self.body_head]
        if cfg.joint_head:
            self.joint_head = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model), nn.GELU(),
                                            nn.Linear(cfg.d_model, (NUM_SLOTS - 2) * 3))
            heads.append(self.joint_head)
        if cfg.frame_branch:
            self.frame_branch = FrameBranch(n_in, cfg.frame_branch, cfg.frame_blocks,
                                            cfg.dropout)
        for head in heads:  # start at the rest pose (and no joint correction)
            nn.init.normal_(head[-1].weight, std=1e-3)
            nn.init.zeros_(head[-1].bias)
        self.register_buffer("identity_6d", torch.tensor(IDENTITY_6D), persistent=False)
        self.register_buffer("root_scale", torch.tensor(ROOT_SCALE), persistent=False)
        self.register_buffer("root_offset", torch.tensor(ROOT_OFFSET), persistent=False)

    @torch.no_grad()
    def fold_domain(self, domain: int = 0) -> "MotionTransformer":
        """A copy without domain vectors that computes what this model computes for
        ``domain`` (its vector added to the input projection's bias); ``self`` when it has
        none. For export: released weights have the plain architecture."""
        if self.cfg.num_domains <= 1:
            return self
        if not 0 <= domain < self.cfg.num_domains:
            raise ValueError(f"domain must be below {self.cfg.num_domains}, got {domain}")
        from dataclasses import replace

        plain = MotionTransformer(replace(self.cfg, num_domains=1)).to(self.input_mean.device)
        state = {k: v for k, v in self.state_dict().items() if k != "domain_embed"}
        state["input_proj.bias"] = state["input_proj.bias"] + self.domain_embed[domain]
        plain.load_state_dict(state)
        return plain.train(self.training)

    def _standardize(self, feats: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, S, 25, 18), (B, S) -> (B, S, 450) standardised, 0 on frames without a detection."""
        B, S = feats.shape[:2]
        return (feats.reshape(B, S, -1) - self.input_mean) / self.input_std * valid[..., None]

    @property
    def receptive_field(self) -> int:
        """Frames of input that one output frame can depend on (itself included)."""
        return self.cfg.n_layers * (self.cfg.window - 1) + 1

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def set_input_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardise inputs with statistics of valid training frames, each (25*18,)."""
        self.input_mean.copy_(mean.reshape(-1))
        self.input_std.copy_(std.reshape(-1).clamp_min(1e-3))

    def forward(self, feats: torch.Tensor, valid: torch.Tensor | None = None,
                past: list | None = None, return_cache: bool = False,
                domain: torch.Tensor | None = None, return_joints: bool = False,
                return_frame: bool = False):
        """feats (B, S, 25, 18), valid (B, S) bool -> (B, S, 22, 6).

        ``return_joints``: also return the joints that guided the rotations (B, S, 21, 3)
        float32, metres, camera frame, Hips at 0 (``engine.guide.guide_globals``; None without
        a joint head; with a per-frame branch in evaluation mode, the mix): the result is
        ``(out, joints)``, or ``(out, joints, cache)`` with ``return_cache``.
        ``return_frame``: also return the per-frame branch's joints 1..20 (B, S, 20, 3) (for its
        loss; None without a branch), after ``joints`` and before ``cache``.

        ``domain``: (B,) int64 data source of each sequence (``engine.data.DOMAINS``; default
        0, real video); used only by a model with ``num_domains > 1``.
        ``past``: per layer (k, v, valid) of up to window-1 earlier frames (from a previous
        call with ``return_cache=True``); then the result is ``(out, cache)``.
        """
        B, S = feats.shape[:2]
        if valid is None:
            valid = torch.ones(B, S, dtype=torch.bool, device=feats.device)
        x = self._standardize(feats, valid)
        frame = self.frame_branch(x) if self.cfg.frame_branch and (
            return_frame or not self.training) else None
        # trained apart (the head guides alone), mixed in at inference
        guiding = None if self.training or frame is None else frame.float()
        mix = 0.0 if guiding is None else self.cfg.frame_mix * valid[..., None, None].float()
        x = self.input_proj(x)
        if self.cfg.num_domains > 1:
            if domain is None:
                x = x + self.domain_embed[0]
            else:
                if domain.shape != (B,) or not bool(((domain >= 0)
                                                      & (domain < self.cfg.num_domains)).all()):
                    raise ValueError(f"domain must be ({B},) indices below "
                                     f"{self.cfg.num_domains}")
                x = x + self.domain_embed[domain][:, None]
        x = self.input_drop(x)
        past_valid = past[0][2] if past else valid[:, :0]
        valid_k = torch.cat([past_valid, valid], dim=1)
        mask = attention_mask(valid, valid_k, self.cfg.window)
        hd = self.cfg.d_model // self.cfg.n_heads
        cos, sin = rope_tables(valid_k.shape[1], hd, self.cfg.rope_base, x.device, x.dtype)
        cache = []
        for i, blk in enumerate(self.blocks):
            x, (k, v) = blk(x, mask, cos, sin, past[i][:2] if past else None)
            keep = self.cfg.window - 1
            cache.append((k[:, :, -keep:], v[:, :, -keep:], valid_k[:, -keep:]))
        x = self.ln_f(x)
        root = self.root_head(x).view(B, S, 2, 6)
        body = self.body_head(x).view(B, S, NUM_SLOTS - 2, 6) + self.identity_6d
        trans = root[:, :, :1] * self.root_scale + self.root_offset
        rot6d = torch.cat([root[:, :, 1:] + self.identity_6d, body], dim=2)  # (B, S, 21, 6)
        joints = None
        if self.cfg.geometric_prior or self.cfg.joint_head:
            residual = (self.joint_head(x).view(B, S, NUM_SLOTS - 2, 3) if self.cfg.joint_head
                        else None)
            with torch.autocast(device_type=x.device.type, enabled=False):
                mats, joints = output_matrices(
                    rot6d.float(), feats[..., 0:3].float() if self.cfg.geometric_prior else None,
                    self.cfg.prior_version,
                    None if residual is None else residual.float() * JOINT_SCALE,
                    guiding, mix)
                rot6d = rot.matrix_to_rotation_6d(mats)
        out = torch.cat([trans.to(rot6d.dtype), rot6d], dim=2)
        result = (out,) + ((joints,) if return_joints else ()) + \
            ((frame,) if return_frame else ()) + ((cache,) if return_cache else ())
        return result if len(result) > 1 else out
