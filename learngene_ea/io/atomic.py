"""Writing files so that a kill at any instant leaves the old file or the new one, never half.

At the bottom of the package: it imports only :mod:`learngene_ea.errors`, and every module that
writes a user's file (checkpoints, learngenes, reports, the resolved recipe) writes through it.
"""
from __future__ import annotations

import os
import re
import tempfile

from ..errors import WriteError


# Fault injection for the crash-safety tests: SIGKILL this process halfway through writing
# the file of that name (e.g. "gen_0002.pkl"). Unset in normal use.
_KILL_DURING_WRITE = "LEARNGENE_EA_TEST_KILL_DURING_WRITE"


def _die_halfway(f, data: bytes) -> None:
    import signal

    f.write(data[: len(data) // 2])
    f.flush()
    os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename.

    A write the system refuses (full disk, ``ulimit -f``, read-only folder) raises
    :class:`~learngene_ea.errors.WriteError` naming ``path``; the old file, if any, is left as it was.
    """
    path = os.fspath(path)
    try:
        _write_and_rename(path, data)
    except WriteError:
        raise
    except OSError as err:
        raise WriteError(path, err) from err


def _write_and_rename(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            if os.environ.get(_KILL_DURING_WRITE) == os.path.basename(path):
                _die_halfway(f, data)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:  # gone already, or the folder refuses even that: the write's own error matters
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # what atomic_write_bytes's mkstemp names


def is_temporary(name: str) -> bool:
    """Is ``name`` (a file name) the temporary file of an atomic write (``.gen_0002.pkl.k3j9_x0a.tmp``)?"""
    return bool(_TEMPORARY.match(name))


def remove_temporaries(folder: str | os.PathLike) -> list[str]:
    """Delete the temporary files that killed atomic writes left under ``folder``; return their paths.

    Only for a folder no other process writes (a run folder whose lock is held): a live write's
    temporary file would be deleted too.
    """
    removed = []
    for parent, _, files in os.walk(os.fspath(folder)):
        for name in files:
            if is_temporary(name):
                path = os.path.join(parent, name)
                try:
                    os.unlink(path)
                    removed.append(path)
                except FileNotFoundError:
                    pass
    return removed
