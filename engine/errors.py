"""The one exception type a user can cause.

Anything the user can get wrong (a missing file, a bad scale, a checkpoint of the wrong
shape) raises :class:`UserError` with a message that says what to do. The CLI prints the
message on one line and exits non-zero; programmers calling the library catch it like any
``ValueError``.
"""


class UserError(ValueError):
    """A mistake in the input or the options, explained in one line."""
