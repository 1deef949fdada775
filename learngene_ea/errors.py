"""The one exception type for mistakes a user can fix (bad recipe, path, checkpoint).

Command-line entry points catch :class:`UserError`, print its message as one sentence and
exit with code 2; everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's input, described in one sentence that names the fix."""

    exit_code = 2


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run, with one sentence saying what its folder keeps and how to continue."""
