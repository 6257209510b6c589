"""Errors with a message a user can act on. The CLI and the add-on show ``str(err)`` as one
line; anything else is a bug and keeps its traceback."""


class Blaze2CapError(Exception):
    """Base class: a clear, one-sentence problem with the user's input or environment."""


class InputError(Blaze2CapError, ValueError):
    """Bad input data: wrong shape, type, values, or a missing / unreadable file."""


class CheckpointError(Blaze2CapError):
    """A checkpoint or weights file that cannot be used (corrupt, hostile, incompatible)."""


class DatasetError(Blaze2CapError):
    """A dataset folder that is incomplete, inconsistent or unsafe."""


class VideoError(InputError):
    """A video that cannot be read or holds no usable person."""


class TrainingError(Blaze2CapError):
    """A training run that cannot continue (e.g. repeated non-finite losses)."""
