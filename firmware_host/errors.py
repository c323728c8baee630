"""The one error type whose message is shown to a user as a single line."""


class EdgeAgeError(Exception):
    """A problem the user can fix (bad input, missing file, unwritable folder)."""
