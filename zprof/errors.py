"""The one exception zprof raises for conditions a user can act on."""

from __future__ import annotations

# Exit codes: 2 for bad input or an environment zprof cannot work in, 1 for a
# target that misbehaved after it was started.
EXIT_USAGE = 2
EXIT_TARGET = 1
# A bug in zprof itself: an exception nobody expected (`zprof --debug` shows its traceback).
EXIT_INTERNAL = 3


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
