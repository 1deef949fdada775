"""The one exception type for mistakes a user can fix (bad recipe, path, checkpoint).

Command-line entry points catch :class:`UserError`, print its message as one sentence and
exit with code 2; everything else is a bug and keeps its traceback. A file that cannot be
written (:class:`WriteError`: a full disk, a file size limit, a read-only folder) is the
environment's fault, not the input's: one sentence too, exit code 1. A run that its fitness or
an operator stopped (:class:`EvaluationFailure`, :class:`OperatorFailure`, raised by the generation
loop) is exit code 1 with a sentence. This module imports nothing heavy: every command line's error
handling loads it before its arguments are read.
"""
import errno


class UserError(Exception):
    """A mistake in the user's input, described in one sentence that names the fix."""

    exit_code = 2


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run, with one sentence saying what its folder keeps and how to continue."""


_WRITE_ADVICE = {errno.ENOSPC: "free space on its disk", errno.EDQUOT: "free space within your disk quota",
                 errno.EFBIG: "raise the file size limit (ulimit -f)", errno.EROFS: "its file system is read-only",
                 errno.EACCES: "make its folder writable", errno.EPERM: "make its folder writable"}


def refused_by_system(err: OSError) -> bool:
    """Whether ``err`` is the system refusing a write (space, quota, file size, read-only, permission), which
    :class:`WriteError` reports, rather than a mistake in the path itself."""
    return err.errno in _WRITE_ADVICE


class WriteError(UserError, OSError):
    """A file could not be written (full disk, file size limit, read-only folder): one sentence naming it.

    Still an :class:`OSError`, so a caller that tolerates a failed write (an optional cache) goes
    on doing so; a command line that gets it says the sentence and exits with code 1.
    """

    exit_code = 1

    def __init__(self, path: str, err: OSError):
        super().__init__(err.errno, err.strerror or str(err), path)
        advice = _WRITE_ADVICE.get(err.errno, "check that its folder is writable")
        self.sentence = (f"cannot write {path!r} ({err.strerror or err}); {advice}, or write elsewhere; the files "
                         "written before are kept.")

    def __str__(self) -> str:
        return self.sentence

    def __reduce__(self):  # OSError's would call __init__ with (errno, strerror, path): a study's seed process
        return type(self), (self.filename, OSError(self.errno, self.strerror))


class OperatorFailure(Exception):
    """A genetic operator (select, mutate, mate) raised: the run stops, its checkpoint is safe."""

    def __init__(self, role: str, function, generation: int, error: BaseException):
        name = getattr(function, "func", function)
        name = f"{getattr(name, '__module__', '?')}:{getattr(name, '__qualname__', repr(name))}"
        super().__init__(f"operator '{role}' ({name}) failed while making generation {generation} "
                         f"({type(error).__name__}: {error}); {_safe_generation(generation)}")
        self.role = role
        self.error = error


def _safe_generation(generation: int) -> str:
    if generation <= 0:
        return "generation 0 did not finish: fix the cause, then --resume the run (it starts generation 0 again)."
    return (f"generation {generation - 1} is safe in checkpoints/latest.pkl: fix the cause, then --resume "
            "the run.")


class EvaluationFailure(Exception):
    """Fitness failed in a way that retrying cannot mend: the run stops, its checkpoint is safe.

    Either one evaluation hit an error that is not bad luck (a bad setting, a bug: see
    ``fitness.can_pass_on_retry``), or every evaluation of a generation failed.
    ``traceback_text`` is the failing worker's traceback, shown under ``--debug``.
    """

    def __init__(self, generation: int, error: dict, every: bool = False):
        cause = f"{error['type']}: {error['message']}"
        if every:
            what = (f"every evaluation of generation {generation} failed (the last, of individual {error['id']}, "
                    f"with {cause})")
        else:
            what = (f"the evaluation of individual {error['id']} in generation {generation} failed with {cause}, "
                    "an error that would repeat on every retry")
        super().__init__(f"{what}; {_safe_generation(generation)}")
        self.error = error
        self.traceback_text = error.get("traceback", "")
