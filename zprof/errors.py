"""The one exception zprof raises for conditions a user can act on."""

from __future__ import annotations

# Exit codes: 2 for bad input or an environment zprof cannot work in, 1 for a
# target that misbehaved after it was started.
EXIT_USAGE = 2
EXIT_TARGET = 1
# The two gates (compare, regress) when the run could not tell a change within the threshold from one beyond it.
EXIT_INCONCLUSIVE = 3
# A bug in zprof itself: an exception nobody expected (`zprof --debug` shows its traceback).
EXIT_INTERNAL = 4


class ZprofError(Exception):
    """A failure explained in plain words; `cli.main` prints it and exits.

    `detail` holds supporting text (compiler errors, a log tail) shown under the
    message.
    """

    def __init__(self, message: str, *, detail: str = "", exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.exit_code = exit_code


class PartialRun(ZprofError):
    """A measurement stopped by a failure after it measured something: `run` holds what it
    measured (marked incomplete), to save and report before the failure ends the command."""

    def __init__(self, error: ZprofError, run: object) -> None:
        super().__init__(error.message, detail=error.detail, exit_code=error.exit_code)
        self.run = run
        self.stack = getattr(error, "stack", None)  # where the server crashed, when that is what stopped it


class ServerCrashed(ZprofError):
    """The server died of a signal of its own; `stack` (a zprof.collect.crash.CrashStack) says where."""

    def __init__(self, message: str, *, detail: str, stack: object) -> None:
        super().__init__(message, detail=detail, exit_code=EXIT_TARGET)
        self.stack = stack


class EveryRequestFailed(ZprofError):
    """Every measured request got an error reply: what was measured is the server's error path, not the
    command's cost. The counts stay with the error, for the finding it makes (a validation's error rule)."""

    def __init__(self, command: str, requests: int, first_error: str | None, what_is_lost: str) -> None:
        super().__init__(
            f"every one of the {requests:,} measured {command} requests got an error reply, so {what_is_lost}; "
            f"the first: {first_error}",
            detail="Check the request (--args) against what the server implements.", exit_code=EXIT_TARGET)
        self.command, self.requests, self.first_error = command, requests, first_error or ""
