"""Errors are plain data: a reference id, a message, a hint and an exit status.

The UI renders them (kdiff.ui.errors); nothing here prints.
"""
from __future__ import annotations

EXIT_MATCH = 0
EXIT_DIVERGED = 1
EXIT_BAD_INPUT = 2
EXIT_WORKER_FAILED = 3
EXIT_INTERNAL = 4      # a bug of kdiff's own: never 1, which means "a divergence was found"
EXIT_INTERRUPTED = 130


class KdiffError(Exception):
    exit_code = EXIT_BAD_INPUT

    def __init__(self, reference: str, message: str, hint: str = "", detail: str = ""):
        super().__init__(message)
        self.reference = reference
        self.message = message
        self.hint = hint
        self.detail = detail  # e.g. the tail of a worker's log


class UsageError(KdiffError):
    """The command line itself is wrong."""


class InputError(KdiffError):
    """A file the user gave cannot be used as it is."""


class WorkerFailure(KdiffError):
    """A worker died, hung, or answered something that is not the protocol."""

    exit_code = EXIT_WORKER_FAILED

    def __init__(self, side: str, backend: str, last_command: str, message: str, hint: str = "", detail: str = ""):
        super().__init__(
            "worker-failed",
            f"worker {side} ({backend}) failed during '{last_command}': {message}",
            hint,
            detail,
        )
        self.side = side
        self.backend = backend
        self.last_command = last_command


class InternalError(KdiffError):
    """kdiff itself failed: not the user's input, not a worker. The traceback is in a log file."""

    exit_code = EXIT_INTERNAL

    def __init__(self, summary: str, log_path: str):
        super().__init__(
            "kdiff-bug",
            f"kdiff failed: {summary}. This is a bug of kdiff's own, not a fault of your model, files or options",
            f"the traceback is in {log_path}; please report it with that file",
        )
        self.log_path = log_path
