"""Unpickling that cannot run code: a pickle may only name globals on an explicit allow-list.

Unpickling calls whatever global a pickle names (``os.system``, ``builtins.eval``, ...), so
a pickle from elsewhere is only safe to load when every global it names is one we expect.
:class:`AllowListUnpickler` is the shared mechanism (the checkpoint loader builds on it);
:func:`load_data_pickle` admits what dataset pickles (CIFAR-100, miniImageNet caches) hold.

This module sits at the bottom of the package and imports nothing from it: callers pass the
exception class their users should see.
"""
from __future__ import annotations

import pickle

# numpy pickles name its internals under numpy.core (numpy < 2) or numpy._core (numpy >= 2).
NUMPY_ARRAY_GLOBALS = frozenset(
    {("numpy", "ndarray"), ("numpy", "dtype")}
    | {(f"{core}.multiarray", name) for core in ("numpy.core", "numpy._core") for name in ("_reconstruct", "scalar")}
    | {(f"{core}.numeric", "_frombuffer") for core in ("numpy.core", "numpy._core")}
)

# Dicts, lists, tuples, strings and numbers need no global; arrays and ordered dicts do.
DATA_GLOBALS = NUMPY_ARRAY_GLOBALS | {("collections", "OrderedDict")}


class AllowListUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in :attr:`allowed`; any other is refused.

    Subclasses set ``allowed`` (``(module, name)`` pairs), may map some pairs to stand-ins in
    ``substitutes`` (resolved instead of the real global) and override :meth:`admits` and
    :meth:`refused` (the exception raised for a global that is not admitted).
    """

    allowed: frozenset = frozenset()
    substitutes: dict = {}

    def find_class(self, module, name):
        if (module, name) in self.substitutes:
            return self.substitutes[(module, name)]
        if self.admits(module, name):
            return super().find_class(module, name)
        raise self.refused(module, name)

    def admits(self, module: str, name: str) -> bool:
        """Whether the pickle may name ``module.name``."""
        return (module, name) in self.allowed

    def refused(self, module: str, name: str) -> Exception:
        """The exception raised when the pickle names a global that is not admitted."""
        return pickle.UnpicklingError(f"refusing to load '{module}.{name}': it is not on the allow-list.")


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """Stands in for ``_codecs.encode``: protocol-2 pickles store bytes as latin-1 text."""
    if encoding not in ("latin1", "latin-1"):  # an arbitrary codec is no longer plain data
        raise pickle.UnpicklingError(f"bytes stored with encoding {encoding!r}, not latin-1.")
    return text.encode("latin1")


def _empty_bytes() -> bytes:
    """Stands in for ``bytes``, which protocol-2 pickles call with no argument for ``b''``."""
    return b""


class DataUnpickler(AllowListUnpickler):
    """Admits plain data and numpy arrays (:data:`DATA_GLOBALS`), nothing that can run code."""

    allowed = DATA_GLOBALS
    # protocol-2 pickles name builtins as __builtin__ (the Python 2 spelling)
    substitutes = {("_codecs", "encode"): _latin1_bytes, ("builtins", "bytes"): _empty_bytes,
                   ("__builtin__", "bytes"): _empty_bytes}

    def __init__(self, file, source: str, error_class=pickle.UnpicklingError):
        super().__init__(file, encoding="latin1")  # CIFAR pickles come from Python 2
        self.source, self.error_class = source, error_class

    def admits(self, module: str, name: str) -> bool:
        # numpy.dtypes holds only dtype classes (UInt8DType, ...); their set grows with numpy
        return super().admits(module, name) or (module == "numpy.dtypes" and name.endswith("DType"))

    def refused(self, module: str, name: str) -> Exception:
        return self.error_class(f"{self.source} holds '{module}.{name}', which a dataset file never contains; "
                                "refusing to load it (it could run code); replace it with a fresh download.")


def load_data_pickle(file, source: str, error_class=pickle.UnpicklingError):
    """Unpickle a dataset file (open in binary mode) admitting only plain data and numpy arrays.

    ``source`` names the file in messages (e.g. ``"CIFAR-100 file '/data/meta'"``). A global
    outside :data:`DATA_GLOBALS` raises ``error_class`` with one sentence naming the file and
    the global; other damage raises what :mod:`pickle` raises. Python-2 strings are read as
    latin-1, as CIFAR-100's pickles need.
    """
    return DataUnpickler(file, source, error_class).load()
