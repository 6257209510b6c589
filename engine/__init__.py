"""Blaze2Cap engine: BlazePose landmarks -> skeleton rotations (numpy + torch only)."""

__version__ = "0.1.0"
