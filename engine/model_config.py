"""The MotionTransformer's configuration and output constants, importable without torch (the
NumPy inference path inside Blender uses them too)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .features import NUM_FEATURES, NUM_KEYPOINTS

IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
#: Output scale and offset of slot 0 (dx, dy, dz per frame; x, y, z), metres: a unit network
#: output is a typical displacement / position, so all output slots train at similar scales.
ROOT_SCALE = (0.02, 0.02, 0.02, 0.5, 0.5, 2.0)
ROOT_OFFSET = (0.0, 0.0, 0.0, 0.0, 0.0, 4.0)
#: Output scale of the joint head (``ModelConfig.joint_head``), metres: a unit network output
#: moves a joint 10 cm from where the model's rotations put it on the default body.
JOINT_SCALE = 0.1


@dataclass(frozen=True)
class ModelConfig:
    num_keypoints: int = NUM_KEYPOINTS  # BlazePose landmarks per frame
    num_features: int = NUM_FEATURES    # features per landmark
    d_model: int = 256                  # width of the residual stream
    n_layers: int = 4                   # Transformer blocks
    n_heads: int = 4                    # attention heads
    d_ff: int = 512                     # hidden width of the feed-forward blocks
    dropout: float = 0.1                # dropout in attention, FFN and on the input
    window: int = 64                    # frames a frame attends to (itself included)
    rope_base: float = 10000.0          # RoPE frequency base
    geometric_prior: bool = True        # rotations are residuals on engine.ik's prior
    prior_version: int = 2              # engine.ik.prior_rotations version (1: before 2026-11)
    num_domains: int = 1                # >1: a learnt vector per data source (engine.data.DOMAINS)
                                        # added after the input projection; 0 = real video
    joint_head: bool = False            # a third head predicts the 20 joints; the rotations
                                        # are turned to point the bones at them (engine.guide)
    frame_branch: int = 0               # >0: width of a per-frame MLP that also predicts the
                                        # 20 joints; at inference the guiding joints are
                                        # (1 - frame_mix) head + frame_mix branch (needs
                                        # joint_head; engine.model.FrameBranch)
    frame_blocks: int = 2               # residual blocks of that MLP
    frame_mix: float = 0.5              # the branch's share of the guiding joints

    def __post_init__(self) -> None:
        if not 1 <= self.num_domains <= 16:
            raise ValueError(f"num_domains must be 1..16, got {self.num_domains}")
        for name in ("geometric_prior", "joint_head"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("frame_branch", "frame_blocks"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int):
                raise ValueError(f"{name} must be an integer, got {getattr(self, name)!r}")
        if not 0 <= self.frame_branch <= 4096 or not 0 <= self.frame_blocks <= 16:
            raise ValueError("frame_branch must be 0..4096 and frame_blocks 0..16")
        if self.frame_branch and not self.joint_head:
            raise ValueError("frame_branch needs joint_head: the branch's joints are mixed "
                             "with the joint head's")
        if isinstance(self.frame_mix, bool) or not isinstance(self.frame_mix, (int, float)) \
                or not 0.0 <= self.frame_mix <= 1.0:
            raise ValueError(f"frame_mix must be in [0, 1], got {self.frame_mix!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        known.setdefault("geometric_prior", False)  # checkpoints from before the prior
        known.setdefault("prior_version", 1)  # checkpoints from before prior version 2
        unknown = set(d) - set(known)
        if unknown:
            raise ValueError(f"unknown model config fields: {sorted(unknown)}")
        return cls(**known)
