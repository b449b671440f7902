"""The one exception type users see.

Anything a user can get wrong (a bad --model, a malformed input file, a corrupt cache) raises `UserError`
with a one-line message; the command line prints it and exits with status 2 instead of a traceback.
`JobStopped`, its kind for a job of many processes (`distributed.py`), exits 1 and is said by one rank only.
"""


class UserError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2
    quiet = False  # already said by another process (`JobStopped`)

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def require_at_least(name: str, value: int, minimum: int = 1) -> int:
    """`value`, or a `UserError` saying `name` must be at least `minimum` (a batch, a count, a length)."""
    if value < minimum:
        raise UserError(f"{name} must be at least {minimum}, not {value}")
    return value


class JobStopped(UserError):
    """A job of many processes cannot finish because one of them stopped (exit 1, not a traceback).

    One rank says which (`message`); the others stop quietly, with message None.
    """

    exit_code = 1

    def __init__(self, message: str | None):
        super().__init__(message or "")
        self.quiet = message is None
