"""User-facing errors: one line naming the problem and the fix."""


class InputError(Exception):
    """Bad user input. Hosts show ``str(err)`` as one line (CLI exit status 2)."""
