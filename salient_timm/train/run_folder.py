"""A run folder that cannot lose work: one run at a time, no stale temp files, consistent after any kill.

Per finished epoch the trainer writes, each atomically (temp file, fsync, rename): ``last.pth`` (model,
optimizer, scheduler, RNG and the metric history), then ``best.pth`` if the epoch is the best so far,
then ``metrics.json`` / ``metrics.csv``. ``last.pth`` is the commit point: its history is the truth.
A kill can therefore only leave ``best.pth`` or the metrics one epoch behind it, which
``repair`` puts right before a resumed run continues:

- ``best.pth`` missing or older than the best epoch of the history, when that epoch is ``last.pth``'s
  own (the only way a kill can leave it behind): copied from ``last.pth``;
- ``metrics.json`` / ``metrics.csv``: rewritten from the history;
- ``.tmp-*`` files of interrupted writes: removed.

``lock_run_folder`` holds an exclusive ``fcntl`` lock on ``RUN_DIR/.lock`` for the whole run, so a
second run on the same folder fails at once instead of overwriting the first.
"""

import contextlib
import glob
import os
import shutil
from typing import Any, Dict, Iterator, List, Optional

from ..errors import RunFolderError
from ..io.atomic import TEMP_PREFIX, atomic_copy
from ..io.checkpoint import TrainCheckpoint
from .report import write_metrics

__all__ = ["best_row", "lock_run_folder", "remove_stale_temps", "repair"]

LOCK_NAME = ".lock"


def _check_folder(path: str) -> None:
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunFolderError(f"run folder {path} is a file; give --output a folder path")


@contextlib.contextmanager
def lock_run_folder(path: str, enabled: bool = True) -> Iterator[None]:
    """Hold ``path``'s run lock (creating the folder) while the block runs; ``RunFolderError`` if another run has it.

    A folder this call created is removed again when the block fails before writing anything into it (a run
    refused at its start leaves no folder behind)."""
    _check_folder(path)
    if not enabled:
        yield
        return
    created = _first_missing(path)  # the outermost folder this call creates (None if path exists)
    os.makedirs(path, exist_ok=True)
    try:
        with _locked(path):
            yield
    except BaseException:
        if created and set(os.listdir(path)) <= {LOCK_NAME}:
            shutil.rmtree(created, ignore_errors=True)
        raise


def _first_missing(path: str) -> Optional[str]:
    missing = None
    path = os.path.abspath(path)
    while not os.path.exists(path):
        missing, path = path, os.path.dirname(path)
    return missing


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # no fcntl (Windows): the folder is not locked
        yield
        return
    lock_path = os.path.join(path, LOCK_NAME)
    with open(lock_path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise RunFolderError(
                f"run folder {path} is in use by another salient-train (pid {holder}); wait for it "
                "to finish or pick another --output"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def remove_stale_temps(path: str) -> List[str]:
    """Delete temp files that killed writes left behind (call with the lock held). Returns their names."""
    stale = glob.glob(os.path.join(path, TEMP_PREFIX + "*")) + glob.glob(os.path.join(path, "*.tmp"))
    for name in stale:
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)
    return [os.path.basename(n) for n in stale]


def best_row(history: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The epoch ``best.pth`` holds: the highest ``val_top1`` where the run holds a validation split out
    (``--holdout``), else the highest ``test_top1``; the first of equal epochs. None for an empty history."""
    if not history:
        return None
    select = "val_top1" if all("val_top1" in h for h in history) else "test_top1"
    return max(history, key=lambda h: h[select])


def repair(path: str, last: TrainCheckpoint) -> List[str]:
    """Make ``best.pth`` and the metrics agree with ``last.pth`` (read as ``last``); returns what was fixed."""
    fixed = []
    history = list(last.metrics)
    last_epoch = last.epoch  # 0-based; history rows carry "epoch": 1-based
    best_path, last_path = os.path.join(path, "best.pth"), os.path.join(path, "last.pth")
    best = best_row(history)
    if best is not None:
        best_epoch = int(best["epoch"]) - 1
        have = None
        if os.path.exists(best_path):
            try:
                have = TrainCheckpoint.read(best_path).epoch
            except Exception:  # noqa: BLE001  a torn or foreign best.pth is replaced below when possible
                have = None
        if have != best_epoch and best_epoch == last_epoch:
            atomic_copy(last_path, best_path)
            fixed.append(f"best.pth restored from last.pth (epoch {best_epoch + 1}, the best)")
        elif have != best_epoch:
            fixed.append(
                f"best.pth does not hold the best epoch {best_epoch + 1} and cannot be rebuilt "
                "(last.pth is a later epoch)"
            )
    write_metrics(path, history)
    return fixed
