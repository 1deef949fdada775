"""One writer per run folder: an advisory lock on ``<run dir>/.lock``, held for the run's life.

``fcntl.flock`` ties the lock to the open file, so the kernel releases it when the process ends,
however it ends (a kill included): a lock file left behind never blocks a later run. Only the
process that writes the folder takes it; SCOOP workers and Ray tasks never do. The lock file
records the holder's pid, for the sentence that refuses a second writer.
"""
from __future__ import annotations

import contextlib
import os

from ..errors import UserError, WriteError

try:
    import fcntl
except ImportError:  # not POSIX (Windows): no lock, as before
    fcntl = None

LOCK_FILE = ".lock"


@contextlib.contextmanager
def run_folder_lock(folder: str):
    """Hold ``folder``'s lock for the ``with`` block; another process holding it: a :class:`UserError`."""
    if fcntl is None:
        yield
        return
    path = os.path.join(folder, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as err:  # a read-only folder (a --resume of someone else's run): before anything is written
        raise WriteError(path, err) from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # another process holds it
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise UserError(f"run directory {folder!r} is being written by another process (pid {holder}); wait for "
                        "it to end (or stop it) before resuming or writing there.") from None
    except OSError:  # a file system without locks (some network mounts): run unlocked, as before
        pass
    try:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        except OSError as err:  # a full disk: the run could not write its first file either
            raise WriteError(path, err) from err
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race a waiting process)
