"""Checkpoints: a verified pickle of the evolution state, written atomically, loaded safely.

A checkpoint is a magic line, the SHA-256 of its pickle and the pickle. Loading verifies the
checksum and unpickles with an allow-list (:class:`RestrictedUnpickler`), so a file from
elsewhere cannot run code; :func:`load_latest_valid` skips damaged newer files (truncated, or
failing their checksum: what a crash or a disk leaves) but stops at a refused one (a verified
pickle naming a forbidden global, or not ours: what a person or a program left there).
"""
from __future__ import annotations

import hashlib
import importlib
import io
import os
import pickle
import re

from .atomic import atomic_write_bytes
from ..errors import UserError
from .paths import read_bytes
from .safe_pickle import NUMPY_ARRAY_GLOBALS, AllowListUnpickler

MAGIC = b"LGEA-CKPT-1\n"
FORMAT = "learngene-ea/checkpoint-v1"


class CheckpointError(UserError):
    """A checkpoint that cannot be used: truncated, corrupted, unsafe or incompatible."""


class CheckpointDamaged(CheckpointError):
    """A checkpoint whose bytes are not what was written: truncated, or failing its checksum."""


# What a checkpoint legitimately contains. Anything else (os.system, subprocess, eval, ...)
# is refused before it can run: unpickling calls whatever global a pickle names.
SAFE_GLOBALS = NUMPY_ARRAY_GLOBALS | {
    ("deap.creator", "FitnessGTL"),
    ("deap.creator", "LearngeneIndividual"),
    ("deap.base", "Fitness"),
    ("deap.tools.support", "HallOfFame"),
    ("deap.tools.support", "ParetoFront"),
    ("deap.tools.support", "Logbook"),
    ("learngene_ea.core.learngene", "Learngene"),
    ("learngene_ea.core.individual", "same_masks"),  # hall of fame similarity of older checkpoints
    ("learngene_ea.core.individual", "same_individual"),
    ("collections", "defaultdict"),
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "list"),
    ("builtins", "dict"),
    ("builtins", "tuple"),
}


# Checkpoints written before the package was split into subpackages (issue #24) name our classes
# by their flat module paths; they resolve to the same classes at their new homes.
MOVED_MODULES = {
    "learngene_ea.learngene": "learngene_ea.core.learngene",
    "learngene_ea.individual": "learngene_ea.core.individual",
}

CREATOR_CLASSES = ("FitnessGTL", "LearngeneIndividual")
# The module whose import makes them (``deap.creator`` classes exist once created): imported by name,
# as pickle imports every other global the allow-list names, so io/ stays below the package's layers.
CREATOR_MODULE = "learngene_ea.core.individual"


def _creator_classes_made():
    importlib.import_module(CREATOR_MODULE)


def _existing_creator_class(name, base=None, dct=None):
    """Stands in for ``deap.creator.meta_create``: returns our own creator class, creates nothing."""
    from deap import creator

    _creator_classes_made()
    if name not in CREATOR_CLASSES:
        raise CheckpointError(f"refusing to create DEAP class {name!r} from a checkpoint.")
    return getattr(creator, name)


class RestrictedUnpickler(AllowListUnpickler):
    """Admits only :data:`SAFE_GLOBALS`; DEAP's ``meta_create`` gets our existing creator classes."""

    allowed = SAFE_GLOBALS
    substitutes = {("deap.creator", "meta_create"): _existing_creator_class}

    def find_class(self, module, name):
        module = MOVED_MODULES.get(module, module)
        if (module, name) in self.allowed and (module == "deap.creator" or module.startswith("learngene_ea")):
            _creator_classes_made()
        return super().find_class(module, name)

    def refused(self, module, name):
        return CheckpointError(f"refusing to load '{module}.{name}': checkpoints may only contain "
                               "populations, numbers and arrays (see 'Trust model' in the README).")


def dumps_checkpoint(payload: dict) -> bytes:
    """Checkpoint bytes: magic line, SHA-256 of the pickle, the pickle."""
    body = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    return MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def loads_checkpoint(data: bytes, source: str = "checkpoint") -> dict:
    """Verify and unpickle checkpoint bytes with :class:`RestrictedUnpickler`."""
    if not data.startswith(MAGIC):
        raise CheckpointDamaged(f"{source} is not a learngene-ea checkpoint (wrong header).")
    rest = data[len(MAGIC):]
    digest, _, body = rest.partition(b"\n")
    if hashlib.sha256(body).hexdigest().encode() != digest:
        raise CheckpointDamaged(f"{source} is truncated or corrupted (checksum mismatch).")
    try:
        payload = RestrictedUnpickler(io.BytesIO(body)).load()
    except CheckpointError as err:
        raise CheckpointError(f"{source}: {err}") from err
    except Exception as err:
        raise CheckpointError(f"{source} cannot be unpickled ({type(err).__name__}: {err}).") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{source} is not a learngene-ea checkpoint (unknown format).")
    return payload


def save_checkpoint(payload: dict, path: str | os.PathLike) -> int:
    """Write a checkpoint atomically; return its size in bytes."""
    data = dumps_checkpoint({"format": FORMAT, **payload})
    atomic_write_bytes(path, data)
    return len(data)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read and verify one checkpoint file."""
    path = os.fspath(path)
    data = read_bytes(path, "checkpoint", "pass a run directory or a checkpoint .pkl file", CheckpointError)
    return loads_checkpoint(data, f"checkpoint {path!r}")


_GEN_FILE = re.compile(r"^gen_(\d+)\.pkl$")
START = "start.pkl"  # the state before generation 0 (after a gene pool's warm start): what a kill there resumes


def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    """Does the run folder hold a checkpoint to resume from (``gen_NNNN.pkl``, ``latest.pkl`` or ``start.pkl``)?"""
    folder = os.path.join(os.fspath(run_dir), "checkpoints")
    return bool(checkpoint_files(run_dir)) or any(os.path.lexists(os.path.join(folder, name))
                                                  for name in ("latest.pkl", START))


def checkpoint_files(run_dir: str | os.PathLike) -> list[str]:
    """The run's ``gen_NNNN.pkl`` files, newest first."""
    folder = os.path.join(os.fspath(run_dir), "checkpoints")
    if not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), name) for name in os.listdir(folder) if (m := _GEN_FILE.match(name))]
    return [os.path.join(folder, name) for _, name in sorted(found, reverse=True)]


def prune_generation_files(run_dir: str | os.PathLike, generation: int, keep: int) -> list[str]:
    """Delete the run's ``gen_NNNN.pkl`` files of generation ``generation - keep`` and older (``keep`` 0:
    none), so that generations ``generation - keep + 1`` to ``generation`` stay; return the deleted paths.

    Call it only once generation ``generation``'s file and ``latest.pkl`` are written: a kill before or
    during the deletions leaves more files, never fewer. Files of later generations (left by a run that went
    further before it was resumed from an older checkpoint) are not this run's to delete; ``latest.pkl`` and
    ``start.pkl`` are never deleted."""
    if keep <= 0:
        return []
    deleted = []
    for path in checkpoint_files(run_dir):
        if int(_GEN_FILE.match(os.path.basename(path)).group(1)) <= generation - keep:
            try:
                os.remove(path)
            except FileNotFoundError:  # removed meanwhile: what was asked for
                continue
            deleted.append(path)
    return deleted


def load_latest_valid(run_dir: str | os.PathLike, warn=print) -> tuple[dict, str]:
    """The newest checkpoint of a run directory that verifies; damaged newer ones are reported and
    skipped, a refused one (see the module docstring) stops the search with a :class:`CheckpointError`."""
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise CheckpointError(f"run directory {run_dir!r} does not exist; pass runs/<name> or a .pkl file.")
    if not os.access(run_dir, os.R_OK | os.X_OK):
        raise CheckpointError(f"run directory {run_dir!r} is not readable; check its permissions.")
    candidates = checkpoint_files(run_dir)
    # gen_NNNN.pkl is written before latest.pkl, so a kill between the two writes leaves
    # latest.pkl one generation behind: it is only the last resort.
    # then start.pkl: the state before generation 0
    candidates += [path for name in ("latest.pkl", START)
                   if os.path.exists(path := os.path.join(run_dir, "checkpoints", name))]
    if not candidates:
        raise CheckpointError(f"run directory {run_dir!r} has no checkpoints/gen_NNNN.pkl to resume from.")
    problems = []
    for path in candidates:
        try:
            payload = load_checkpoint(path)
        except CheckpointDamaged as err:
            problems.append(str(err))
            warn(f"warning: {err} Trying the previous checkpoint.")
            continue
        except CheckpointError as err:  # not damage: resuming from an older file would hide it
            raise CheckpointError(f"{str(err).rstrip('.')}; inspect that file: a refused checkpoint is not "
                                  "crash damage, so no older one is tried (move it away to resume from the one "
                                  "before it).") from err
        return payload, path
    raise CheckpointError(f"no valid checkpoint in {run_dir!r}: {problems[-1]}")
