"""The one error the trainer raises on purpose: something a person can fix.

`str(error)` says what went wrong (naming the file and line, the model, the setting); `error.hint` says
what to do about it. The job runner stores both on the failed job, so neither may need a traceback to be
understood. Anything else escaping `run_training` is a bug in the studio.
"""

from __future__ import annotations


class TrainingError(Exception):
    """A failure the user can act on: bad dataset row, model not found offline, out of memory, no GPU..."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message
