"""Atomic output files: a file appears under its final name complete, or not at all.

Every file Blaze2Cap writes (checkpoints, weights, dataset arrays and maps, landmarks and
their sidecars, predictions, reports) goes through :class:`AtomicFile`:

1. a new temporary file is created beside the destination (``.NAME.RANDOM.tmp``, same folder,
   so the rename cannot cross file systems), with the permissions any new file gets
   (``0o666`` minus the umask; ``tempfile.mkstemp`` would make it ``0o600``);
2. the caller writes it; :meth:`AtomicFile.commit` flushes, fsyncs and ``os.replace``\\ s it
   onto the final name, which is atomic on POSIX and Windows.

Killing the process at any moment therefore leaves the old file (or no file) under the final
name, never a half-written one. An exception removes the temporary file; only a hard kill
(SIGKILL, power loss) can leave a hidden ``.tmp`` file behind.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import IO, Any, Callable

TEMP_SUFFIX = ".tmp"


class AtomicFile:
    """A file written under a temporary name in ``path``'s folder and renamed into place.

    ``with AtomicFile(path) as f: f.file.write(...)`` commits when the block ends normally and
    removes the temporary file when it raises. Streaming writers may instead call
    :meth:`commit` / :meth:`abort` themselves. ``open_file=False`` only reserves the temporary
    path (``tmp``) for writers that need a file name (e.g. video writers); ``suffix`` then
    keeps the extension they use to choose a format.
    """

    def __init__(self, path: str | os.PathLike, open_file: bool = True,
                 suffix: str = TEMP_SUFFIX):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}{suffix}")
        # "x": a new file (never an existing one or a planted link); mode 0o666 & ~umask.
        self.file: IO[bytes] | None = open(self.tmp, "xb")
        if not open_file:
            self.file.close()
            self.file = None
        self.done = False

    def commit(self) -> Path:
        """Flush, fsync and rename the temporary file onto ``path``; returns ``path``."""
        if self.done:
            raise RuntimeError(f"{self.path} was already committed or aborted")
        try:
            if self.file is not None:
                self.file.flush()
                os.fsync(self.file.fileno())
                self.file.close()
            else:  # written by someone else through the path: sync it too
                with open(self.tmp, "rb") as f:
                    os.fsync(f.fileno())
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self.done = True
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file; ``path`` is left as it was."""
        if self.done:
            return
        self.done = True
        if self.file is not None:
            self.file.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and not self.done:
            self.commit()
        else:
            self.abort()


def atomic_write_bytes(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Create ``path``'s folder if needed, call ``write(binary_file)`` on an
    :class:`AtomicFile` and commit it; returns ``path``. Nothing is left on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with AtomicFile(path) as af:
        write(af.file)
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """``obj`` as UTF-8 JSON, atomically: a list one item per line, anything else indented."""
    if isinstance(obj, list):
        text = "[\n" + ",\n".join(json.dumps(x) for x in obj) + "\n]\n"
    else:
        text = json.dumps(obj, indent=2) + "\n"
    data = text.encode("utf-8")
    return atomic_write_bytes(path, lambda f: f.write(data))
