"""The one atomic writer: a temp file in the target's folder, flushed and fsynced, then renamed over the target.

A reader sees the old file or the new one, never a torn one, also after a crash or a kill mid-write; a failed write
leaves the old file and no temp behind. Temp names start with ``.tmp-`` so a run folder's repair can find and remove
the ones a killed process left (``train.run_folder.remove_stale_temps``). Used for checkpoints, ``best.pth``, and
the metrics files.
"""

import contextlib
import os
import shutil
import tempfile
from typing import IO, Any, Iterator

__all__ = ["atomic_file", "atomic_write_text", "atomic_copy", "TEMP_PREFIX"]

TEMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """``with atomic_file(path, "w") as f: ...``: ``f`` is a temp file beside ``path`` (its folder is created);
    on a clean exit it is flushed, fsynced and renamed to ``path``; on an exception it is removed and ``path`` is
    left as it was. ``mode``: a write mode (``"wb"``, ``"w"``); ``open_kwargs`` go to ``open`` (``newline=""``)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see ``atomic_file``)."""
    with atomic_file(path, "w") as f:
        f.write(text)


def atomic_copy(src: str, dst: str) -> None:
    """Copy ``src`` to ``dst`` atomically (see ``atomic_file``)."""
    with open(src, "rb") as source, atomic_file(dst, "wb") as f:
        shutil.copyfileobj(source, f)
