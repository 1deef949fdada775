"""What is wrong with a path the user gave, in words: the shared vocabulary of "file X cannot be used".

At the bottom of the package (it imports only :mod:`.errors`). A recipe, a learngene, a
checkpoint or an image named by the user can be missing, a symbolic-link loop, a link to
nothing, a folder, or a fifo (opening one would wait for a writer for ever); a text file can be
in another encoding than UTF-8. Callers turn the problem into their own one sentence.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile

from ..errors import UserError

_KINDS = {stat.S_IFIFO: "a fifo (named pipe)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device"}


def _stat_problem(path: str) -> tuple[str | None, os.stat_result | None]:
    try:
        return None, os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symbolic-link loop", None
        if err.errno == errno.ENOENT and os.path.islink(path):
            return f"is a symbolic link to {os.readlink(path)!r}, which does not exist", None
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            return "does not exist", None
        return f"cannot be read ({err.strerror})", None


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a regular file one can read (``"does not exist"``, ...), or ``None``."""
    problem, st = _stat_problem(os.fspath(path))
    if problem:
        return problem
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(st.st_mode):
        return f"is {_KINDS.get(stat.S_IFMT(st.st_mode), 'not a regular file')}, not a regular file"
    return None


def folder_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a folder (``"does not exist"``, ``"is a file, not a folder"``, ...), or ``None``."""
    problem, st = _stat_problem(os.fspath(path))
    if problem:
        return problem
    if not stat.S_ISDIR(st.st_mode):
        return "is a file, not a folder" if stat.S_ISREG(st.st_mode) else \
            f"is {_KINDS.get(stat.S_IFMT(st.st_mode), 'not a folder')}, not a folder"
    return None


def writable_problem(folder: str | os.PathLike) -> str | None:
    """Why files cannot be written into ``folder`` (or, while it does not exist, the folder that would
    hold it), or ``None``: a probe file is made and removed there (permissions alone miss a read-only
    mount, and say nothing for root)."""
    existing = os.path.abspath(os.fspath(folder))
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    problem = folder_problem(existing)
    if problem:
        return f"{existing!r} {problem}"
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        return err.strerror or str(err)
    return None


def decode_utf8(data: bytes, what: str) -> str:
    """``data`` decoded as UTF-8 (a leading byte-order mark dropped); :class:`UserError` naming the
    line of the first byte that is not UTF-8 (``what``: e.g. ``"Recipe 'r.yaml'"``)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise UserError(f"{what} is not UTF-8 text (byte 0x{data[err.start]:02x} on line {line}); "
                        "save it as UTF-8.") from None


def read_bytes(path: str | os.PathLike, what: str, fix: str = "", error: type = UserError) -> bytes:
    """A regular file's bytes; ``error("<what> <path> <problem>[; fix].")`` when it is not one or
    cannot be read (a fifo, a link loop, a folder: :func:`file_problem`)."""
    path = os.fspath(path)
    problem = file_problem(path)
    if problem:
        raise error(f"{what} {path!r} {problem}{'; ' + fix if fix else ''}.")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise error(f"{what} {path!r} cannot be read ({err.strerror}).") from err


def read_text(path: str | os.PathLike, what: str) -> str:
    """A regular file's text, UTF-8; :class:`UserError` ``"<what> <problem>"`` when it cannot be read.

    For files a tool reads without a fix of their own to suggest (a split list, a run's JSON).
    """
    path = os.fspath(path)
    return decode_utf8(read_bytes(path, what), f"{what} {path!r}")


def path_argument(value, name: str) -> str:
    """``value`` as a path string; :class:`TypeError` naming the argument ``name`` for anything else (the
    Python API's arguments, checked before they reach ``os``, whose errors would not name them)."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), not {type(value).__name__} {value!r:.80}")
    return os.fspath(value)
